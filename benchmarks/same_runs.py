"""Same seed, same run, before and after a change: every script's tiny run in two copies of the repository.

    git worktree add /tmp/before COMMIT
    python benchmarks/same_runs.py /tmp/before .

Runs dqn_cartpole.py and the six Atari scripts (or --scripts) with the same tiny flags and seed in each tree (one torch thread, on
the CPU, past learning starts so that the updates count), then compares the whole-game returns each logged and the
final weights each saved, bit for bit. Prints a line per script and exits 1 if any differ. A change that keeps the
math, like moving code, must leave every line "same".
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ATARI = "--no-cuda --learning-starts 100 --buffer-size 300 --batch-size 8 --total-timesteps 600 --eval-episodes 0"
RUNS = {
    "dqn_cartpole.py": "--no-cuda --total-timesteps 3000 --learning-starts 500 --eval-episodes 0",
    "dqn_atari.py": ATARI,
    "double_dqn_atari.py": ATARI,
    "dueling_dqn_atari.py": ATARI,
    "per_dqn_atari.py": ATARI,
    "bootstrapped_dqn_atari.py": ATARI + " --n-heads 3 --mask-prob 0.5",
    "rainbow_atari.py": ATARI,
}


def one_run(tree: str, script: str, flags: str) -> tuple[list, dict]:
    """The returns a script's run logged, and its final weights."""
    with tempfile.TemporaryDirectory() as cwd:
        command = [sys.executable, os.path.join(tree, script), *flags.split(), "--save-model", "--seed", "3"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{tree}/{script} failed:\n{result.stderr[-2000:]}")
        [run_dir] = glob.glob(os.path.join(cwd, "runs", "*"))
        returns = [(e.step, e.value) for e in EventAccumulator(run_dir).Reload().Scalars("charts/episodic_return")]
        weights = torch.load(glob.glob(os.path.join(run_dir, f"{script[:-3]}.pt"))[0], weights_only=True)["model"]
        return returns, weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--scripts", nargs="+", default=list(RUNS), choices=list(RUNS), help="(default: all)")
    opts = parser.parse_args()
    differ = 0
    for script in opts.scripts:
        flags = RUNS[script]
        (returns_a, weights_a), (returns_b, weights_b) = (
            one_run(os.path.abspath(tree), script, flags) for tree in (opts.before, opts.after)
        )
        same_weights = weights_a.keys() == weights_b.keys() and all(
            torch.equal(weights_a[k], weights_b[k]) for k in weights_a
        )
        same = returns_a == returns_b and same_weights
        differ += not same
        print(
            f"{script}: {'same' if same else 'DIFFERENT'} ({len(returns_a)} games, returns "
            f"{'equal' if returns_a == returns_b else 'differ'}; weights {'equal' if same_weights else 'differ'})",
            flush=True,
        )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
