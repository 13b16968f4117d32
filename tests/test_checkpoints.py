"""Checkpoints, --resume, SIGTERM and --load-model: a killed run goes on exactly; saved agents load back."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, TINY_ATARI

TINY = [*TINY_ATARI, "--target-network-frequency", "100", "--eval-episodes", "0", "--save-model"]
EXACT_RUNS = {  # each kills its run after the first checkpoint
    # dqn_atari.py at N = 1 takes the same paths as at N = 3 (one stream of the memory, one env process)
    # sticky actions (drawn from the emulator's RNG, which checkpoints keep), in 3 env processes
    "dqn_atari.py --num-envs 3 --env-id ALE/Breakout-v5": [
        *TINY,
        *"--total-timesteps 1500 --checkpoint-frequency 300 --num-envs 3 --env-id ALE/Breakout-v5".split(),
    ],
    # n-step windows that cross the checkpoint, and the noise drawn by the CPU's generator (the small network: faster);
    # its memory is PER's, sum tree and largest priority included, so this row stands for per_dqn_atari.py's too
    "rainbow_atari.py --num-envs 2": [
        *TINY,
        *"--total-timesteps 1200 --checkpoint-frequency 300 --num-envs 2 --network data-efficient".split(),
    ],
    "bootstrapped_dqn_atari.py --num-envs 2": [
        *TINY,
        *"--total-timesteps 1200 --checkpoint-frequency 300 --n-heads 3 --mask-prob 0.5 --num-envs 2".split(),
    ],
}


STARTED = []  # the processes start() made, so that a failing test leaves none running


@pytest.fixture(autouse=True)
def kill_what_was_started():
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def start(script, flags, cwd):
    """The script in a process group of its own (with its env processes), as a terminal starts a command."""
    command = [sys.executable, os.path.join(ROOT, script), *map(str, flags)]
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    STARTED.append(process)
    return process


def scalars(run_dir, tag):
    return [(event.step, event.value) for event in EventAccumulator(run_dir).Reload().Scalars(tag)]


def model(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.parametrize("run", sorted(EXACT_RUNS))
def test_a_run_killed_between_checkpoints_and_resumed_is_the_run_left_alone(run, tmp_path):
    script, flags = run.split()[0], EXACT_RUNS[run]
    # the run left alone and the run to kill, side by side: each is deterministic, and the wait is one run's, not two
    alone = start(script, [*flags, "--exp-name", "alone"], tmp_path)
    killed = start(script, [*flags, "--exp-name", "killed"], tmp_path)
    while not glob.glob(str(tmp_path / "runs" / "*__killed__*" / "checkpoint.pt")):
        assert killed.poll() is None, killed.stderr.read()
        time.sleep(0.01)
    time.sleep(0.2)  # a little past the first checkpoint, so that the run logs steps the resumed run must replace
    assert killed.poll() is None, "the run ended before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*__killed__*"))
    assert not glob.glob(os.path.join(run_dir, "killed.pt"))  # it really was cut short

    resumed = start(script, ["--resume", run_dir], tmp_path)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "Warning" not in stderr, stderr  # a resume warns of nothing (np.array(tensor) did, under NumPy 2)
    _, stderr = alone.communicate(timeout=300)
    assert alone.returncode == 0, stderr
    [alone_dir] = glob.glob(str(tmp_path / "runs" / "*__alone__*"))
    returns = scalars(run_dir, "charts/episodic_return")
    assert len(returns) >= 5 and returns == scalars(alone_dir, "charts/episodic_return")
    for tag in ("charts/episodic_return", "losses/td_loss", "charts/epsilon"):  # no step missing or logged twice
        assert [step for step, _ in scalars(run_dir, tag)] == [step for step, _ in scalars(alone_dir, tag)], tag
    weights, weights_alone = model(os.path.join(run_dir, "killed.pt")), model(os.path.join(alone_dir, "alone.pt"))
    assert all(torch.equal(weights[key], weights_alone[key]) for key in weights)


# one handler takes both signals: each signal once, not every pair
@pytest.mark.parametrize(
    "run, signum",
    [("dqn_atari.py", signal.SIGTERM), ("dqn_atari.py --num-envs 2", signal.SIGINT)],
    ids=["atari-sigterm", "atari-n2-ctrl-c"],
)
def test_a_signal_saves_the_model_and_a_checkpoint_and_exits_128_plus_it(run, signum, tmp_path):
    script, *extra = run.split()
    # no evaluation games and a small memory: what this checks is the stop, the files it saves and the resume
    flags = "--no-cuda --save-model --learning-starts 200 --batch-size 8 --checkpoint-frequency 100000".split()
    flags += "--eval-episodes 0 --buffer-size 1000".split()
    process = start(script, [*flags, *extra], tmp_path)
    assert process.stdout.readline().startswith("run ")  # printed just before the training loop
    time.sleep(2)
    os.killpg(process.pid, signum)  # to the whole group, env processes included, as Ctrl-C in a terminal does
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    assert "interrupted at step" in stderr and "Traceback" not in stderr
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    checkpoint = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)
    assert checkpoint["loop"]["step"] > 0 and model(os.path.join(run_dir, f"{script[:-3]}.pt"))
    # and the run goes on from there
    resumed = start(script, ["--resume", run_dir, "--total-timesteps", checkpoint["loop"]["step"] + 50], tmp_path)
    _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    assert (
        torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)["loop"]["step"]
        == checkpoint["loop"]["step"] + 50
    )


def test_a_second_signal_stops_at_once():
    import dqn_atari

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    try:
        stop = dqn_atari.GracefulStop()
        os.kill(os.getpid(), signal.SIGTERM)  # the first: noted, the loop finishes its step
        assert stop.signum == signal.SIGTERM
        with pytest.raises(SystemExit) as exit_info:
            os.kill(os.getpid(), signal.SIGINT)  # the second: out at once
        assert exit_info.value.code == 130
        stop = dqn_atari.GracefulStop()
        stop.deferring = False  # as during the final evaluation: even the first stops at once
        with pytest.raises(SystemExit) as exit_info:
            os.kill(os.getpid(), signal.SIGTERM)
        assert exit_info.value.code == 143
    finally:
        signal.alarm(0)  # the first signal's grace timer
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_ctrl_c_stops_cartpole_after_its_step_and_saves_its_model(tmp_path):
    """CartPole keeps no checkpoints (a minute's run): Ctrl-C stops it between two steps, the model it was asked to
    save is saved (and played back, unless the evaluation is off), and it exits with 130."""
    flags = "--no-cuda --save-model --learning-starts 200 --batch-size 8 --eval-episodes 0 --total-timesteps 10000000"
    process = start("dqn_cartpole.py", flags.split(), tmp_path)
    assert process.stdout.readline().startswith("run ")  # printed just before the training loop
    time.sleep(2)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted at step" in stderr and "Traceback" not in stderr, stderr
    [run_dir] = glob.glob(str(tmp_path / "runs" / "*"))
    assert model(os.path.join(run_dir, "dqn_cartpole.pt")) and not os.path.exists(
        os.path.join(run_dir, "checkpoint.pt")
    )


def tiny_saved_run(tmp_path, script="dqn_atari.py", extra=()):
    flags = [*TINY, "--total-timesteps", 300, "--checkpoint-frequency", 200, *extra]
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *map(str, flags)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [run_dir] = glob.glob(str(tmp_path / "runs" / f"*__{script[:-3]}__*"))
    return run_dir


def test_eval_only_plays_a_saved_model_or_checkpoint_and_a_signal_stops_it_at_once(tmp_path, run_script):
    run_dir = tiny_saved_run(tmp_path)
    for path in (os.path.join(run_dir, "dqn_atari.pt"), os.path.join(run_dir, "checkpoint.pt")):
        result = run_script("dqn_atari.py", "--load-model", path, "--eval-only", "--eval-episodes", 1, "--no-cuda")
        assert result.returncode == 0, result.stderr
        assert "evaluation over 1 game at epsilon 0.05" in result.stdout
    process = start(
        "dqn_atari.py", ["--load-model", path, "--eval-only", "--eval-episodes", 1000, "--no-cuda"], tmp_path
    )
    # printed once its signal handlers are in place, however slow the start; then a moment into the games
    assert process.stdout.readline().startswith("playing "), process.stderr.read()
    time.sleep(2)
    began = time.time()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 143 and time.time() - began < 5 and "Traceback" not in stderr


def test_without_the_buffer_a_resumed_run_refills_it_before_learning(tmp_path, run_script):
    run_dir = tiny_saved_run(tmp_path, extra=["--no-checkpoint-buffer"])
    checkpoint = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)
    assert "replay" not in checkpoint["loop"] and "target_network" in checkpoint["loop"]
    result = run_script("dqn_atari.py", "--resume", run_dir, "--total-timesteps", 600)
    assert result.returncode == 0, result.stderr
    assert "learning resumes after 100 steps" in result.stderr  # --learning-starts 100, from step 300
    loss_steps = [step for step, _ in scalars(run_dir, "losses/td_loss")]
    assert not [step for step in loss_steps if 300 <= step < 400] and max(loss_steps) >= 400


def test_saved_files_and_resume_errors_are_one_line_each(tmp_path, run_script):
    run_dir = tiny_saved_run(tmp_path)
    checkpoint = os.path.join(run_dir, "checkpoint.pt")
    (tmp_path / "truncated").mkdir()
    with open(checkpoint, "rb") as f, open(tmp_path / "truncated" / "checkpoint.pt", "wb") as g:
        g.write(f.read()[:5000])
    (tmp_path / "not_ours.pt").write_bytes(b"not a torch file")
    torch.save({"fc.weight": torch.zeros(2)}, tmp_path / "bare_state_dict.pt")
    cases = [
        ("dqn_atari.py", ["--resume", "runs/no_such_run"], "no such folder"),
        ("dqn_atari.py", ["--resume", str(tmp_path)], "no checkpoint.pt"),
        ("dqn_atari.py", ["--resume", str(tmp_path / "truncated")], "cannot be read"),
        ("double_dqn_atari.py", ["--resume", run_dir], "saved by dqn_atari.py, not by double_dqn_atari.py"),
        (
            "dqn_atari.py",
            ["--resume", run_dir, "--env-id", "PongNoFrameskip-v4"],
            "--env-id PongNoFrameskip-v4 would change",
        ),
        ("dqn_atari.py", ["--resume", run_dir, "--buffer-size", 1000], "--buffer-size 1000 would change"),
        ("dqn_atari.py", ["--resume", run_dir, "--total-timesteps", 100], "is not above the 300 steps run"),
        ("dqn_atari.py", ["--resume", run_dir, "--checkpoint-frequency", 0], "--checkpoint-frequency 0 would leave"),
        ("dqn_atari.py", ["--load-model", "nothing.pt", "--eval-only"], "nothing.pt: no such file"),
        ("dqn_atari.py", ["--load-model", str(tmp_path / "not_ours.pt"), "--eval-only"], "cannot be read"),
        (
            "dqn_atari.py",
            ["--load-model", str(tmp_path / "bare_state_dict.pt"), "--eval-only"],
            "not a model or checkpoint",
        ),
        ("per_dqn_atari.py", ["--load-model", checkpoint, "--eval-only"], "saved by dqn_atari.py"),
        ("dqn_atari.py", ["--load-model", checkpoint, "--eval-only", "--env-id", "PongNoFrameskip-v4"], "would change"),
        ("dqn_atari.py", ["--load-model", checkpoint], "--eval-only and --load-model go together"),
        ("dqn_cartpole.py", ["--load-model", checkpoint, "--eval-only"], "saved by dqn_atari.py"),
    ]
    results = [run_script(script, *flags, timeout=120) for script, flags, _ in cases]
    for (script, flags, message), result in zip(cases, results):
        error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and "Traceback" not in result.stderr, (flags, result.stderr)
        assert len(error_lines) == 1 and message in error_lines[0], (flags, result.stderr)
