"""Run a grid of scripts x games x seeds on Ray, each run a Ray task that runs the unchanged script as a subprocess.

    python benchmarks/grid.py --scripts dqn_atari.py double_dqn_atari.py --env-ids BreakoutNoFrameskip-v4 \\
        PongNoFrameskip-v4 --seeds 1 2 3 --out grid_runs -- --total-timesteps 300000 --learning-starts 20000 --buffer-size 100000

Where Ray counts GPUs (this machine or a cluster), add --gpus-per-run 1 (or 0.5, two runs to a GPU), or --no-cuda
after --: the grid refuses to let runs take a GPU Ray does not count.

Everything after `--` goes to every script. Each run lands in `--out/{env_id}__{name}__{seed}/`, where the name is
the script's (`dqn_atari`) or, with `--tag lr1e-4`, `dqn_atari_lr1e-4`, so that one script under two sets of flags
gets two sets of runs: its `runs/` folder (TensorBoard events, the model, the checkpoint), `stdout.log` and
`stderr.log`, and, once it has finished, `curve.csv` (one row per whole game, for benchmarks/report.py) and `run.json`
(the command, exit code, wall time, steps per second, when it ran), which marks it finished.

- Engine: by default, as `ray.init()` does, the Ray cluster this machine is part of (`ray start`) if there is one,
  else a fresh local instance; `--address local` always starts a fresh one, `--address auto` joins the cluster
  started with `ray start --head` (or joined with `ray start --address`), `--address ray://host:10001` joins one
  through Ray Client. It prints which cluster it joined, with its CPUs and GPUs. Ray packs runs by `--cpus-per-run`,
  `--gpus-per-run` and `--resources` (custom resources: a run goes only to nodes that have them); `--threads-per-run`
  sets the runs' torch threads (OMP_NUM_THREADS).
- Where runs work, and where their checkpoints stay: a checkpoint that holds the replay memory never passes through
  this process's memory or Ray's object store; a finished run's last checkpoint, without it, does (below: the
  networks, the optimizer, the envs' state, 27 MB for dqn_atari.py on Breakout, about 260 MB for bootstrapped's ten heads). A
  CartPole run keeps no checkpoint, and a stopped one starts again. A run on the machine that holds `--out` works there directly. A run on another node works in
  `--node-dir` on that node, and when it ends its results travel to `--out`: events, logs, the model, and a finished
  run's last checkpoint, which leaves the replay memory out (unless the run has --keep-final-buffer). A stopped run's
  checkpoint, buffer-sized, stays on the node (`node.json` in the run's folder says where); the same command sends
  the run back to that node, and it resumes there. With `--shared-out`, `--out` is on storage that every node sees (Ray's own convention
  for clusters: NFS, a cluster filesystem), and every run works in it directly. The code reaches every node through
  Ray's `runtime_env` (this repository, without its run folders).
- Rerunning the same command skips finished runs and resumes any run that left a checkpoint (`--resume`).
- A failed run is reported with the tail of its stderr while the others go on; the command then exits 1. A run that
  ended any other way than 143 after the stop signal (below) has failed too.
- Ctrl-C or SIGTERM stops the grid without losing work: each running run gets one SIGTERM, saves a checkpoint and
  ends, queued runs do not start, and the same command goes on with them later. A second signal exits at once.
- `-- --track` mirrors every run to Weights & Biases, in one W&B group per grid, named as `--out`'s folder; a resumed
  run goes on in its W&B run.
- A progress line shows done / running / failed / queued and an ETA.
"""

import argparse
import glob
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time

import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from results_csv import read_events, write_curve  # benchmarks/results_csv.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXCLUDES = [".git", "runs", "videos", "wandb", ".whl", ".gl", "__pycache__", ".pytest_cache", ".ruff_cache", "*.pt"]


def pack(folder: str, with_checkpoint: bool) -> bytes:
    """A run's folder as tar.gz bytes; without its checkpoint unless asked (a stopped run's holds the replay memory,
    buffer-sized: it stays where the run works), and without W&B's local copy of a tracked run."""

    def results_only(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = os.path.basename(member.name)
        if member.name in ("./wandb", "wandb") or member.name.startswith(("./wandb/", "wandb/")):
            return None  # --track's local copy: W&B has it already, videos included
        return None if name.endswith(".tmp") or (name == "checkpoint.pt" and not with_checkpoint) else member

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=".", filter=results_only)
    return buffer.getvalue()


def unpack(data: bytes, folder: str) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")


@ray.remote(num_cpus=0)
class StopFlag:
    """Raised when the grid is told to stop (Ctrl-C, SIGTERM): running runs then stop with a checkpoint, and queued
    runs do not start."""

    def __init__(self):
        self.raised = False

    def raise_(self) -> None:
        self.raised = True

    def is_raised(self) -> bool:
        return self.raised


def stop_raised(stop: StopFlag) -> bool:
    """Whether the grid is stopping, asked from inside a run's task. Not with ray.get or ray.wait: a task blocked in
    either gives its CPU back to Ray while it waits, and Ray starts a queued run on it, so that asking every 2 s let
    more runs run at once than there were CPUs."""
    return stop.is_raised.remote().future().result()


def node_folder(node_dir: str, out_dir: str) -> str:
    """Where the run whose results go to out_dir works on a node other than the driver's: the same place on each
    rerun, and its own for each grid (a hash of the driver's --out)."""
    grid_out, run = os.path.split(out_dir)
    grid = f"{os.path.basename(grid_out)}-{hashlib.sha1(grid_out.encode()).hexdigest()[:8]}"
    return os.path.join(os.path.expanduser(node_dir), grid, run)


def holds_memory(checkpoint: str) -> bool:
    """Whether a checkpoint holds the replay memory (buffer-sized): read from its index, not its data (mmap)."""
    return "replay" in torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["loop"]


def run_one(
    script: str,
    env_id: str,
    seed: int,
    flags: list[str],
    threads: int,
    out_dir: str,
    driver_node: str | None,
    node_dir: str | None,
    node_folder_before: str | None,
    stop: StopFlag,
) -> dict:
    """One run, in a Ray worker: the script as a subprocess, resumed if its folder holds a checkpoint. It works in
    out_dir on the driver's node (or with node_dir None: --shared-out), else on this node, in the folder it worked
    in before (node_folder_before) or a new one in node_dir, and then returns its results (see pack)."""
    if stop_raised(stop):
        return {"stopped": True, "returncode": None}
    code_dir = os.getcwd()  # runtime_env's copy of the repository
    if node_folder_before:  # the run's checkpoint is there, whichever node the driver is on now
        work_dir = node_folder_before
    elif node_dir is not None and ray.get_runtime_context().get_node_id() != driver_node:
        work_dir = node_folder(node_dir, out_dir)
    else:
        work_dir = out_dir
    away = work_dir != out_dir
    checkpoints = glob.glob(os.path.join(work_dir, "runs", "*", "checkpoint.pt"))
    if away and not checkpoints and os.path.isdir(work_dir):
        shutil.rmtree(work_dir)  # what an earlier try left here went to out_dir already; this one starts over
    os.makedirs(work_dir, exist_ok=True)
    if checkpoints:  # go on from where the run stopped, with its own flags (those given here must agree)
        command = ["--resume", os.path.relpath(os.path.dirname(checkpoints[0]), work_dir), *flags]
    else:
        command = ["--env-id", env_id, "--seed", str(seed), *flags]
    command = [sys.executable, os.path.join(code_dir, script), *command]
    began, stopped = time.time(), False
    logs = (os.path.join(work_dir, "stdout.log"), os.path.join(work_dir, "stderr.log"))
    with open(logs[0], "a") as stdout, open(logs[1], "a") as stderr:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        env["WANDB_RUN_GROUP"] = os.path.basename(os.path.dirname(out_dir))  # --track: a W&B group per grid (--out)
        # In a session of its own, a terminal's Ctrl-C does not reach the run: the grid stops it, once, below.
        run = subprocess.Popen(command, cwd=work_dir, stdout=stdout, stderr=stderr, env=env, start_new_session=True)
        while run.poll() is None:
            try:
                run.wait(timeout=2)
            except subprocess.TimeoutExpired:
                if not stopped and stop_raised(stop):
                    run.send_signal(signal.SIGTERM)  # the script saves a checkpoint and exits with 143
                    stopped = True
    with open(logs[1]) as f:
        stderr_tail = f.read()[-2000:]
    result = {
        "command": [script, *command[2:]],
        "returncode": run.returncode,
        "stopped": stopped,
        "wall_s": round(time.time() - began, 1),
        "began": round(began, 1),  # unix times of the last part
        "ended": round(time.time(), 1),
        "resumed": bool(checkpoints),
        "stderr_tail": stderr_tail,
    }
    if away:  # the results travel back, small: events, logs, the model; the checkpoint stays here, for a rerun
        left = glob.glob(os.path.join(work_dir, "runs", "*", "checkpoint.pt"))
        # a finished run's last checkpoint leaves the replay memory out (unless --keep-final-buffer): it travels too
        finished_small = run.returncode == 0 and bool(left) and not holds_memory(left[0])
        node = {"node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address()}
        result["node"] = {**node, "host": socket.gethostname(), "folder": work_dir, "checkpoint": bool(left)}
        result["payload"] = pack(work_dir, with_checkpoint=finished_small)
    return result


def main() -> int:
    argv = sys.argv[1:]
    script_flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", nargs="+", required=True)
    parser.add_argument("--env-ids", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--tag", default="", help="added to the runs' name: the same script under other flags")
    parser.add_argument("--out", default="grid_runs", help="where the runs' results go")
    parser.add_argument(
        "--address",
        default=None,
        help="'auto', 'HOST:6379' or 'ray://HOST:10001' to join a cluster; 'local' for a fresh instance",
    )
    parser.add_argument("--cpus-per-run", type=float, default=1)
    parser.add_argument("--gpus-per-run", type=float, default=0)
    parser.add_argument("--threads-per-run", type=int, default=1)
    parser.add_argument(
        "--resources", type=json.loads, default={}, help="custom Ray resources each run needs, as JSON: '{\"big\": 1}'"
    )
    parser.add_argument(
        "--node-dir",
        default="~/dqn_grid",
        help="where a run on a node other than this one works and keeps its checkpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--shared-out", action="store_true", help="--out is on storage every node sees: every run works there"
    )
    opts = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    for script in opts.scripts:
        if not os.path.isfile(os.path.join(ROOT, script)):
            print(f"error: no script {script} in {ROOT}", file=sys.stderr)
            return 2

    out = os.path.abspath(opts.out)
    names = {script: script[: -len(".py")] + (f"_{opts.tag}" if opts.tag else "") for script in opts.scripts}
    runs = [(s, e, seed) for s in opts.scripts for e in opts.env_ids for seed in opts.seeds]
    to_do = [r for r in runs if not os.path.isfile(run_folder(out, names[r[0]], *r[1:], "run.json"))]
    print(
        f"{len(runs)} runs: {len(runs) - len(to_do)} finished before, {len(to_do)} to run; results in {out}", flush=True
    )
    if not to_do:
        return 0
    excludes = EXCLUDES + [os.path.relpath(out, ROOT) + "/"] if out.startswith(ROOT + os.sep) else EXCLUDES
    context = ray.init(
        address=opts.address,
        runtime_env={"working_dir": ROOT, "excludes": excludes},
        log_to_driver=False,
        include_dashboard=False,
        logging_level="WARNING",
    )
    # under Ray Client (ray://) this process is not on any node: every run is away, and its results travel here
    driver_node = None if (opts.address or "").startswith("ray://") else ray.get_runtime_context().get_node_id()
    resources = ray.cluster_resources()
    address = getattr(context, "address_info", {}).get("gcs_address", opts.address)
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    print(f"Ray at {address}: {len(ray.nodes())} node(s), {cpus:g} CPUs, {gpus:g} GPUs", flush=True)
    # The scripts with a --cuda flag take a GPU by default. One Ray did not count would be shared by every run on its
    # node (older Ray hides it from such tasks instead, and the runs go to the CPU).
    cuda_flags = [flag.replace("_", "-") for flag in script_flags if flag.replace("_", "-") in ("--cuda", "--no-cuda")]
    takes_gpu = not cuda_flags or cuda_flags[-1] == "--cuda"  # the last one given wins
    with_cuda = [s for s in opts.scripts if "cuda: bool" in open(os.path.join(ROOT, s)).read()]
    if gpus and not opts.gpus_per_run and takes_gpu and with_cuda:
        print(
            f"error: Ray counts GPUs here, and {' '.join(with_cuda)} take one by default, but --gpus-per-run is 0: give "
            "--gpus-per-run (0.5 shares a GPU between two runs), or --no-cuda after --",
            file=sys.stderr,
        )
        return 2
    stop, signals = StopFlag.remote(), []

    def on_signal(signum, frame):  # the first Ctrl-C or SIGTERM stops the runs with checkpoints; a second, at once
        if signals:
            raise SystemExit(128 + signum)
        signals.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    task = ray.remote(run_one)
    nodes = [node for node in ray.nodes() if node["Alive"]]
    need = {"CPU": opts.cpus_per_run, "GPU": opts.gpus_per_run, **opts.resources}
    # the same absolute path on every node: a relative one would land in Ray's temporary copy of the code
    node_dir = None if opts.shared_out else os.path.abspath(os.path.expanduser(opts.node_dir))
    pending, failed = {}, []
    for script, env_id, seed in to_do:
        folder = run_folder(out, names[script], env_id, seed)
        options = dict(num_cpus=opts.cpus_per_run, num_gpus=opts.gpus_per_run, resources=opts.resources, max_retries=0)
        held = None if opts.shared_out else checkpoint_held(folder, driver_node)  # where its checkpoint is, if any
        if held is not None:
            node = find_node(held, nodes)
            if node is None or any(node["Resources"].get(key, 0) < value for key, value in need.items() if value):
                failed.append(f"{names[script]} {env_id} seed {seed}")
                print(f"\nFAILED {failed[-1]}: {cannot_resume(held, folder, node is None)}", flush=True)
                continue
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)  # back to it
        ref = task.options(**options).remote(
            script, env_id, seed, script_flags, opts.threads_per_run, folder, driver_node, node_dir,
            held and held.get("folder"), stop,
        )  # fmt: skip
        pending[ref] = (script, env_id, seed)

    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // opts.cpus_per_run))
    began, durations, stopped = time.time(), [], []
    while pending:
        if signals and not ray.get(stop.is_raised.remote()):
            stop.raise_.remote()
            print("\nstopping: each running run saves a checkpoint; the same command resumes them", flush=True)
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=2)
        for ref in ready:
            script, env_id, seed = pending.pop(ref)
            folder = run_folder(out, names[script], env_id, seed)
            try:
                result = ray.get(ref)
            except Exception as e:  # the task itself broke (a lost worker, say)
                result = {"returncode": None, "stderr_tail": f"{type(e).__name__}: {e}"}
            if "payload" in result:  # a run on another node: its results, and where its checkpoint stayed
                unpack(result.pop("payload"), folder)
                with open(os.path.join(folder, "node.json.tmp"), "w") as f:
                    json.dump(result.pop("node"), f, indent=1)
                os.replace(os.path.join(folder, "node.json.tmp"), os.path.join(folder, "node.json"))
            name = f"{names[script]} {env_id} seed {seed}"
            if outcome(result) == "finished":
                finish(folder, {"script": script, "name": names[script], "env_id": env_id, "seed": seed, **result})
                durations.append(result["wall_s"])
            elif outcome(result) == "stopped":
                stopped.append(name)
                keep_stopped_time(folder, result)
            else:
                failed.append(name)
                tail = "\n    ".join(result["stderr_tail"].strip().splitlines()[-8:])
                print(f"\nFAILED {name} (exit {result['returncode']}):\n    {tail}", flush=True)
        done = len(to_do) - len(pending) - len(failed) - len(stopped)
        running = min(len(pending), slots)
        eta = "-"
        if durations:
            eta = f"{(sum(durations) / len(durations)) * -(-len(pending) // slots) / 60:.1f} min"
        line = (
            f"done {done} / running {running} / failed {len(failed)} / queued {len(pending) - running}  "
            f"ETA {eta}  ({(time.time() - began) / 60:.1f} min)"
        )
        if sys.stdout.isatty():  # one line, redrawn
            print(f"\r{line}", end="", flush=True)
        elif ready:  # into a log: a line each time a run ends
            print(line, flush=True)
    if sys.stdout.isatty():
        print()
    ray.shutdown()
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
    if signals:
        print(f"stopped: {len(stopped)} run(s) not finished; the same command goes on with them", file=sys.stderr)
        return 128 + signals[0]
    return 1 if failed else 0


def outcome(result: dict) -> str:
    """'finished' (exit 0), 'stopped' (the grid's SIGTERM ended it with 143; or ended it, -15, before the script had
    taken over its signals at start-up; or came before it started) or 'failed' (any other end, a crash after the stop
    signal included)."""
    if result["returncode"] == 0:
        return "finished"
    if result.get("stopped") and result["returncode"] in (None, 128 + signal.SIGTERM, -signal.SIGTERM):
        return "stopped"
    return "failed"


def stopped_times(folder: str) -> list[float]:
    """The wall times of a run's earlier, stopped parts."""
    path = os.path.join(folder, "stopped_wall_s.json")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return json.load(f)


def keep_stopped_time(folder: str, result: dict) -> None:
    if result["returncode"] is not None:  # it ran, then stopped (a queued run that never started has no time)
        times = stopped_times(folder) + [result["wall_s"]]
        with open(os.path.join(folder, "stopped_wall_s.json"), "w") as f:
            json.dump(times, f)


def finish(folder: str, record: dict) -> None:
    """Mark a run finished: its curve.csv, then run.json (wall time over all its parts, its SPS)."""
    record["wall_s"] = round(record["wall_s"] + sum(stopped_times(folder)), 1)
    record["steps_per_second"] = steps_per_second(folder)
    run_dir = max(glob.glob(os.path.join(folder, "runs", "*", "")), key=os.path.getmtime)  # the last try's
    write_curve(os.path.join(folder, "curve.csv"), *read_events(run_dir))
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump(record, f, indent=1)


def checkpoint_held(folder: str, driver_node: str) -> dict | None:
    """Where the run's checkpoint is: in its folder on this node, or (node.json) on another node; None if it left
    none."""
    if glob.glob(os.path.join(folder, "runs", "*", "checkpoint.pt")):
        return {"node_id": driver_node}
    if os.path.isfile(os.path.join(folder, "node.json")):
        with open(os.path.join(folder, "node.json")) as f:
            node = json.load(f)
        return node if node["checkpoint"] else None
    return None


def find_node(held: dict, nodes: list[dict]) -> dict | None:
    """The live node that holds the checkpoint: the same node, or, after a restart gave it a new id, the one node
    at its address."""
    for node in nodes:
        if node["NodeID"] == held["node_id"]:
            return node
    at_address = [node for node in nodes if "ip" in held and node["NodeManagerAddress"] == held["ip"]]
    return at_address[0] if len(at_address) == 1 else None


def cannot_resume(held: dict, folder: str, gone: bool) -> str:
    """Why a run with a checkpoint cannot go on here, and what to do."""
    if "folder" not in held:  # on this node
        return (
            f"its checkpoint is in {folder}, on this node, which lacks what a run asks for: rerun without "
            f"--resources / --gpus-per-run, or on a node that has them"
        )
    where = f"{held['folder']} on {held['host']} ({held['ip']})"
    if gone:
        return (
            f"its checkpoint is in {where}, which is not in this cluster: bring that node back, or start the run over "
            f"(delete that folder there, and {folder}/node.json)"
        )
    return f"its checkpoint is in {where}, which lacks what a run asks for (--resources, --gpus-per-run)"


def run_folder(out: str, name: str, env_id: str, seed: int, *rest: str) -> str:
    return os.path.join(
        out, f"{env_id.replace('/', '-')}__{name}__{seed}", *rest
    )  # ALE/Pong-v5: one folder, as in runs/


def steps_per_second(folder: str) -> float | None:
    """The run's own final figure: the training-phase SPS if it learned, else the overall SPS."""
    with open(os.path.join(folder, "stdout.log")) as f:
        lines = [line for line in f if " steps in " in line and " SPS" in line]
    if not lines:
        return None
    numbers = [part.split()[0].strip("(,") for part in lines[-1].split("(")[1].split(", ")]
    return float(numbers[-1])


if __name__ == "__main__":
    sys.exit(main())
