"""Every script runs end to end through its command line with tiny step counts, and saves a loadable model."""

import glob
import os

import numpy as np
import pytest
import torch

ATARI_SMOKE = (
    "--no-cuda --total-timesteps 64 --learning-starts 32 --buffer-size 64 --batch-size 4 --eval-episodes 1".split()
)
SMOKE_RUNS = {
    # one greedy check, at step 199: checks run every 200 steps once learning has started (step 100)
    "dqn_cartpole.py": "--no-cuda --total-timesteps 300 --learning-starts 100 --buffer-size 200 --batch-size 8 "
    "--eval-frequency 200 --eval-episodes 2".split(),
    "tabular_q_frozenlake.py": "--total-timesteps 2000 --eval-episodes 50".split(),
    "dqn_atari.py": ATARI_SMOKE,
    "double_dqn_atari.py": ATARI_SMOKE,
    # the variants' own forward passes (two streams, importance weights, K heads) under --bf16's autocast
    "dueling_dqn_atari.py": [*ATARI_SMOKE, "--bf16"],
    "per_dqn_atari.py": [*ATARI_SMOKE, "--bf16"],
    "bootstrapped_dqn_atari.py": [*ATARI_SMOKE, "--n-heads", "3", "--mask-prob", "0.5", "--bf16"],
    "rainbow_atari.py": [*ATARI_SMOKE, "--bf16"],
    # CleanRL's smoke flags for its Atari DQN and C51 (tests/test_atari.py), on the CPU, with one evaluation game
    "rainbow_atari.py --cleanrl": [
        *"--learning-starts 10 --total-timesteps 16 --buffer-size 10 --batch-size 4 --no-cuda --eval-episodes 1".split()
    ],
}


@pytest.mark.parametrize("script", sorted(SMOKE_RUNS))
def test_script_runs_and_saves_its_model(script, run_script, tmp_path):
    flags, script = SMOKE_RUNS[script], script.split()[0]
    result = run_script(script, *flags, "--save-model")
    assert result.returncode == 0, result.stderr
    if script == "dqn_cartpole.py":
        assert "keeping the network of step 199," in result.stdout, result.stdout
    assert "Traceback" not in result.stderr
    [model_path] = glob.glob(str(tmp_path / "runs" / "*" / f"{script[:-3]}.*"))
    assert os.path.getsize(model_path) > 0
    [events] = glob.glob(str(tmp_path / "runs" / "*" / "events.out.tfevents.*"))
    assert os.path.getsize(events) > 0
    if model_path.endswith(".pt"):
        saved = torch.load(model_path, weights_only=True)  # the weights, and what they are
        assert saved["script"] == script and saved["n_actions"] == (2 if script == "dqn_cartpole.py" else 4)
        assert all(torch.isfinite(tensor).all() for tensor in saved["model"].values())
    else:
        assert np.load(model_path).shape == (16, 4)


def test_cartpole_logs_cleanrl_scalars(run_script, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_script(
        "dqn_cartpole.py", "--no-cuda", "--total-timesteps", 1500, "--learning-starts", 500, "--eval-episodes", 2
    )
    assert result.returncode == 0, result.stderr
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    tags = set(EventAccumulator(run_dir).Reload().Tags()["scalars"])
    assert {
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/SPS",
        "losses/td_loss",
        "eval/episodic_return",
    } <= tags


def test_atari_capture_video_writes_playable_mp4s(run_script, tmp_path):
    import cv2

    result = run_script("dqn_atari.py", *SMOKE_RUNS["dqn_atari.py"], "--capture-video")
    assert result.returncode == 0, result.stderr
    videos = sorted(glob.glob(str(tmp_path / "videos" / "*" / "game-0.mp4")))
    assert len(videos) == 2  # the first training game and the first evaluation game
    for path in videos:
        capture = cv2.VideoCapture(path)
        n_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = capture.read()
        capture.release()
        assert ok and frame.shape == (210, 160, 3) and n_frames > 4, path
