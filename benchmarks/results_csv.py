"""The CSV helpers the benchmark scripts share (benchmarks only; the algorithm scripts stay self-contained)."""

import csv
import os


def write_csv(path: str, rows: list[dict]) -> None:
    """Write dict rows under their first row's keys, creating the folder; say where."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")


# A run's curve: one row per whole game, `train` rows at the step the game ended, then `eval` rows numbered from 0.
CURVE_FIELDS = ["kind", "step", "episodic_return"]


def read_events(run_dir: str) -> tuple[list[tuple[int, float]], list[float]]:
    """A runs/{run_name} folder's training games (step, return) and its last evaluation's returns, from its events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir, size_guidance={"scalars": 0}).Reload()
    tags = events.Tags()["scalars"]
    games = (
        [(e.step, e.value) for e in events.Scalars("charts/episodic_return")]
        if "charts/episodic_return" in tags
        else []
    )
    # each evaluation logs its games from 0 (an extension's, or one left to a resume, after the first's): the last
    evaluations = []
    for event in events.Scalars("eval/episodic_return") if "eval/episodic_return" in tags else []:
        if event.step == 0 or not evaluations:
            evaluations.append([])
        evaluations[-1].append(event.value)
    return games, evaluations[-1] if evaluations else []


def write_curve(path: str, games: list[tuple[int, float]], evaluation: list[float]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CURVE_FIELDS)
        writer.writerows(("train", step, value) for step, value in games)
        writer.writerows(("eval", game, value) for game, value in enumerate(evaluation))


def read_curve(path: str) -> tuple[list[tuple[int, float]], list[float]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    games = [(int(row["step"]), float(row["episodic_return"])) for row in rows if row["kind"] == "train"]
    evaluation = [float(row["episodic_return"]) for row in rows if row["kind"] == "eval"]
    return games, evaluation
