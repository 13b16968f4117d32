import os
import subprocess
import sys

import pytest

# One torch thread in the tests and in every script they start: batches of 8 gain nothing from a second thread, which
# only fights the env processes and the other run of a pair for the 2 cores (the kill-and-resume tests ran 3-4x
# faster so beside two training runs). The same seed at the same thread count still gives the same run.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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
