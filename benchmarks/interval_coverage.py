"""How often rliable's 95% stratified-bootstrap interval of the mean holds the true mean, by the number of runs.

    python benchmarks/interval_coverage.py --runs 3 5 10 --trials 300 --out benchmarks/results/interval_coverage.csv

Each trial draws `runs` scores of one game from a normal distribution (mean 0, standard deviation 1), asks rliable
for the interval of their mean (rliable.library.get_interval_estimates, as benchmarks/report.py does, with each of
its interval methods), and checks whether 0 lies inside. A 95% interval should hold it in 95% of the trials; with
few runs the bootstrap sees too little of the spread and holds it less often. This is why report.py calls an
interval on fewer than 5 runs per name rough. It prints and writes one row per (runs, method): the coverage, with
its binomial standard error over the trials.
"""

import argparse
import sys
import warnings

import numpy as np
from rliable import library as rly

from results_csv import write_csv  # benchmarks/results_csv.py


def coverage(runs: int, method: str, trials: int, reps: int) -> float:
    draws = np.random.RandomState(runs)  # the same scores for every method
    np.random.seed(runs)  # rliable 1.2 draws its resamples from numpy's global RNG, whatever random_state says
    held = 0
    for trial in range(trials):
        scores = draws.normal(0.0, 1.0, size=(runs, 1))
        _, intervals = rly.get_interval_estimates(
            {"run": scores},
            lambda x: np.array([x.mean()]),
            method=method,
            reps=reps,
            random_state=np.random.RandomState(trial),
        )
        (low,), (high,) = intervals["run"]
        held += low <= 0.0 <= high
    return held / trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[3, 5, 10], help="(default: %(default)s)")
    parser.add_argument("--methods", nargs="+", default=["percentile", "basic", "bca"], help="(default: %(default)s)")
    parser.add_argument("--trials", type=int, default=300, help="(default: %(default)s)")
    parser.add_argument(
        "--reps", type=int, default=1000, help="bootstrap resamples per interval (default: %(default)s)"
    )
    parser.add_argument("--out", help="a CSV to write")
    opts = parser.parse_args()
    rows = []
    with warnings.catch_warnings():  # rliable 1.2 hands arch a RandomState, which arch 7 says it will stop taking
        warnings.simplefilter("ignore")
        for runs in opts.runs:
            for method in opts.methods:
                held = coverage(runs, method, opts.trials, opts.reps)
                error = (held * (1 - held) / opts.trials) ** 0.5
                rows.append({"runs": runs, "method": method, "coverage": round(held, 3), "std_error": round(error, 3)})
                print(
                    f"{runs:3d} runs, {method:10s}: the 95% interval held the true mean in {held:.1%} (± {error:.1%})"
                )
    if opts.out:
        write_csv(opts.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
