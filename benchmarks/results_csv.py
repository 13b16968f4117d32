"""The one CSV writer the benchmark scripts share (benchmarks only; the algorithm scripts stay self-contained)."""

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
