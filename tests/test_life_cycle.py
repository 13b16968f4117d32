"""The run's life cycle (Run, in every Atari script; the table is in docs/running.md): each command on a stopped and on
a finished run of dqn_atari.py, tiny counts. What each does, where it writes, what it prints. (dqn_cartpole.py keeps no
checkpoints: its play is here, its Ctrl-C in test_checkpoints.py.)"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, TINY_ATARI, run_command

SCRIPTS = ["dqn_atari.py"]
VIDEO = {"dqn_atari.py": ["--capture-video"]}
FLAGS = {"dqn_atari.py": [*TINY_ATARI, "--eval-episodes", "1"]}


def command(script, *flags):
    return [sys.executable, os.path.join(ROOT, script), *map(str, flags)]


run = run_command  # `python SCRIPT FLAGS` in a folder, through the session's zygote (conftest.py)


def files(folder):
    """Every file under folder, with its size and modification time: what a command must leave alone."""
    paths = [path for path in glob.glob(f"{folder}/**", recursive=True) if os.path.isfile(path)]
    return {path: (os.path.getsize(path), os.path.getmtime(path)) for path in paths}


def scalars(run_dir, tag):
    return [(event.step, event.value) for event in EventAccumulator(str(run_dir)).Reload().Scalars(tag)]


def checkpoint(run_dir):
    return torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory):
    """For each script, a finished run (300 steps, its model saved) and a stopped one (SIGTERM after its first
    checkpoint, of 1,000,000 steps), each in a folder of its own; copied by the tests that change them."""
    runs = {}
    for script in SCRIPTS:
        finished = tmp_path_factory.mktemp("finished")
        flags = [*FLAGS[script], "--total-timesteps", 300, "--checkpoint-frequency", 200, "--save-model"]
        result = run(finished, script, *flags, *VIDEO[script])
        assert result.returncode == 0, result.stderr
        stopped = tmp_path_factory.mktemp("stopped")
        flags = [*FLAGS[script], "--total-timesteps", 1_000_000, "--checkpoint-frequency", 200]
        process = subprocess.Popen(
            command(script, *flags), cwd=stopped, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        while not glob.glob(str(stopped / "runs" / "*" / "checkpoint.pt")) and process.poll() is None:
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 143, stderr
        runs[script] = {"finished": (finished, result.stdout), "stopped": (stopped, stderr)}
    return runs


def copy_of(saved_runs, script, state, tmp_path):
    """A copy of the saved run in tmp_path (runs/NAME, and its videos), to change there; returns runs/NAME."""
    source, _ = saved_runs[script][state]
    for folder in ("runs", "videos"):
        if (source / folder).exists():
            shutil.copytree(source / folder, tmp_path / folder, copy_function=shutil.copy2)
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    return os.path.relpath(run_dir, tmp_path)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_new_run_trains_in_a_new_folder_and_its_checkpoint_leaves_the_memory_out(saved_runs, script, tmp_path):
    folder, stdout = saved_runs[script]["finished"]
    [run_dir] = glob.glob(str(folder / "runs" / "*"))
    assert f"from step 0; logs in runs/{os.path.basename(run_dir)}" in stdout
    assert "finished; its checkpoint leaves the replay memory out (--keep-final-buffer keeps it)" in stdout
    loop = checkpoint(run_dir)["loop"]
    assert loop["step"] == 300 and "replay" not in loop and "target_network" in loop
    flags = [*FLAGS[script], "--total-timesteps", 300, "--checkpoint-frequency", 200, "--keep-final-buffer"]
    result = run(tmp_path, script, *flags)
    assert result.returncode == 0 and "finished; its checkpoint keeps the replay memory" in result.stdout
    assert "replay" in checkpoint(glob.glob(str(tmp_path / "runs" / "*"))[0])["loop"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_stop_says_how_to_go_on_and_resume_goes_on_in_the_same_folder(saved_runs, script, tmp_path):
    folder, stderr = saved_runs[script]["stopped"]
    [run_dir] = glob.glob(str(folder / "runs" / "*"))
    name = os.path.basename(run_dir)
    assert f"checkpoint in runs/{name}; to go on: python {script} --resume runs/{name}" in stderr
    run_dir = copy_of(saved_runs, script, "stopped", tmp_path)
    stopped_at = checkpoint(tmp_path / run_dir)["loop"]["step"]
    resumed = subprocess.Popen(  # towards its own --total-timesteps, 1,000,000: stopped again once it is going
        command(script, "--resume", run_dir), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first_line = resumed.stdout.readline()
    time.sleep(1)
    resumed.send_signal(signal.SIGTERM)
    _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 143, stderr
    assert f"from step {stopped_at:,}; logs in {run_dir}" in first_line
    assert checkpoint(tmp_path / run_dir)["loop"]["step"] > stopped_at and os.listdir(tmp_path / "runs") == [name]
    stopped_at = checkpoint(tmp_path / run_dir)["loop"]["step"]  # and --resume with a larger total goes on to it
    result = run(tmp_path, script, "--resume", run_dir, "--total-timesteps", stopped_at + 100)
    assert result.returncode == 0 and checkpoint(tmp_path / run_dir)["loop"]["step"] == stopped_at + 100


@pytest.mark.parametrize("script", SCRIPTS)
def test_resuming_a_finished_run_does_nothing_and_says_how_to_extend_it(saved_runs, script, tmp_path):
    """It used to train 0 steps, then save and evaluate again, logging the evaluation twice. Its own
    --total-timesteps given again (as the grid does) is the same request; a smaller one is an error."""
    run_dir = copy_of(saved_runs, script, "finished", tmp_path)
    before = files(tmp_path)
    for again in ([], ["--total-timesteps", 300]):
        result = run(tmp_path, script, "--resume", run_dir, *again)
        assert result.returncode == 0, result.stderr
        expected = (
            f"{run_dir} has finished (300 steps): nothing to do. To extend it: python {script} --resume {run_dir}"
        )
        assert expected + " --total-timesteps N, with N above 300" in result.stdout
    result = run(tmp_path, script, "--resume", run_dir, "--total-timesteps", 100)
    assert result.returncode == 2 and "error: --total-timesteps 100 is not above the 300 steps run" in result.stderr
    assert files(tmp_path) == before  # nothing trained, evaluated or logged again


@pytest.mark.parametrize("script", SCRIPTS)
def test_extending_a_finished_run_keeps_its_schedule_and_its_model_can_be_played(saved_runs, script, tmp_path):
    """The schedules span the run's first --total-timesteps: past it, epsilon holds its end value. And the model a
    resumed run saves is played like any other (it used to keep `resume` among its flags)."""
    flags = [*FLAGS[script], "--total-timesteps", 300, "--exploration-fraction", 1.0, "--end-e", 0.02]
    assert run(tmp_path, script, *flags, "--checkpoint-frequency", 200, "--eval-episodes", 0).returncode == 0
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    result = run(tmp_path, script, "--resume", run_dir, "--total-timesteps", 600, "--save-model")
    assert result.returncode == 0, result.stderr
    epsilon = dict(scalars(run_dir, "charts/epsilon"))
    assert epsilon[200] > 0.3 and epsilon[400] == epsilon[500] == pytest.approx(0.02)  # was 0.34 and 0.18 at 400, 500
    model = os.path.join(run_dir, f"{script[:-3]}.pt")
    result = run(tmp_path, script, "--load-model", model, "--eval-only", "--eval-episodes", 1, "--no-cuda")
    assert result.returncode == 0, result.stderr


def test_extending_a_finished_per_run_keeps_beta_at_its_end(tmp_path):
    flags = [*TINY_ATARI, "--eval-episodes", 0, "--total-timesteps", 300, "--checkpoint-frequency", 200]
    assert run(tmp_path, "per_dqn_atari.py", *flags).returncode == 0
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    result = run(tmp_path, "per_dqn_atari.py", "--resume", run_dir, "--total-timesteps", 600)
    assert result.returncode == 0, result.stderr
    beta = dict(scalars(run_dir, "charts/beta"))
    assert beta[200] < 1.0 and beta[400] == beta[500] == 1.0  # it was 0.7 at 400 before: a schedule over 600 steps


@pytest.mark.parametrize("state", ["finished", "stopped"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_playing_writes_in_a_folder_of_its_own_never_in_the_training_run(saved_runs, script, state, tmp_path):
    run_dir = copy_of(saved_runs, script, state, tmp_path)
    step = checkpoint(tmp_path / run_dir)["loop"]["step"]  # the files played are a resumed sitting's (they used to
    flags = ["--resume", run_dir, "--total-timesteps", step + 100, "--eval-episodes", 0, "--save-model"]  # carry
    assert run(tmp_path, script, *flags).returncode == 0  # `resume`, and so play into the run's own folder)
    if state == "stopped":  # that sitting's checkpoint, as if it had stopped there, 100 steps on
        saved = torch.load(tmp_path / run_dir / "checkpoint.pt", weights_only=True)
        saved["args"]["total_timesteps"] = 1_000_000
        torch.save(saved, tmp_path / run_dir / "checkpoint.pt")
    before = files(tmp_path)
    saved = ["checkpoint.pt"] + ([f"{script[:-3]}.pt"] if state == "finished" else [])  # a model, and checkpoints
    for name in saved:
        flags = ["--load-model", os.path.join(run_dir, name), "--eval-only", "--eval-episodes", 1, "--no-cuda"]
        result = run(tmp_path, script, *flags, *VIDEO[script])
        assert result.returncode == 0, result.stderr
    assert {path: stat for path, stat in files(tmp_path).items() if path in before} == before  # all there, unchanged
    plays = [os.path.basename(path) for path in glob.glob(str(tmp_path / "runs" / "*-play"))]
    assert plays and all(glob.glob(str(tmp_path / "runs" / play / "events.out.tfevents.*")) for play in plays)
    if VIDEO[script]:
        assert all(glob.glob(str(tmp_path / "videos" / f"{play}-eval" / "*.mp4")) for play in plays)


@pytest.mark.parametrize(
    "script, env_id",
    [
        ("dqn_cartpole.py", "NoSuchEnv-v0"),
        ("dqn_cartpole.py", "Pendulum-v1"),
        ("dqn_atari.py", "NoSuchEnv-v0"),
        ("dqn_atari.py", "Pendulum-v1"),
        ("dqn_atari.py", "Breakout-v4"),  # skips frames itself
    ],
)
def test_a_refused_command_leaves_nothing_behind(script, env_id, tmp_path):
    result = run(tmp_path, script, "--env-id", env_id, "--no-cuda", "--capture-video")
    assert result.returncode == 2 and result.stderr.count("error:") == 1, result.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("script", ["dqn_atari.py"])  # CartPole's videos need pygame, which the tests do not install
def test_videos_go_on_after_a_resume_without_overwriting(script, tmp_path):
    flags = [*FLAGS[script], "--total-timesteps", 20000, "--checkpoint-frequency", 300, "--capture-video"]
    process = subprocess.Popen(command(script, *flags), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while len(glob.glob(str(tmp_path / "videos" / "*" / "*.mp4"))) < 2 and process.poll() is None:
        time.sleep(0.05)  # games 0 and 1 begun: game 0's file whole, game 1's in progress
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    videos = {path: open(path, "rb").read() for path in glob.glob(str(tmp_path / "videos" / "*" / "*.mp4"))}
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    step = checkpoint(run_dir)["loop"]["step"]
    result = run(tmp_path, script, "--resume", run_dir, "--total-timesteps", step + 300, "--eval-episodes", 0)
    assert result.returncode == 0, result.stderr
    assert {path: open(path, "rb").read() for path in videos} == videos


def test_a_memory_refilled_after_a_resume_starts_with_the_frames_the_agent_saw(tmp_path):
    """Resumed without its replay memory, the run is in mid-game: the first stored transitions' stacks are the
    observation the checkpoint kept (they used to repeat its newest frame, as if an episode began there)."""
    import dqn_atari

    flags = [*TINY_ATARI, "--eval-episodes", 0, "--total-timesteps", 300, "--checkpoint-frequency", 200]
    assert run(tmp_path, "dqn_atari.py", *flags, "--no-checkpoint-buffer").returncode == 0
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    obs = checkpoint(run_dir)["loop"]["obs"].numpy()  # what the agent saw at step 300
    resume = ["--resume", run_dir, "--total-timesteps", 100_000, "--checkpoint-buffer"]
    command = [sys.executable, "-c", STOP_AT_FRAME_200, os.path.join(ROOT, "dqn_atari.py"), *map(str, resume)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)  # a stopped run's checkpoint
    assert result.returncode == 143, result.stderr  # keeps its memory
    memory = dqn_atari.FrameReplayBuffer(300, (84, 84), 4, torch.device("cpu"), 1)
    dqn_atari.load_part_state(memory, checkpoint(run_dir)["loop"]["replay"])
    first = memory.get(np.array([3]), torch.device("cpu"))  # the transition after the observation's 4 frames
    assert np.array_equal(first.obs[0].numpy(), obs[0])


# Runs a script whose env process sends the main process SIGTERM at the env's 200th emulator frame (about 40 steps
# after the process starts): a stop at about the same point each time.
STOP_AT_FRAME_200 = """
import multiprocessing, os, runpy, signal, sys, ale_py
step, frames = ale_py.AtariEnv.step, [0]
def stop_at_frame_200(self, action):
    frames[0] += 1
    if frames[0] == 200 and multiprocessing.parent_process() is not None:
        os.kill(os.getppid(), signal.SIGTERM)
    return step(self, action)
ale_py.AtariEnv.step = stop_at_frame_200
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def test_a_stop_while_the_memory_refills_resumes_to_the_same_run(tmp_path):
    """An extension refills the memory before it learns; stopped in that window and resumed, it is the same run as
    the extension left alone (the first update's step used to be lost at the stop: learning began at once)."""
    flags = [*TINY_ATARI, "--eval-episodes", 0, "--total-timesteps", 300, "--checkpoint-frequency", 200]
    alone, stopped = tmp_path / "alone", tmp_path / "stopped"
    alone.mkdir()
    assert run(alone, "dqn_atari.py", *flags).returncode == 0
    shutil.copytree(alone, stopped)
    run_dir = os.path.join("runs", os.listdir(alone / "runs")[0])
    extend = ["--resume", run_dir, "--total-timesteps", 500, "--save-model"]
    assert run(alone, "dqn_atari.py", *extend).returncode == 0  # learning from step 400 (300 + --learning-starts)
    command = [sys.executable, "-c", STOP_AT_FRAME_200, os.path.join(ROOT, "dqn_atari.py"), *map(str, extend)]
    result = subprocess.run(command, cwd=stopped, capture_output=True, text=True)
    assert result.returncode == 143, result.stderr
    assert 300 < checkpoint(stopped / run_dir)["loop"]["step"] < 400  # stopped in the refill
    assert run(stopped, "dqn_atari.py", "--resume", run_dir).returncode == 0
    weights = [torch.load(folder / run_dir / "dqn_atari.pt", weights_only=True)["model"] for folder in (alone, stopped)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert scalars(alone / run_dir, "losses/td_loss") == scalars(stopped / run_dir, "losses/td_loss")


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_run_stopped_before_its_evaluation_is_evaluated_by_resume(saved_runs, script, tmp_path):
    """A run that finished its steps but was stopped before (or during) its evaluation has no `evaluated` mark; a
    resume then runs the evaluation alone, in the run's folder, and the next one has nothing left to do."""
    run_dir = copy_of(saved_runs, script, "finished", tmp_path)
    assert (tmp_path / run_dir / "evaluated").read_text() == "300\n"  # the step whose network it evaluated
    (tmp_path / run_dir / "evaluated").write_text("100\n")  # an earlier end's: as if this end's stop came before it
    result = run(tmp_path, script, "--resume", run_dir)
    assert result.returncode == 0, result.stderr
    assert "but was stopped before its evaluation: evaluating" in result.stdout and "evaluation over 1" in result.stdout
    assert (tmp_path / run_dir / "evaluated").is_file() and os.listdir(tmp_path / "runs") == [os.path.basename(run_dir)]
    result = run(tmp_path, script, "--resume", run_dir)
    assert result.returncode == 0 and "nothing to do" in result.stdout


def test_a_play_beside_a_folder_of_the_same_name_gets_one_of_its_own(tmp_path):
    flags = "--no-cuda --total-timesteps 300 --learning-starts 100 --eval-frequency 0 --eval-episodes 0 --save-model"
    assert run(tmp_path, "dqn_cartpole.py", *flags.split()).returncode == 0
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    now = int(time.time())
    taken = [tmp_path / "runs" / f"CartPole-v1__dqn_cartpole__1__{t}-play" for t in range(now, now + 30)]
    for folder in taken:  # every name the play could take in the next 30 s
        folder.mkdir()
    flags = ["--load-model", os.path.join(run_dir, "dqn_cartpole.pt"), "--eval-only", "--eval-episodes", 1]
    assert run(tmp_path, "dqn_cartpole.py", *flags, "--no-cuda").returncode == 0
    assert all(os.listdir(folder) == [] for folder in taken)
    assert len(glob.glob(str(tmp_path / "runs" / "*-play-2" / "events.out.tfevents.*"))) == 1


def test_resume_works_in_the_folder_it_names_from_anywhere(saved_runs, tmp_path):
    run_dir = tmp_path / copy_of(saved_runs, "dqn_atari.py", "finished", tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run(elsewhere, "dqn_atari.py", "--resume", run_dir, "--total-timesteps", 400, "--no-capture-video")
    assert result.returncode == 0, result.stderr
    assert os.listdir(elsewhere) == [] and checkpoint(run_dir)["loop"]["step"] == 400


def test_an_extension_evaluates_again_beside_the_first_evaluation_s_videos(saved_runs, tmp_path):
    run_dir = copy_of(saved_runs, "dqn_atari.py", "finished", tmp_path)
    [first] = glob.glob(str(tmp_path / "videos" / "*-eval" / "game-0.mp4"))
    before = open(first, "rb").read()
    assert run(tmp_path, "dqn_atari.py", "--resume", run_dir, "--total-timesteps", 400).returncode == 0
    assert open(first, "rb").read() == before and os.path.isfile(first[: -len(".mp4")] + ".2.mp4")


def test_videos_added_on_resume_are_numbered_from_the_games_played(tmp_path):
    """A run that recorded nothing before (--capture-video added on resume): its env's recorder counts the games
    already played, not from the reset that makes the env (which used to number the next game 1 again)."""
    import dqn_atari

    env = dqn_atari.Resumable(dqn_atari.make_env(dqn_atari.Args(), 1))
    env.reset(seed=1)
    while env.unwrapped.ale.game_over() or env.save_state()["RecordEpisodeStatistics.episode_count"] < 2:
        if env.step(env.action_space.sample())[2:4] != (False, False):
            env.reset()
    state = env.save_state()
    assert "RecordGames.games_started" not in state  # it had no recorder
    recorded = dqn_atari.Resumable(dqn_atari.make_env(dqn_atari.Args(), 1, str(tmp_path / "videos")))
    recorded.restore_state(state, seed=1)
    [recorder] = [w for w in dqn_atari.wrappers(recorded) if isinstance(w, dqn_atari.RecordGames)]
    assert recorder.games_started == state["RecordEpisodeStatistics.episode_count"] + 1  # those played, and this one
    assert not (tmp_path / "videos").exists()  # the reset that made the env recorded nothing
