"""The grid driver's peak memory when a rerun finds a large checkpoint, against the same rerun without one.

    python benchmarks/grid_memory.py --gib 3 [--grid PATH/TO/benchmarks/grid.py] [--out grid_memory.csv]

Makes a grid folder holding one stopped dqn_atari.py run whose checkpoint is --gib GiB of random bytes: a stand-in
for a buffer-sized checkpoint (6.61 GiB at the default 1M buffer). It is not a checkpoint the script can read, so the
resumed run fails at once, which is all this needs: what is measured is the driver, before and while the run goes.
Then the same grid without the checkpoint (a fresh run of 300 steps). Each runs `grid.py --address local` (a fresh
local Ray) while this reads the driver's peak resident memory (VmHWM in /proc/PID/status) every 0.1 s. Prints both
and writes them as a CSV. --grid measures another copy of grid.py (an older commit's, in a git worktree).
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = "BreakoutNoFrameskip-v4__dqn_atari__1"


def peak_mib(command: list[str]) -> tuple[float, int]:
    """Run command; its peak resident memory in MiB, and its exit code."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status") as f:
                peak = max(peak, *(int(line.split()[1]) for line in f if line.startswith("VmHWM:")))
        except (OSError, ValueError):  # it just ended
            pass
        time.sleep(0.1)
    return peak / 1024, process.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=3.0, help="the checkpoint's size (default: %(default)s)")
    parser.add_argument("--grid", default=os.path.join(ROOT, "benchmarks", "grid.py"), help="the grid.py to measure")
    parser.add_argument("--out", default=None, help="a CSV of the figures")
    opts = parser.parse_args()
    rows = []
    for with_checkpoint in (True, False):
        with tempfile.TemporaryDirectory() as out:
            if with_checkpoint:
                folder = os.path.join(out, RUN, "runs", "BreakoutNoFrameskip-v4__dqn_atari__1__0")
                os.makedirs(folder)
                chunk = np.random.default_rng(0).bytes(64 << 20)  # random: gzip cannot shrink it
                with open(os.path.join(folder, "checkpoint.pt"), "wb") as f:
                    for _ in range(int(opts.gib * 16)):
                        f.write(chunk)
            command = [sys.executable, opts.grid, "--scripts", "dqn_atari.py", "--env-ids", "BreakoutNoFrameskip-v4"]
            command += ["--seeds", "1", "--out", out, "--address", "local"]
            with open(opts.grid) as f:
                if "--node-dir" in f.read():  # not in older copies of grid.py
                    command += ["--node-dir", os.path.join(out, "nodes")]
            command += [
                "--",
                "--no-cuda",
                "--total-timesteps",
                "300",
                "--learning-starts",
                "100",
                "--buffer-size",
                "300",
            ]
            command += ["--batch-size", "8", "--eval-episodes", "0"]
            peak, code = peak_mib(command)
        size = opts.gib if with_checkpoint else 0.0
        rows.append({"checkpoint_gib": size, "driver_peak_mib": round(peak, 1), "grid_exit_code": code})
        print(f"checkpoint {size:g} GiB: the driver peaked at {peak:,.0f} MiB (grid.py exit {code})", flush=True)
    if opts.out:
        with open(opts.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
