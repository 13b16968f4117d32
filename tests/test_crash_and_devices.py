"""How a run ends when something goes wrong, and the paths no machine of ours can run.

- A crash inside a run (here an exception in its first update) ends the process within seconds, with its traceback and
  a non-zero exit code, and leaves no env process behind, at --num-envs 1 and 3.
- SIGTERM ends a run that has stopped making progress, after GracefulStop's grace period.
- A --learning-starts too small to draw a first batch waits until one can be drawn: no update on an empty memory.
- The replay memory's sampling with its frames on another device than the CPU: PyTorch's `meta` device stands in
  for a GPU, which these machines lack.
"""

import glob
import importlib
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from subprocess import PIPE

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, TINY_ATARI

ATARI_SCRIPTS = ["dqn_atari.py", "double_dqn_atari.py", "dueling_dqn_atari.py", "per_dqn_atari.py"]
ATARI_SCRIPTS += ["bootstrapped_dqn_atari.py"]

# Runs a script as `python SCRIPT FLAGS...` would, with its optimizer's step made to fail: a crash inside the update.
CRASHING_UPDATE = """
import runpy, sys, time, torch
def fail(self, *args, **kwargs):
    print(f"crashing at {time.time()}", file=sys.stderr, flush=True)
    raise RuntimeError("a failure inside the update")
torch.optim.Adam.step = fail
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def start_marked(program: str, script: str, flags: list[str], cwd) -> tuple[subprocess.Popen, str]:
    """`python -c program SCRIPT TINY_ATARI flags` in a session of its own, with a marker in its environment that
    every process it starts inherits; returns the process and the marker."""
    marker = f"DQN_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    command = [sys.executable, "-c", program, os.path.join(ROOT, script), *TINY_ATARI, *flags]
    run = subprocess.Popen(command, cwd=cwd, env=env, stdout=PIPE, stderr=PIPE, text=True, start_new_session=True)
    return run, marker


def processes_with(marker: str) -> list[int]:
    """The pids of the live processes whose environment holds `marker` (the run and every process it started)."""
    pids = []
    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(path, "rb") as f:
                if marker.encode() in f.read():
                    pids.append(int(path.split("/")[2]))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return pids


@pytest.mark.parametrize(
    # dqn_atari.py at N = 1 and 3, and the variants whose loops differ most from it at N = 3 (double and dueling change
    # only the target and the network; PER's loop is Rainbow's less its additions); test_learning_starts... below
    # crashes the old first update of dqn's, PER's and bootstrapped's loops too
    "script, num_envs",
    [("dqn_atari.py", 1), ("dqn_atari.py", 3), ("bootstrapped_dqn_atari.py", 3), ("rainbow_atari.py", 3)],
    ids=lambda x: str(x),
)
def test_a_crash_in_the_update_ends_the_run_and_its_env_processes(script, num_envs, tmp_path):
    flags = ["--total-timesteps", "400", "--eval-episodes", "0", "--num-envs", str(num_envs)]
    run, marker = start_marked(CRASHING_UPDATE, script, flags, tmp_path)
    try:
        _, stderr = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # the hang this test is about: end it, and everything it started
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        pytest.fail(f"{script} --num-envs {num_envs} did not end after its crash")
    ended = time.time()
    crashed = float(stderr.split("crashing at ")[1].split()[0])
    assert run.returncode == 1, stderr
    assert "Traceback" in stderr and "RuntimeError: a failure inside the update" in stderr
    assert ended - crashed < 10, f"ended {ended - crashed:.1f} s after the crash"
    time.sleep(0.5)  # a killed process leaves /proc a moment later
    assert processes_with(marker) == [], "env processes outlived the run"


# Runs a script with its env processes' emulator hanging at its 200th frame, and a grace period of 2 s, not 60.
HANGING_ENV = """
import os, runpy, signal, sys, time, ale_py
alarm = signal.alarm
signal.alarm = lambda seconds: alarm(min(seconds, 2))
step, frames = ale_py.AtariEnv.step, [0]
def hang_at_frame_200(self, action):
    frames[0] += 1
    if frames[0] == 200 and multiprocessing.parent_process() is not None:
        open("hanging", "w").close()
        time.sleep(3600)
    return step(self, action)
import multiprocessing
ale_py.AtariEnv.step = hang_at_frame_200
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def test_sigterm_ends_a_run_whose_env_hangs(tmp_path):
    """The loop waits forever on a hung env process; SIGTERM asks it to stop, and after the grace period the run
    exits 143, its env processes killed (leaving the frame that holds them used to wait on them instead)."""
    run, marker = start_marked(
        HANGING_ENV, "dqn_atari.py", ["--total-timesteps", "100000", "--eval-episodes", "0"], tmp_path
    )
    try:
        deadline = time.time() + 60
        while not (tmp_path / "hanging").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert (tmp_path / "hanging").exists(), run.stderr.read() if run.poll() is not None else "no hang"
        signalled = time.time()
        run.send_signal(signal.SIGTERM)  # to the run alone: its env processes ignore SIGTERM anyway
        _, stderr = run.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        pytest.fail("SIGTERM did not end a run whose env hangs")
    assert run.returncode == 143 and time.time() - signalled < 10, stderr
    assert "error: the run did not stop within" in stderr
    time.sleep(0.5)
    assert processes_with(marker) == [], "env processes outlived the run"


def test_sigterm_ends_a_run_that_has_stopped_making_progress():
    """The first signal asks the loop to stop at its next step; a loop that never comes round (a hung env worker, an
    update that never returns) is ended grace_s seconds later, with 128 + signum, as a second signal would."""
    dqn_atari = importlib.import_module("dqn_atari")
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    try:
        stop = dqn_atari.GracefulStop(grace_s=1)
        began = time.time()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM  # asked, not yet ended
        with pytest.raises(SystemExit) as ended:
            time.sleep(30)  # a loop that makes no progress
        assert ended.value.code == 143 and time.time() - began < 5

        stop = dqn_atari.GracefulStop(grace_s=1)  # a loop that comes round in time stops there, with no grace exit
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested()
        time.sleep(1.5)
    finally:
        signal.alarm(0)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


# dqn_atari.py's sampling stands for double's and dueling's, whose memory and loop it is
@pytest.mark.parametrize("script", ["dqn_atari.py", "per_dqn_atari.py", "bootstrapped_dqn_atari.py"])
def test_learning_starts_below_a_first_batch_waits_for_one(script, run_script, tmp_path):
    """With --learning-starts 0 the first update used to draw from an empty memory: a ValueError (then the hang of a
    crash), or NaN importance weights in PER that spread through its network and sum tree under exit code 0."""
    result = run_script(
        script, *TINY_ATARI, "--learning-starts", "0", "--total-timesteps", "104", "--num-envs", "2",
        "--eval-episodes", "0", "--save-model", "--train-frequency", "1",
        *(["--n-heads", "3"] if script == "bootstrapped_dqn_atari.py" else []), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0}).Reload()
    losses = events.Scalars("losses/td_loss")
    assert [event.step for event in losses] == [100] and math.isfinite(losses[0].value)
    model = torch.load(glob.glob(os.path.join(run_dir, "*.pt"))[0], weights_only=True)["model"]
    assert all(torch.isfinite(weights).all() for weights in model.values())


def fill(buffer, n_streams: int, steps: int, rng: np.random.Generator, **extra) -> None:
    """Store `steps` random transitions per stream, with episode ends here and there."""
    obs = rng.integers(0, 256, (n_streams, 4, 84, 84), dtype=np.uint8)
    for t in range(steps):
        next_obs = rng.integers(0, 256, (n_streams, 4, 84, 84), dtype=np.uint8)
        ended = np.array([(t + k) % 5 == 4 for k in range(n_streams)])
        buffer.add(obs, np.zeros(n_streams, dtype=np.int64), np.ones(n_streams, dtype=np.float32), next_obs,
                   ended, np.zeros(n_streams, dtype=bool), **extra)  # fmt: skip
        obs = next_obs


@pytest.mark.parametrize("script", [*ATARI_SCRIPTS, "rainbow_atari.py"])
def test_sampling_with_the_replay_frames_on_another_device(script, monkeypatch):
    """--buffer-device cuda, with the `meta` device standing in for the GPU: the frames are stored and sampled there,
    and every batch comes back on the training device. Before the fix, get() gathered the frames into a CPU tensor
    (`out=` of index_select), which PyTorch refuses across devices. Every tensor handed to to_device, the one way on
    to a GPU, is contiguous: pinning a view would pin and copy the whole of what it views."""
    module = importlib.import_module(script[: -len(".py")])
    handed = []

    def spy(x, device):
        handed.append(x)
        return original(x, device)

    original = module.to_device
    monkeypatch.setattr(module, "to_device", spy)
    meta, n_streams, rng = torch.device("meta"), 3, np.random.default_rng(0)
    args = (60, (84, 84), 4, meta, n_streams)
    if script == "per_dqn_atari.py":
        buffer = module.PrioritizedFrameReplayBuffer(*args, alpha=0.6, priority_epsilon=1e-6)
        fill(buffer, n_streams, 12, rng)
        batch, _, weights = buffer.sample(8, rng, meta, 0.4)
        assert weights.device == meta and any(x.dtype == torch.float32 and x.shape == (8,) for x in handed)
    elif script == "rainbow_atari.py":  # n-step transitions: two stacks gathered per transition
        buffer = module.PrioritizedFrameReplayBuffer(*args, alpha=0.5, priority_epsilon=1e-6, n_step=3, gamma=0.99)
        fill(buffer, n_streams, 12, rng)
        batch, _, weights = buffer.sample(8, rng, meta, 0.4)
        assert weights.device == meta and batch.discounts.shape == (8,)
    elif script == "bootstrapped_dqn_atari.py":
        buffer = module.MaskedFrameReplayBuffer(*args, n_heads=10)
        fill(buffer, n_streams, 12, rng, masks=np.ones((n_streams, 10), dtype=bool))
        batch, masks = buffer.sample(8, rng, meta)
        assert masks.device == meta and masks.shape == (8, 10)
    else:
        buffer = module.FrameReplayBuffer(*args)
        fill(buffer, n_streams, 12, rng)
        batch = buffer.sample(8, rng, meta)
    assert buffer.frames.device == meta
    assert all(x.device == meta for x in batch)
    assert batch.obs.shape == batch.next_obs.shape == (8, 4, 84, 84)
    assert all(x.is_contiguous() for x in handed)


def test_head_agreement_counts_only_the_steps_that_played_the_vote():
    """eval/head_agreement is the share of heads that voted for the action played; at an epsilon step the action
    was random, not the vote."""
    bootstrapped = importlib.import_module("bootstrapped_dqn_atari")

    class FiveStepGame(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            self.t = 0
            return np.zeros((4, 84, 84), np.uint8), {}

        def step(self, action):
            self.t += 1
            over = self.t == 5
            return np.zeros((4, 84, 84), np.uint8), 1.0, over, False, {"episode": {"r": 5.0}} if over else {}

    def seven_of_ten_heads_for_action_0(obs):
        q = torch.zeros(1, 10, 2)
        q[0, 7:, 1] = 1.0  # heads 7, 8, 9 prefer action 1
        return q

    def agreements(epsilon):
        return bootstrapped.evaluate(seven_of_ten_heads_for_action_0, FiveStepGame(), 2, epsilon, 0, "cpu")[1]

    assert agreements(0.0) == pytest.approx([0.7, 0.7])
    assert all(math.isnan(a) for a in agreements(1.0))  # every action random: nothing to say about the vote
