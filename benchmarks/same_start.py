"""Check that a finished run still counts: rerun its command from step 0 on today's code, stop it after `--until`
steps, and compare the whole games both played by then.

    python benchmarks/same_start.py grid_runs/BreakoutNoFrameskip-v4__dqn_atari__1 --until 50000

RUN is a run folder as benchmarks/grid.py writes it (`run.json` and `curve.csv`, or a copy made by `report.py
--export`). The rerun uses the command in `run.json` (a resumed run's `--resume PATH` becomes its game and seed
again; `--track` is left out), works in a temporary folder, and runs at `OMP_NUM_THREADS=--threads` (1, grid.py's
default): the same seed on the CPU gives the same run only at the same thread count. Once the step it prints passes
`--until`, it gets SIGTERM; the checkpoint it then saves is thrown away with the folder.

Same means: the same number of games ended by step `--until`, each at the same step with the same return. It prints
the comparison and exits 0 when the games are the same, 1 when they differ.
"""

import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

from report import curve_of  # benchmarks/report.py

from results_csv import read_events  # benchmarks/results_csv.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_LINE = re.compile(r"step\s+([\d,]+)/")  # the scripts' progress line, printed every 10 s


def fresh_command(record: dict) -> list[str]:
    """run.json's command as a run from step 0: its flags, with the game and seed of the record, less --track (a
    check sends nothing to W&B)."""
    script, *rest = record["command"]
    flags, i = [], 0
    while i < len(rest):
        if rest[i] in ("--resume", "--env-id", "--seed"):
            i += 2  # the flag and its value
        elif rest[i] == "--track":
            i += 1
        else:
            flags.append(rest[i])
            i += 1
    return [script, "--env-id", record["env_id"], "--seed", str(record["seed"]), *flags]


def rerun_games(command: list[str], until: int, threads: int) -> list[tuple[int, float]]:
    """The whole games (step, return) of `command` run from step 0 and stopped once past `until` steps."""
    script, *flags = command
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as work:
        run = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, script), *flags],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # a Ctrl-C here reaches this tool, which then kills the rerun below
        )
        try:
            for line in run.stdout:
                match = STEP_LINE.match(line)
                if match and int(match[1].replace(",", "")) >= until:
                    run.send_signal(signal.SIGTERM)  # the script closes its event file and exits
                    break
            run.communicate()
        finally:
            if run.poll() is None:
                run.kill()
        if run.returncode not in (0, 128 + signal.SIGTERM):
            raise RuntimeError(f"the rerun exited {run.returncode}")
        (events,) = glob.glob(os.path.join(work, "runs", "*", ""))
        games, _ = read_events(events)
    return games


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder with run.json (benchmarks/grid.py's, or report.py --export's copy)")
    parser.add_argument("--until", type=int, default=50_000, help="compare the games that ended by this step")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the rerun")
    opts = parser.parse_args()
    record_path = os.path.join(opts.run, "run.json")
    if not os.path.isfile(record_path):
        print(f"error: no run.json in {opts.run}: not a finished run", file=sys.stderr)
        return 2
    with open(record_path) as f:
        record = json.load(f)
    if record.get("threads", opts.threads) != opts.threads:
        print(f"note: the run used {record['threads']} thread(s), the rerun {opts.threads}", file=sys.stderr)
    command = fresh_command(record)
    print(f"{os.path.basename(os.path.normpath(opts.run))}: rerunning `{' '.join(command)}` to step {opts.until:,}")
    original = [game for game in curve_of(opts.run)[0] if game[0] <= opts.until]
    if not original:
        print(f"error: the run has no game that ended by step {opts.until:,}: nothing to compare", file=sys.stderr)
        return 2
    try:
        rerun = [game for game in rerun_games(command, opts.until, opts.threads) if game[0] <= opts.until]
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"games ended by step {opts.until:,}: {len(original)} in the run, {len(rerun)} in the rerun")
    for game, ((step_a, return_a), (step_b, return_b)) in enumerate(zip(original, rerun), 1):
        if (step_a, return_a) != (step_b, return_b):
            print(
                f"DIFFERENT from game {game}: it ended at step {step_a:,} with {return_a:g} in the run, "
                f"at step {step_b:,} with {return_b:g} in the rerun"
            )
            return 1
    if len(original) != len(rerun):
        print("DIFFERENT: the same games as far as both go, but not as many")
        return 1
    total = sum(value for _, value in original)
    print(f"same: every game ended at the same step with the same return (sum of returns {total:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
