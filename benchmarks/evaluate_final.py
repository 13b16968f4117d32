"""Play more evaluation games with each finished run's final network: a less noisy score than the run's own 10 games.

    python benchmarks/evaluate_final.py grid_runs --episodes 100 --out benchmarks/results/breakout_300k/final_eval.csv

DIR holds run folders as benchmarks/grid.py writes them. A run ends with a checkpoint of its final state in
`runs/*/checkpoint.pt` (only on the machine that ran it: checkpoints are not committed). For each finished run that
has one, this plays the run's own script: `SCRIPT --load-model CHECKPOINT --eval-only --eval-episodes N --env-id ENV
--seed SEED --no-cuda --no-track`, one torch thread, at the script's `--eval-epsilon` (0.05). The games are seeded
as the run's own evaluation was, so the first of them replay the run's evaluation games: `replays_run_eval` says
whether they came out the same, a check that the checkpoint holds the network the run ended with.

Writes a CSV, one row per run: name, game, seed, games, mean, std, the run's own evaluation mean, replays_run_eval.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np

from results_csv import read_curve, write_csv  # benchmarks/results_csv.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCORES_LINE = re.compile(r"evaluation over \d+ games? at epsilon [\d.]+: mean [-\d.]+, scores \[(.*)\]")


def play(script: str, checkpoint: str, env_id: str, seed: int, episodes: int) -> list[float]:
    command = [sys.executable, os.path.join(ROOT, script), "--load-model", checkpoint, "--eval-only"]
    command += ["--eval-episodes", str(episodes), "--env-id", env_id, "--seed", str(seed), "--no-cuda"]
    command += ["--no-track"]  # a tracked run's checkpoint keeps --track; these games go to the CSV, not to W&B
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=os.path.dirname(checkpoint))
    match = SCORES_LINE.search(result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return [float(score) for score in match[1].split(", ")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="a folder of run folders (benchmarks/grid.py's --out)")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation games per run")
    parser.add_argument("--out", required=True, help="the CSV to write")
    opts = parser.parse_args()
    rows = []
    for record_path in sorted(glob.glob(os.path.join(opts.dir, "*", "run.json"))):
        folder = os.path.dirname(record_path)
        checkpoints = glob.glob(os.path.join(folder, "runs", "*", "checkpoint.pt"))
        if not checkpoints:
            print(f"skipped {os.path.basename(folder)}: no checkpoint", file=sys.stderr)
            continue
        with open(record_path) as f:
            record = json.load(f)
        try:
            scores = play(record["script"], checkpoints[0], record["env_id"], record["seed"], opts.episodes)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        _, run_eval = read_curve(os.path.join(folder, "curve.csv"))
        row = {
            "name": record.get("name", record["script"].removesuffix(".py")),
            "env_id": record["env_id"],
            "seed": record["seed"],
            "games": len(scores),
            "mean": round(float(np.mean(scores)), 2),
            "std": round(float(np.std(scores)), 2),
            "run_eval_mean": round(float(np.mean(run_eval)), 2) if run_eval else "",
            "replays_run_eval": scores[: len(run_eval)] == run_eval if run_eval else "",
        }
        print(", ".join(f"{key} {value}" for key, value in row.items()), flush=True)
        rows.append(row)
    if not rows:
        print(f"error: no finished run with a checkpoint in {opts.dir}", file=sys.stderr)
        return 2
    write_csv(opts.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
