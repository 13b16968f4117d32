"""Where the time of one training step goes, in the real loop: acting, the env, sampling, the update's parts, storing,
logging, and what the env process and the update cost each other when they overlap.

    python benchmarks/step_profile.py --scripts dqn_atari.py --num-envs 1 4 --out benchmarks/results/step_profile.csv
    python benchmarks/step_profile.py --scripts bootstrapped_dqn_atari.py --train-steps 1000 --extra="--bf16"

Each (script, N) runs the unchanged script's main() in a child process, with timers wrapped around its pieces:
the network's forward passes (by grad mode: acting under inference_mode, the targets under no_grad, the online pass
with gradients), backward, Adam's step, the buffer's sample and add, the vector env's step_async and step_wait,
TensorBoard's add_scalar, and the target network's sync. Only the training phase counts: from the first sample
to the end of the loop. "other" is the loop's time outside those pieces (the loss, epsilon, Python).

Each runs twice: as the script runs (the envs step in their processes while the network learns: "overlapped"),
and "serial", where step_async waits for the envs at once, so that nothing overlaps. What overlapping buys is the
difference of the totals; what the two cost each other is the difference of the update's parts (the env process
and torch's threads share the cores). Figures are milliseconds per loop pass (one step of every env) and per
transition; one run per row: noisy on a shared machine, so compare rows of one invocation.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = [
    "act_forward",
    "env_send",
    "sample",
    "nograd_forward",
    "online_forward",
    "backward",
    "adam_step",
    "target_sync",
    "env_wait",
    "store",
    "log",
]


def child(script: str, flags: list[str], serial: bool) -> dict:
    """Run the script's main() with timers; returns the totals (ms), the passes and the transitions timed."""
    import gymnasium as gym
    import torch
    import torch.nn as nn
    from torch.utils.tensorboard import SummaryWriter

    spec = importlib.util.spec_from_file_location("profiled", os.path.join(ROOT, script))
    module = importlib.util.module_from_spec(spec)
    sys.argv = [script, *flags]
    spec.loader.exec_module(module)
    totals, clock, running = defaultdict(float), {"start": None, "end": None, "passes": 0}, set()

    def timed(function, part_of):
        """function, its time added to its part (part_of: a name, or a function of the call's arguments that gives
        one); a call within a call of the same part (a subclass's add calling its parent's) counts once."""

        def wrapper(*args, **kwargs):
            part = part_of(*args) if callable(part_of) else part_of
            if part in running:
                return function(*args, **kwargs)
            running.add(part)
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                running.discard(part)
                if clock["start"] is not None:
                    totals[part] += time.perf_counter() - began

        return wrapper

    def forward_part(*_):
        if torch.is_inference_mode_enabled():
            return "act_forward"
        return "online_forward" if torch.is_grad_enabled() else "nograd_forward"

    for value in vars(module).values():  # the script's own networks
        if isinstance(value, type) and issubclass(value, nn.Module) and value.__module__ == "profiled":
            value.forward = timed(value.forward, forward_part)
            if hasattr(value, "head_q_values"):  # bootstrapped's acting head
                value.head_q_values = timed(value.head_q_values, "act_forward")

    def first_sample(function):
        def wrapper(*args, **kwargs):
            if clock["start"] is None:
                clock["start"] = time.perf_counter()
            return function(*args, **kwargs)

        return wrapper

    for value in vars(module).values():  # the replay buffer and its subclass (PER's, bootstrapped's)
        if isinstance(value, type) and issubclass(value, module.FrameReplayBuffer):
            if "sample" in vars(value):
                value.sample = first_sample(timed(value.sample, "sample"))
            if "add" in vars(value):
                value.add = timed(value.add, "store")
    torch.Tensor.backward = timed(torch.Tensor.backward, "backward")
    torch.optim.Adam.step = timed(torch.optim.Adam.step, "adam_step")
    torch.Tensor.lerp_ = timed(torch.Tensor.lerp_, "target_sync")
    SummaryWriter.add_scalar = timed(SummaryWriter.add_scalar, "log")
    vector = gym.vector.AsyncVectorEnv
    step_async, step_wait = vector.step_async, vector.step_wait

    def send(self, actions):
        step_async(self, actions)
        if serial:  # wait for the envs now, before the update: nothing overlaps
            self.profiled_result = step_wait(self)

    def wait(self):
        result = self.profiled_result if serial else step_wait(self)
        if clock["start"] is not None:
            clock["passes"] += 1
            clock["end"] = time.perf_counter()
        return result

    vector.step_async = timed(send, "env_send")
    vector.step_wait = timed(wait, "env_wait")
    if script.startswith("bootstrapped"):  # as its own start does (2 MB pages), before any allocation
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    run = module.Run(module.tyro.cli(module.RunArgs, args=flags), module.GracefulStop(), flags)  # as the script starts
    code = module.main(run.args, run)
    if code != 0 or clock["start"] is None:
        raise SystemExit(f"{script} {' '.join(flags)} exited {code} before any training step was timed")
    total = clock["end"] - clock["start"]
    return {"total_ms": total * 1000, "passes": clock["passes"], **{k: v * 1000 for k, v in totals.items()}}


def measure(script: str, n: int, serial: bool, opts) -> dict:
    flags = [
        "--env-id",
        opts.env_id,
        "--no-cuda",
        "--num-envs",
        str(n),
        "--total-timesteps",
        str(opts.learning_starts + opts.train_steps),
        "--learning-starts",
        str(opts.learning_starts),
        "--buffer-size",
        str(opts.buffer_size),
        "--eval-episodes",
        "0",
        "--checkpoint-frequency",
        "0",
        *opts.extra.split(),
    ]
    command = [sys.executable, __file__, "--child", json.dumps([script, flags, serial])]
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{script} at N = {n} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(*json.loads(sys.argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", nargs="+", default=["dqn_atari.py"], help="(default: %(default)s)")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 4], help="(default: %(default)s)")
    parser.add_argument("--env-id", default="BreakoutNoFrameskip-v4", help="(default: %(default)s)")
    parser.add_argument("--learning-starts", type=int, default=2_000, help="(default: %(default)s)")
    parser.add_argument("--train-steps", type=int, default=2_000, help="steps timed (default: %(default)s)")
    parser.add_argument("--buffer-size", type=int, default=10_000, help="(default: %(default)s)")
    parser.add_argument("--extra", default="", help="flags added to the scripts' command lines, e.g. '--bf16'")
    parser.add_argument("--out", help="a CSV to write")
    opts = parser.parse_args()

    rows = []
    for script in opts.scripts:
        for n in opts.num_envs:
            for serial in (False, True):
                result = measure(script, n, serial, opts)
                passes = result["passes"]
                row = {"script": script, "num_envs": n, "mode": "serial" if serial else "overlapped"}
                row["threads"] = os.environ.get("OMP_NUM_THREADS", "default")
                row["extra"] = opts.extra
                row["sps"] = round(passes * n / (result["total_ms"] / 1000), 1)
                row["total_ms_per_pass"] = round(result["total_ms"] / passes, 3)
                parts = {part: result.get(part, 0.0) / passes for part in PARTS}
                parts["other"] = row["total_ms_per_pass"] - sum(parts.values())
                row |= {f"{part}_ms": round(value, 3) for part, value in parts.items()}
                rows.append(row)
                print(
                    f"{script} N={n} {row['mode']:<10} {row['sps']:6.1f} SPS, {row['total_ms_per_pass']:6.2f} ms a pass: "
                    + ", ".join(f"{part} {value:.2f}" for part, value in parts.items() if abs(value) >= 0.005),
                    flush=True,
                )
    if opts.out:
        from results_csv import write_csv  # benchmarks/results_csv.py

        write_csv(opts.out, rows)
    print(f"command: python benchmarks/step_profile.py {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
