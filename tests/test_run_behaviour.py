"""Whole-run behaviour: same seed, same results on the CPU (signals: test_checkpoints.py)."""

import glob

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY_ATARI


def episodic_returns(run_dir):
    events = EventAccumulator(run_dir).Reload()
    return [event.value for event in events.Scalars("charts/episodic_return")]


def test_cartpole_same_seed_same_returns(run_script, tmp_path):
    flags = ["--no-cuda", "--total-timesteps", 2000, "--learning-starts", 500, "--eval-episodes", 0]
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


def test_atari_same_seed_same_weights_and_bf16_changes_them(run_script, tmp_path):
    """The same seed gives the same network, under --bf16 too; --bf16 changes the numerics."""
    flags = [*TINY_ATARI, "--total-timesteps", "300", "--eval-episodes", "0", "--save-model"]
    weights = {}
    for name, more in (("first", []), ("again", []), ("bf16", ["--bf16"]), ("bf16again", ["--bf16"])):
        result = run_script("dqn_atari.py", *flags, *more, "--exp-name", name)
        assert result.returncode == 0, result.stderr
        [model_path] = glob.glob(str(tmp_path / "runs" / f"*__{name}__*" / f"{name}.pt"))
        weights[name] = torch.load(model_path, weights_only=True)["model"]

    def same(a, b):
        return all(torch.equal(weights[a][key], weights[b][key]) for key in weights[a])

    assert same("first", "again") and same("bf16", "bf16again") and not same("first", "bf16")
    assert all(tensor.dtype == torch.float32 and torch.isfinite(tensor).all() for tensor in weights["bf16"].values())
