import json
import os
import subprocess
import sys
import tempfile

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


# The scripts' commands run from one Python process for the whole session, a "zygote": it imports what the scripts import
# once, then forks a child for each command, which runs the script as `python SCRIPT FLAGS` would (its `__main__`
# block, with that argv, in that folder; stdin empty) and ends as the interpreter would: its exit code, its stdout and
# stderr (a traceback where an exception escapes). Each child is a fresh copy of the zygote, so nothing passes between
# commands, and each saves the 1.5 s a new interpreter takes to import torch. ale_py is not imported in the zygote: it
# registers the Atari ids, which CartPole must not see; the Atari scripts import it themselves.
ZYGOTE_PROGRAM = r"""
import json, os, runpy, signal, sys, time, traceback
import cv2, gymnasium, numpy, stable_baselines3.common.atari_wrappers, torch, tyro
import torch.utils.tensorboard
for line in sys.stdin:
    script, flags, cwd, out, timeout = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.setsid()  # a group of its own, with its env processes: a timeout ends them all
        os.chdir(cwd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(os.path.join(out, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.stdin, sys.argv, code = open(os.devnull), [script, *flags], 0
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else print(e.code, file=sys.stderr) or 1
        except KeyboardInterrupt:
            traceback.print_exc()
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
        for handler in __import__("atexit")._run_exitfuncs, sys.stdout.flush, sys.stderr.flush:
            handler()
        os._exit(code)
    deadline, status = time.time() + timeout, None
    while status is None:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
        elif time.time() > deadline:
            os.killpg(pid, signal.SIGKILL)
        else:
            time.sleep(0.02)
    print(json.dumps(status), flush=True)
"""


ZYGOTE = []  # the session's zygote, for the tests' module-level helpers (run_command)


@pytest.fixture(scope="session", autouse=True)
def zygote(tmp_path_factory):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE_PROGRAM], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    process.outputs = tmp_path_factory.mktemp("zygote")  # each command's stdout and stderr, in a folder of its own
    ZYGOTE.append(process)
    yield process
    ZYGOTE.clear()
    process.stdin.close()
    process.wait(timeout=60)


def run_in(zygote, script, flags, cwd, timeout=300) -> subprocess.CompletedProcess:
    """`python SCRIPT FLAGS` in cwd, through the zygote. A timeout ends it with -9 (SIGKILL), not TimeoutExpired."""
    out = tempfile.mkdtemp(dir=zygote.outputs)
    command = [os.path.join(ROOT, script), [str(flag) for flag in flags], str(cwd), str(out), timeout]
    zygote.stdin.write(json.dumps(command) + "\n")
    zygote.stdin.flush()
    code = json.loads(zygote.stdout.readline())
    stdout, stderr = (open(os.path.join(out, name)).read() for name in ("stdout", "stderr"))
    return subprocess.CompletedProcess([script, *flags], code, stdout, stderr)


def run_command(cwd, script, *flags, env=None, timeout=300) -> subprocess.CompletedProcess:
    """`python SCRIPT FLAGS` in cwd: through the zygote, or, with an environment of its own, as a process of its own."""
    if env is None:
        return run_in(ZYGOTE[0], script, flags, cwd, timeout)
    command = [sys.executable, os.path.join(ROOT, script), *map(str, flags)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def run_script(tmp_path, tmp_path_factory, zygote):
    """Run a top-level script through its real command line, in a scratch folder; returns the CompletedProcess."""

    def run(script, *flags, timeout=300):
        return run_in(zygote, script, flags, tmp_path, timeout)

    return run
