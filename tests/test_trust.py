"""The trust pass's findings, each shown on the code it was found in: old wandb, a memory copied whole onto its
device, a bootstrapped refill played at random, an extension's evaluations mixed, signals after the loop, the play's
output, events lost at a kill, the env state a checkpoint left out, and the messages that pointed the wrong way."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import ROOT, TINY_ATARI, run_command

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from results_csv import read_events  # noqa: E402  (benchmarks/results_csv.py)

OLDEST_WANDB = "0.19.11"  # the oldest wandb docs/running.md claims for --track
TEXT = {"capture_output": True, "text": True, "timeout": 120}


run = run_command  # `python SCRIPT FLAGS` in a folder: through the session's zygote (conftest.py), or with its own env


def test_track_works_with_the_oldest_wandb_claimed(tmp_path):
    """wandb.Settings(finish_timeout=...) exists from wandb 0.27 on; older ones refused it, and --track with them."""
    target = tmp_path / "old_wandb"  # beside the suite's own wandb, first on the path (protobuf 6: tensorboard's)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), f"wandb=={OLDEST_WANDB}"]
    installed = subprocess.run([*pip, "protobuf>=6,<7"], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "offline"}
    version = subprocess.run([sys.executable, "-c", "import wandb; print(wandb.__version__)"], env=env, **TEXT)
    assert version.stdout.strip() == OLDEST_WANDB
    flags = [*TINY_ATARI, "--total-timesteps", 150, "--eval-episodes", 0, "--track"]
    result = run(tmp_path, "dqn_atari.py", *flags, env=env)
    assert result.returncode == 0, result.stderr
    assert glob.glob(str(tmp_path / "wandb" / "offline-run-*"))


class LargestCopy(TorchDispatchMode):
    """The most frames one op moves: a gather from the frames (saving) or a scatter into them (loading). On a GPU, the
    memory a checkpoint's frames take there at once, beside the memory itself."""

    def __init__(self):
        super().__init__()
        self.rows = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.ops.aten.index.Tensor,) and out.dim() == 3:
            self.rows = max(self.rows, out.shape[0])
        if func in (torch.ops.aten.index_put_.default, torch.ops.aten.index_put.default) and args[2].dim() == 3:
            self.rows = max(self.rows, args[2].shape[0])
        if func is torch.ops.aten.cat.default and out.dim() == 3:  # slices joined at the end: all of them at once
            self.rows = max(self.rows, out.shape[0])
        return out


def test_a_checkpoint_moves_the_replay_frames_a_slice_at_a_time(monkeypatch):
    """Resuming a --buffer-device cuda run used to copy the saved frames whole onto the GPU before placing them, and
    saving a memory that was not full gathered a second copy there: twice the memory. The stand-in for a GPU: the
    largest number of frames any one op gathers from the memory or scatters into it, with slices of 10."""
    import dqn_atari

    monkeypatch.setattr(dqn_atari, "SLICE", 10)
    rng = np.random.default_rng(0)
    rb = dqn_atari.FrameReplayBuffer(120, (84, 84), 4, torch.device("cpu"), n_streams=2)
    obs = rng.integers(0, 256, (2, 4, 84, 84), dtype=np.uint8)
    for t in range(40):  # 80 of 120 slots, in two streams
        next_obs = rng.integers(0, 256, (2, 4, 84, 84), dtype=np.uint8)
        ended = np.array([t % 9 == 8, t % 13 == 12])
        rb.add(obs, rng.integers(4, size=2), np.ones(2, np.float32), next_obs, ended, np.zeros(2, bool))
        obs = next_obs
    with LargestCopy() as saving:
        state = dqn_atari.part_state(rb)
    restored = dqn_atari.FrameReplayBuffer(120, (84, 84), 4, torch.device("cpu"), n_streams=2)
    with LargestCopy() as loading:
        dqn_atari.load_part_state(restored, state)
    assert saving.rows <= 10 and loading.rows <= 10, (saving.rows, loading.rows)
    written = dqn_atari.written_slots(rb, rb.size)
    assert 10 < len(written) < rb.capacity and torch.equal(restored.frames[written], rb.frames[written])
    assert all(np.array_equal(getattr(restored, name), getattr(rb, name)) for name in ("episode_step", "has_next"))


def test_part_state_reads_back_weights_only_and_refuses_what_it_cannot_keep(tmp_path):
    """Numpy scalars become numbers (weights-only loading refuses numpy's), and a kind it cannot keep is an error
    at the checkpoint, not a silent gap in the resumed run."""
    import dqn_atari
    import per_dqn_atari

    rb = per_dqn_atari.PrioritizedFrameReplayBuffer(40, (84, 84), 4, torch.device("cpu"), 1, 0.6, 1e-6)
    rb.max_priority = np.float64(2.5)  # as a numpy reduction would leave it
    torch.save(dqn_atari.part_state(rb), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["max_priority"] == 2.5 and "tree" in state and state["tree"]["nodes"].dtype == torch.float64

    class Holder:
        def __init__(self):
            self.queue = {1, 2}

    with pytest.raises(TypeError, match="Holder.queue, a set"):
        dqn_atari.part_state(Holder())


# Counts the acting forward passes (torch.inference_mode, which only acting and evaluation enter), into a file
COUNT_ACTING = """
import atexit, runpy, sys, torch
count, enter = [0], torch.autograd.grad_mode.inference_mode.__enter__
def counting(self):
    count[0] += 1
    return enter(self)
torch.autograd.grad_mode.inference_mode.__enter__ = counting
script, path, sys.argv = sys.argv[1], sys.argv[2], [sys.argv[1], *sys.argv[3:]]
atexit.register(lambda: open(path, "w").write(str(count[0])))
runpy.run_path(script, run_name="__main__")
"""


def test_a_resumed_bootstrapped_agent_acts_with_its_heads_while_its_memory_refills(tmp_path):
    """Extended (its last checkpoint without the memory), bootstrapped refills for --learning-starts steps; its heads
    are trained, so they act, as the parent's network does. It used to play at random there: no acting pass at all."""
    flags = [*TINY_ATARI, "--total-timesteps", 200, "--checkpoint-frequency", 200, "--eval-episodes", 0, "--n-heads", 2]
    assert run(tmp_path, "bootstrapped_dqn_atari.py", *flags).returncode == 0
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    script = os.path.join(ROOT, "bootstrapped_dqn_atari.py")
    command = [sys.executable, "-c", COUNT_ACTING, script, tmp_path / "count", "--resume", run_dir]
    result = subprocess.run([*map(str, command), "--total-timesteps", "260"], cwd=tmp_path, **TEXT)
    assert result.returncode == 0 and "learning resumes after 100 steps" in result.stderr, result.stderr
    assert int((tmp_path / "count").read_text()) == 60  # every step of the refill, 200 to 259, acted by its head


def test_an_extended_run_s_report_takes_its_last_evaluation(tmp_path):
    """An extension evaluates again, logging its games from 0 after the first evaluation's: the grid's curves and
    the report take the last one, not the two networks' games mixed."""
    flags = [*TINY_ATARI, "--total-timesteps", 150, "--checkpoint-frequency", 150, "--eval-episodes", 2]
    assert run(tmp_path, "dqn_atari.py", *flags).returncode == 0
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    result = run(tmp_path, "dqn_atari.py", "--resume", run_dir, "--total-timesteps", 250, "--eval-episodes", 3)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split("scores [")[1].split("]")[0]
    _, evaluation = read_events(run_dir)
    assert evaluation == [float(score) for score in printed.split(", ")]  # the extension's 3 games, not 2 + 3


# The grace timer at 1 s; the envs' close (after the loop) takes a SIGTERM, then 2 s, as a slow end would
SIGNAL_AFTER_THE_LOOP = """
import os, runpy, signal, sys, time
import gymnasium as gym
alarm = signal.alarm
signal.alarm = lambda seconds: alarm(min(seconds, 1))
close = gym.vector.AsyncVectorEnv.close
def slow_close(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(2)
    return close(self, *args, **kwargs)
gym.vector.AsyncVectorEnv.close = slow_close
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def test_a_signal_after_the_loop_arms_no_grace_timer(tmp_path):
    """After the loop (saving the model, closing the envs, W&B's upload) a first signal used to arm the 60 s timer,
    which then cut a slow end short with a false 'exiting unsaved'."""
    flags = [*TINY_ATARI, "--total-timesteps", 120, "--eval-episodes", 0, "--save-model"]
    command = [sys.executable, "-c", SIGNAL_AFTER_THE_LOOP, os.path.join(ROOT, "dqn_atari.py"), *map(str, flags)]
    result = subprocess.run(command, cwd=tmp_path, **TEXT)
    assert result.returncode == 143 and "did not stop within" not in result.stderr, result.stderr
    assert "model saved to" in result.stdout


def test_a_signal_during_the_final_evaluation_says_it_did_not_run_and_how_to_run_it(tmp_path):
    flags = [*TINY_ATARI, "--total-timesteps", 150, "--checkpoint-frequency", 150, "--eval-episodes", 200]
    command = [sys.executable, os.path.join(ROOT, "dqn_atari.py"), *map(str, flags)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its lines as printed
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    while not process.stdout.readline().startswith("finished;"):  # printed just before the evaluation
        assert process.poll() is None
    time.sleep(1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    assert process.returncode == 143 and "Traceback" not in stderr
    expected = f"stopped during the evaluation, which did not finish: python dqn_atari.py --resume {run_dir} runs it"
    assert expected.replace(str(tmp_path) + "/", "") in stderr, stderr


def test_a_play_says_where_it_writes_and_records_no_game_it_did_not_play(tmp_path):
    """The play's folders are named; the evaluation begins no game after its last, whose video used to be a 17-frame
    file of a game never played."""
    flags = [*TINY_ATARI, "--total-timesteps", 120, "--eval-episodes", 0, "--save-model"]
    assert run(tmp_path, "dqn_atari.py", *flags).returncode == 0
    [model] = glob.glob(str(tmp_path / "runs" / "*" / "dqn_atari.pt"))
    result = run(
        tmp_path, "dqn_atari.py", "--load-model", model, "--eval-only", "--eval-episodes", 1, "--capture-video"
    )
    assert result.returncode == 0, result.stderr
    [play] = glob.glob(str(tmp_path / "runs" / "*-play"))
    name = os.path.basename(play)
    assert f"logs in runs/{name}, videos in videos/{name}-eval" in result.stdout
    videos = sorted(os.listdir(tmp_path / "videos" / f"{name}-eval"))
    assert videos == ["game-0.mp4"]  # the game played, and no second one begun


# SIGKILLs the run the moment its first checkpoint is in place; exits 3 instead if the TensorBoard writer then holds
# events it has not flushed (with TensorFlow installed, it holds them for up to 120 s, and the kill loses them)
KILL_AT_CHECKPOINT = """
import os, runpy, signal, sys
from torch.utils.tensorboard import SummaryWriter
pending, add, flush, replace = [False], SummaryWriter.add_scalar, SummaryWriter.flush, os.replace
def adding(self, *args, **kwargs):
    pending[0] = True
    return add(self, *args, **kwargs)
def flushing(self):
    pending[0] = False
    return flush(self)
SummaryWriter.add_scalar, SummaryWriter.flush = adding, flushing
def replace_then_die(source, target, *args, **kwargs):
    replace(source, target, *args, **kwargs)
    if str(target).endswith("checkpoint.pt"):
        if pending[0]:
            os._exit(3)
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace_then_die
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def test_a_kill_just_after_a_checkpoint_loses_no_event_before_it(tmp_path):
    """TensorBoard's writer buffers events; a kill at the checkpoint lost those just before it, and the resume hides
    everything from the checkpoint's step on: a gap for good. The events are flushed before each checkpoint."""
    flags = [*TINY_ATARI, "--total-timesteps", 400, "--checkpoint-frequency", 300, "--eval-episodes", 0]
    flags += ["--target-network-frequency", 100]
    alone = run(tmp_path, "dqn_atari.py", *flags, "--exp-name", "alone")
    assert alone.returncode == 0, alone.stderr
    command = [sys.executable, "-c", KILL_AT_CHECKPOINT, os.path.join(ROOT, "dqn_atari.py")]
    killed = subprocess.run([*command, *map(str, flags), "--exp-name", "killed"], cwd=tmp_path, **TEXT)
    assert killed.returncode == -signal.SIGKILL, "events not flushed at the checkpoint"
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*__killed__*"))
    assert run(tmp_path, "dqn_atari.py", "--resume", run_dir).returncode == 0
    [alone_dir] = glob.glob(str(tmp_path / "runs" / "*__alone__*"))
    games, _ = read_events(run_dir)
    assert games and games == read_events(alone_dir)[0]


def test_a_checkpoint_keeps_the_frames_max_and_skip_pools():
    """MaxAndSkipEnv keeps the last two frames; a step that ended the game at once max-pooled them, so a resumed env
    without them could see another final observation (about 1 resume in 27,000 under sticky actions)."""
    import dqn_atari

    args = dqn_atari.Args(env_id="ALE/Breakout-v5", episodic_life=False)
    env = dqn_atari.Resumable(dqn_atari.make_env(args, seed=1))
    env.reset(seed=1)
    for _ in range(30):
        env.step(env.action_space.sample())
    state = env.save_state()
    restored = dqn_atari.Resumable(dqn_atari.make_env(args, seed=1))
    restored.restore_state(state, seed=1)
    [pool] = [w for w in dqn_atari.wrappers(env) if type(w).__name__ == "MaxAndSkipEnv"]
    [restored_pool] = [w for w in dqn_atari.wrappers(restored) if type(w).__name__ == "MaxAndSkipEnv"]
    assert pool._obs_buffer.any() and np.array_equal(restored_pool._obs_buffer, pool._obs_buffer)


def test_error_messages_point_the_right_way(tmp_path):
    """A checkpoint file given to --resume, a folder given to --load-model, and a short run that never learned."""
    flags = [*TINY_ATARI, "--total-timesteps", 60, "--checkpoint-frequency", 60, "--eval-episodes", 0, "--save-model"]
    result = run(tmp_path, "dqn_atari.py", *flags)
    assert result.returncode == 0 and "learning had not started by step 60" in result.stdout, result.stdout
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    name = os.path.relpath(run_dir, tmp_path)
    result = run(tmp_path, "dqn_atari.py", "--resume", f"{name}/checkpoint.pt")
    assert result.returncode == 2 and f"--resume takes the run's folder, not a file: --resume {name}" in result.stderr
    result = run(tmp_path, "dqn_atari.py", "--load-model", name, "--eval-only")
    assert result.returncode == 2 and "name one of its saved files (.pt): checkpoint.pt, dqn_atari.pt" in result.stderr


def test_a_resume_on_several_threads_goes_on(tmp_path):
    """The env state once came back from the env processes as torch tensors: copying one there, in a process forked
    after the main process had run torch on several threads, hung at the first checkpoint after a resume."""
    flags = [*TINY_ATARI, "--total-timesteps", 200, "--checkpoint-frequency", 100, "--eval-episodes", 0]
    assert run(tmp_path, "dqn_atari.py", *flags).returncode == 0
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # the suite's other runs use one thread
    result = run(tmp_path, "dqn_atari.py", "--resume", run_dir, "--total-timesteps", 400, env=env, timeout=120)
    assert result.returncode == 0 and torch.load(f"{run_dir}/checkpoint.pt", weights_only=True)["loop"]["step"] == 400
