"""The researcher's protocol on request (Machado et al. 2018: sticky actions, no life-loss terminals), and --track."""

import glob
import json
import os
import struct
import subprocess
import sys

import cv2
import pytest
import tyro
from stable_baselines3.common.atari_wrappers import MaxAndSkipEnv

import dqn_atari
from conftest import ROOT, TINY_ATARI


def env_of(*flags: str):
    """The env that dqn_atari.py makes from these command-line flags."""
    return dqn_atari.make_env(tyro.cli(dqn_atari.Args, args=list(flags)), seed=0)


def test_a_v5_id_is_made_with_frameskip_1_and_keeps_its_sticky_actions_and_its_frame_limit():
    env = env_of("--env-id", "ALE/Breakout-v5")
    assert env.unwrapped._frameskip == 1  # MaxAndSkipEnv skips the 4 frames, once
    assert [w._skip for w in dqn_atari.wrappers(env) if isinstance(w, MaxAndSkipEnv)] == [4]
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert env.unwrapped.ale.getInt("max_num_frames_per_episode") == 108_000
    assert env_of().unwrapped.ale.getFloat("repeat_action_probability") == 0.0  # CleanRL's default stays


@pytest.mark.parametrize("env_id", ["BreakoutNoFrameskip-v4", "ALE/Breakout-v5"])
def test_repeat_action_probability_reaches_the_emulator(env_id):
    env = env_of("--env-id", env_id, "--repeat-action-probability", "0.1")
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.1)


def test_full_action_space_gives_18_actions():
    assert env_of().action_space.n == 4
    assert env_of("--full-action-space").action_space.n == 18
    assert env_of("--env-id", "ALE/Pong-v5", "--full-action-space").action_space.n == 18


@pytest.mark.parametrize("flag, ends_per_game", [("--episodic-life", 5), ("--no-episodic-life", 1)])
def test_no_episodic_life_ends_learning_episodes_only_at_game_over(flag, ends_per_game):
    """Breakout has 5 lives: a lost life ends a learning episode only with --episodic-life (the default). Either way
    the game's record (info["episode"]) comes once, at game over."""
    env = env_of(flag)
    env.action_space.seed(0)
    env.reset(seed=0)
    ends, records = 0, []
    while not records:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert not truncated
        if "episode" in info:
            records.append(info["episode"])
            assert env.unwrapped.ale.game_over()
        if terminated:
            ends += 1
            env.reset()
    assert ends == ends_per_game and len(records) == 1


def test_a_v5_env_saved_and_restored_plays_on_as_the_env_left_alone():
    """Sticky actions repeat the emulator's previous action, which ALE's saved state leaves out: Resumable puts it back
    (LastAction). Saved at 8 points of random play, each just after LEFT (a new env's reset leaves FIRE, then RIGHT,
    as the previous action: without LastAction the two disagree), a new env restored from each plays the next 40
    steps as the original does, frame for frame and byte for byte of the console's memory."""
    import numpy as np

    args = dqn_atari.Args(env_id="ALE/Breakout-v5", episodic_life=False)
    env = dqn_atari.Resumable(dqn_atari.make_env(args, seed=1))
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for point in range(8):
        for _ in range(int(rng.integers(10, 60))):
            if any(env.step(int(rng.integers(4)))[2:4]):
                env.reset()
        if any(env.step(3)[2:4]):  # LEFT
            env.reset()
        restored = dqn_atari.Resumable(dqn_atari.make_env(args, seed=1))
        restored.restore_state(env.save_state(), seed=1)
        for step in range(40):
            action = int(rng.integers(4))
            obs, _, terminated, truncated, _ = env.step(action)
            assert np.array_equal(obs, restored.step(action)[0]), f"save point {point}, step {step} after the restore"
            assert np.array_equal(env.unwrapped.ale.getRAM(), restored.unwrapped.ale.getRAM())
            if terminated or truncated:
                env.reset(), restored.reset()
        restored.close()
    env.close()


# --track, with W&B offline: what an offline run records is read back from its .wandb file, a log of protobuf records
# (LevelDB's format: 32 KiB blocks of chunks, each with a 7-byte header: checksum, length, type).


def wandb_records(path: str):
    from wandb.proto import wandb_internal_pb2

    data, position, record = open(path, "rb").read(), 7, b""  # the file opens with a 7-byte header
    assert data.startswith(b":W&B")
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a header is padding
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        record += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            parsed = wandb_internal_pb2.Record()
            parsed.ParseFromString(record)
            record = b""
            yield parsed


def offline_run(folder: str) -> dict:
    """The id, name, group, config, and logged keys and steps of an offline W&B run folder."""
    [path] = glob.glob(os.path.join(folder, "run-*.wandb"))
    run = {"keys": set(), "steps": []}
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "run":
            run["id"], run["name"], run["group"] = record.run.run_id, record.run.display_name, record.run.run_group
            run["config"] = {item.key: json.loads(item.value_json) for item in record.run.config.update}
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            run["keys"] |= set(items)
            if "global_step" in items and "losses/td_loss" in items:
                run["steps"].append(int(float(items["global_step"])))
    return run


def test_a_tracked_run_records_its_flags_scalars_and_videos_and_its_resume_goes_on_in_the_same_run(tmp_path):
    pytest.importorskip("wandb")
    protocol = ["--env-id", "ALE/Breakout-v5", "--no-episodic-life", "--repeat-action-probability", "0.1"]
    flags = [*TINY_ATARI, *protocol, "--track", "--capture-video", "--eval-episodes", "1"]
    script = os.path.join(ROOT, "dqn_atari.py")

    def run(*more):
        result = subprocess.run(
            [sys.executable, script, *more], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
        return result

    run(*flags, "--total-timesteps", "300", "--checkpoint-frequency", "150")
    [folder] = glob.glob(str(tmp_path / "runs" / "*"))
    # the extension names no protocol flag: the checkpoint carries them, to the env and to W&B's config
    run("--resume", folder, "--total-timesteps", "450")
    first, resumed = (offline_run(path) for path in sorted(glob.glob(str(tmp_path / "wandb" / "offline-run-*"))))

    run_id = open(os.path.join(folder, "wandb-run-id")).read().strip()
    assert first["id"] == resumed["id"] == run_id
    assert first["name"] == resumed["name"] == os.path.basename(folder)  # the run's name, as in runs/
    for config in (first["config"], resumed["config"]):
        assert config["env_id"] == "ALE/Breakout-v5" and config["repeat_action_probability"] == 0.1
        assert config["episodic_life"] is False and config["track"] is True
    assert resumed["config"]["total_timesteps"] == 450
    for key in ("losses/td_loss", "charts/epsilon", "eval/episodic_return", "videos/path"):
        assert key in first["keys"], key
    assert "eval/videos/path" in resumed["keys"]
    # the videos W&B got are VP9, which browsers play (the recorders' mp4v is not)
    uploaded = glob.glob(
        str(tmp_path / "wandb" / "offline-run-*" / "files" / "media" / "videos" / "**" / "*.mp4"), recursive=True
    )
    assert uploaded and all(
        int(cv2.VideoCapture(path).get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"VP90" for path in uploaded
    )
    # the TensorBoard scalars, synced: the resumed run sends only its own steps, none of the first part's again
    assert first["steps"] and max(first["steps"]) < 300 <= min(resumed["steps"])


def test_track_without_wandb_is_one_line_and_leaves_nothing(tmp_path):
    hide_wandb = (
        "import importlib.util, runpy, sys; find = importlib.util.find_spec; "
        "importlib.util.find_spec = lambda name, *a: None if name == 'wandb' else find(name, *a); "
        f"sys.argv = ['dqn_atari.py', '--track', '--no-cuda']; runpy.run_path({os.path.join(ROOT, 'dqn_atari.py')!r}, "
        "run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", hide_wandb], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --track needs wandb: pip install 'wandb>=0.19'"]
    assert not os.listdir(tmp_path)
