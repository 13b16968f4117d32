"""Whole-run behaviour: same seed, same results on the CPU; Ctrl-C keeps what the user asked to save."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT


def episodic_returns(run_dir):
    events = EventAccumulator(run_dir).Reload()
    return [event.value for event in events.Scalars("charts/episodic_return")]


def test_cartpole_same_seed_same_returns(run_script, tmp_path):
    flags = ["--no-cuda", "--total-timesteps", 3000, "--learning-starts", 500, "--eval-episodes", 0]
    runs = {}
    for name, seed in (("first", 7), ("again", 7), ("other", 8)):
        (tmp_path / name).mkdir()
        result = run_script("dqn_cartpole.py", *flags, "--seed", seed, "--exp-name", name)
        assert result.returncode == 0, result.stderr
        [run_dir] = glob.glob(str(tmp_path / "runs" / f"*__{name}__*"))
        runs[name] = episodic_returns(run_dir)
    assert len(runs["first"]) > 20
    assert runs["first"] == runs["again"]
    assert runs["first"] != runs["other"]


def test_atari_same_seed_same_weights(run_script, tmp_path):
    flags = [
        "--no-cuda",
        "--total-timesteps",
        300,
        "--learning-starts",
        100,
        "--buffer-size",
        300,
        "--batch-size",
        8,
        "--eval-episodes",
        0,
        "--save-model",
    ]
    weights = []
    for name in ("first", "again"):
        result = run_script("dqn_atari.py", *flags, "--exp-name", name)
        assert result.returncode == 0, result.stderr
        [model_path] = glob.glob(str(tmp_path / "runs" / f"*__{name}__*" / f"{name}.pt"))
        weights.append(torch.load(model_path, weights_only=True)["model"])
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


@pytest.mark.parametrize("script", ["dqn_cartpole.py", "dqn_atari.py"])
def test_ctrl_c_saves_the_model_and_exits_130(script, tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.join(ROOT, script),
            "--no-cuda",
            "--save-model",
            "--learning-starts",
            "200",
            "--batch-size",
            "8",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().startswith("run ")  # printed just before the training loop
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted at step" in stderr and "Traceback" not in stderr
    [model_path] = glob.glob(str(tmp_path / "runs" / "*" / f"{script[:-3]}.pt"))
    assert torch.load(model_path, weights_only=True)["model"]
