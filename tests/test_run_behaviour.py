"""Whole-run behaviour: same seed, same results on the CPU (signals: test_checkpoints.py)."""

import glob

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY_ATARI


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
    flags = [*TINY_ATARI, "--total-timesteps", "300", "--eval-episodes", "0", "--save-model"]
    weights = []
    for name in ("first", "again"):
        result = run_script("dqn_atari.py", *flags, "--exp-name", name)
        assert result.returncode == 0, result.stderr
        [model_path] = glob.glob(str(tmp_path / "runs" / f"*__{name}__*" / f"{name}.pt"))
        weights.append(torch.load(model_path, weights_only=True)["model"])
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
