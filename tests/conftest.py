import os
import subprocess
import sys

import pytest

# One torch thread in the tests and in every script they start: batches of 8 gain nothing from a second thread, which
# only fights the env processes and the other run of a pair for the 2 cores (beside two training runs, the
# kill-and-resume tests took 31-39 s each this way, 104-135 s before). A seed repeats at a fixed thread count.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# --track in a test never reaches the network: W&B writes its run to a local folder
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.pop("WANDB_DIR", None)  # the offline runs go to wandb/ beside the run, where the tests look

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the smallest Atari run that learns a little: 100 random steps, then updates on batches of 8
TINY_ATARI = "--no-cuda --learning-starts 100 --buffer-size 300 --batch-size 8".split()


@pytest.fixture
def run_script(tmp_path):
    """Run a top-level script through its real command line, in a scratch folder; returns the CompletedProcess."""

    def run(script, *flags, timeout=300):
        return subprocess.run(
            [sys.executable, os.path.join(ROOT, script), *map(str, flags)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
