"""Turn learning runs' TensorBoard logs into a small CSV and a table of returns per step bin.

    python benchmarks/learning_curve.py runs/BreakoutNoFrameskip-v4__dqn_atari__1__* --out benchmarks/results/breakout_dqn_seed1.csv
    python benchmarks/learning_curve.py --csv benchmarks/results/breakout_dqn_seed1.csv   # the table again, from the CSV
    python benchmarks/learning_curve.py --csv benchmarks/results/breakout_*_seed1.csv      # several runs side by side

The CSV has one row per whole game (step, episodic_return), so the tables and plots in the README can be
regenerated from it. The table prints the mean game return in each bin of `--bin` steps, the mean of the
last 20 games, and the evaluation games if the run logged any.
"""

import argparse
import csv
import os

import numpy as np


def read_events(run_dir: str) -> tuple[list[tuple[int, float]], list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir, size_guidance={"scalars": 0}).Reload()
    games = [(event.step, event.value) for event in events.Scalars("charts/episodic_return")]
    evaluation = (
        [event.value for event in events.Scalars("eval/episodic_return")]
        if "eval/episodic_return" in events.Tags()["scalars"]
        else []
    )
    return games, evaluation


def summarize(games: list[tuple[int, float]], bin_size: int, total: int) -> list[dict]:
    steps = np.array([step for step, _ in games])
    returns = np.array([value for _, value in games])
    rows = []
    for start in range(0, total, bin_size):
        in_bin = (steps >= start) & (steps < start + bin_size)
        rows.append(
            {
                "steps": f"{start // 1000}k-{(start + bin_size) // 1000}k",
                "games": int(in_bin.sum()),
                "mean_return": round(float(returns[in_bin].mean()), 1) if in_bin.any() else None,
            }
        )
    return rows


def read_csv(path: str) -> tuple[list[tuple[int, float]], list[float]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    games = [(int(row["step"]), float(row["episodic_return"])) for row in rows if row["kind"] == "train"]
    evaluation = [float(row["episodic_return"]) for row in rows if row["kind"] == "eval"]
    return games, evaluation


def print_side_by_side(paths: list[str], bin_size: int, total: int) -> None:
    names = [os.path.basename(path)[: -len(".csv")] for path in paths]
    runs = [read_csv(path) for path in paths]
    width = max(12, *map(len, names))
    print(f"{'steps':>12} " + " ".join(f"{name:>{width}}" for name in names))
    tables = [summarize(games, bin_size, total) for games, _ in runs]
    for i, row in enumerate(tables[0]):
        cells = [table[i]["mean_return"] for table in tables]
        print(f"{row['steps']:>12} " + " ".join(f"{'-' if cell is None else cell:>{width}}" for cell in cells))
    last20 = [f"{np.mean([value for _, value in games[-20:]]):.1f}" for games, _ in runs]
    print(f"{'last 20':>12} " + " ".join(f"{cell:>{width}}" for cell in last20))
    evaluations = [f"{np.mean(evaluation):.1f}" if evaluation else "-" for _, evaluation in runs]
    print(f"{'evaluation':>12} " + " ".join(f"{cell:>{width}}" for cell in evaluations))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="a runs/{run_name} folder")
    parser.add_argument("--csv", nargs="+", help="read existing CSVs instead of a run folder (several: side by side)")
    parser.add_argument("--out", help="where to write the per-game CSV")
    parser.add_argument("--bin", type=int, default=25_000)
    parser.add_argument("--total", type=int, default=300_000)
    opts = parser.parse_args()

    if opts.csv and len(opts.csv) > 1:
        print_side_by_side(opts.csv, opts.bin, opts.total)
        return
    games, evaluation = read_csv(opts.csv[0]) if opts.csv else read_events(opts.run_dir)
    if opts.out:
        os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
        with open(opts.out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["kind", "step", "episodic_return"])
            writer.writerows(("train", step, value) for step, value in games)
            writer.writerows(("eval", game, value) for game, value in enumerate(evaluation))
        print(f"wrote {opts.out}")

    print(f"{'steps':>12} {'games':>6} {'mean return':>12}")
    for row in summarize(games, opts.bin, opts.total):
        print(
            f"{row['steps']:>12} {row['games']:>6} {row['mean_return'] if row['mean_return'] is not None else '-':>12}"
        )
    last20 = games[-20:]
    if last20:
        print(
            f"last {len(last20)} games: mean {np.mean([value for _, value in last20]):.1f} (steps {last20[0][0]:,}-{last20[-1][0]:,}); {len(games)} games in all"
        )
    if evaluation:
        print(f"evaluation: {len(evaluation)} games, mean {np.mean(evaluation):.1f}, scores {evaluation}")


if __name__ == "__main__":
    main()
