"""Run dqn_cartpole.py or tabular_q_frozenlake.py over several seeds and check the issue's targets.

    python benchmarks/seed_sweep.py cartpole                       # defaults, seeds 1-10
    python benchmarks/seed_sweep.py frozenlake -- --map-name 8x8   # flags after -- go to the script

Runs go one after another through the script's real command line, so their wall times are not
inflated by each other. Prints one line per seed and a summary; writes a CSV to benchmarks/results/.
  cartpole:   greedy evaluation mean (target: >= 475 on 9 of 10 seeds) and wall time (target: < 60 s)
  frozenlake: exact success rate of the learned greedy policy and of the optimal one (target: gap <= 0.02)
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from results_csv import write_csv  # benchmarks/results_csv.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPTS = {
    "cartpole": ("dqn_cartpole.py", ["--no-cuda"]),
    "frozenlake": ("tabular_q_frozenlake.py", ["--eval-episodes", "2000"]),
}


def parse(kind: str, out: str) -> dict:
    if kind == "cartpole":
        mean = float(re.search(r"greedy evaluation over \d+ episodes?: mean ([\d.]+)", out).group(1))
        return {"eval_mean": mean, "ok": mean >= 475}
    learned, optimal = map(float, re.search(r"exact, from the model\s+([\d.]+)\s+([\d.]+)", out).groups())
    measured = re.search(r"over [\d,]+ episodes\s+([\d.]+)\s+([\d.]+)", out)
    row = {"learned_exact": learned, "optimal_exact": optimal, "gap": round(optimal - learned, 4)}
    if measured:
        row["learned_measured"], row["optimal_measured"] = map(float, measured.groups())
    row["ok"] = row["gap"] <= 0.02
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(SCRIPTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--out", help="CSV path (default: benchmarks/results/{kind}_seeds.csv)")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []  # flags for the script itself
    opts = parser.parse_args(argv[: len(argv) - len(extra) - (1 if extra else 0)])
    script, base_flags = SCRIPTS[opts.kind]
    out_path = opts.out or os.path.join(ROOT, "benchmarks", "results", f"{opts.kind}_seeds.csv")

    rows = []
    with tempfile.TemporaryDirectory() as workdir:  # the runs' logs are thrown away
        for seed in opts.seeds:
            cmd = [sys.executable, os.path.join(ROOT, script), *base_flags, "--seed", str(seed), *extra]
            start = time.time()
            out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=True).stdout
            row = {"seed": seed, **parse(opts.kind, out), "wall_s": round(time.time() - start, 1)}
            rows.append(row)
            print("  ".join(f"{key} {value}" for key, value in row.items()), flush=True)

    passed = sum(row["ok"] for row in rows)
    print(f"{passed}/{len(rows)} seeds meet the target; slowest run {max(row['wall_s'] for row in rows)} s")
    print(f"command: python benchmarks/seed_sweep.py {opts.kind} {' '.join(sys.argv[2:])}")
    write_csv(out_path, rows)


if __name__ == "__main__":
    main()
