"""Where one update's time goes, by kind of operation, in double_dqn_atari.py and bootstrapped_dqn_atari.py:
the fully connected layers (matrix products), the convolutions, Adam's step, freeing the gradients, the rest.

    python benchmarks/update_ops.py --rounds 5
    python benchmarks/update_ops.py --settings "" MKL_CBWR=AVX2

Each script's update is rebuilt from its own pieces (QNetwork, its targets and loss, fused Adam) on random frames,
batch 32, --threads torch threads, and timed in a fresh process under each of --settings: environment variables.
By default these are PyTorch's allocator on 4 KB pages and on 2 MB pages (THP_MEM_ALLOC_ENABLE=0 and 1). A setting
that does not name THP_MEM_ALLOC_ENABLE gets each script's own choice: 1 for bootstrapped_dqn_atari.py, which sets
it as its main() begins, and unset (0) for its parent. The processes alternate over --rounds.

Each process gives the median time of --updates updates, then torch.profiler's time per update of each kind of
operation over 20 more: self times under the profiler, which adds its own overhead, each kind's median taken on its
own, so the kinds do not add up to the unprofiled update's time. The matrix products' and the convolutions'
arithmetic rates use the profiler's FLOP count for the products, and for the convolutions a count from their shapes
(the profiler counts no backward convolution). Results go to benchmarks/results/update_ops.csv.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

import torch

from results_csv import write_csv  # benchmarks/results_csv.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUPS = {  # profiler op name -> kind
    "aten::addmm": "linear",
    "aten::mm": "linear",
    "aten::bmm": "linear",
    "aten::mkldnn_convolution": "conv",
    "aten::convolution_backward": "conv",
    "aten::_fused_adam_": "adam",
}


def one_process(script: str, updates: int, threads: int) -> dict:
    """Time `updates` updates of `script` in this process; the median, then a profile of 20 more."""
    import numpy as np
    import torch.nn.functional as F
    from torch.profiler import profile

    sys.path.insert(0, ROOT)
    module = __import__(script.removesuffix(".py"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    bootstrapped = script.startswith("bootstrapped")
    n_actions, n_heads = 4, 10
    make = (lambda: module.QNetwork(n_actions, n_heads)) if bootstrapped else (lambda: module.QNetwork(n_actions))
    q_network, target_network = (make().to(memory_format=torch.channels_last) for _ in range(2))
    optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-4, fused=True)
    rng = np.random.default_rng(0)
    window = torch.from_numpy(rng.integers(0, 256, (32, 5, 84, 84), dtype=np.uint8))
    obs, next_obs = window[:, :-1], window[:, 1:]  # as the frame-once buffer hands them out
    actions, rewards = torch.randint(n_actions, (32,)), torch.randn(32)
    terminated, masks = torch.zeros(32), torch.ones(32, n_heads)

    def update():
        with torch.no_grad():
            next_q_online, next_q_target = q_network(next_obs), target_network(next_obs)
            if bootstrapped:
                td_target = module.double_dqn_target(
                    next_q_online, next_q_target, rewards[:, None], terminated[:, None], 0.99
                )
            else:
                td_target = module.double_dqn_target(next_q_online, next_q_target, rewards, terminated, 0.99)
        if bootstrapped:
            q_taken = q_network(obs).gather(2, actions[:, None, None].expand(-1, n_heads, 1)).squeeze(2)
            loss = module.masked_head_losses(q_taken, td_target, masks).sum()
        else:
            loss = F.mse_loss(q_network(obs).gather(1, actions[:, None]).squeeze(1), td_target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # the convolutions' arithmetic (the profiler counts no backward convolution): multiply-adds per observation of
    # each layer's forward pass; backward costs twice that, less the first layer's gradient for its input
    macs = []
    hooks = [
        layer.register_forward_hook(lambda m, _, out: macs.append(out[0].numel() * m.weight[0].numel()))
        for layer in q_network.modules()
        if isinstance(layer, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        q_network(obs[:1])
    for hook in hooks:
        hook.remove()
    conv_gflop = 2 * 32 * (3 * sum(macs) + 2 * sum(macs) - macs[0]) / 1e9  # 3 forward passes, 1 backward
    for _ in range(10):  # warm-up
        update()
    times = []
    for _ in range(updates):
        began = time.perf_counter()
        update()
        times.append((time.perf_counter() - began) * 1000)
    n_profiled = 20
    with profile(with_flops=True) as prof:
        for _ in range(n_profiled):
            update()
    kinds = {kind: {"ms": 0.0, "gflop": 0.0} for kind in ("linear", "conv", "adam", "zero_grad", "other")}
    for event in prof.key_averages():
        # self times: each op's own, without the ops it calls; zero_grad's own time is freeing the gradients
        kind = GROUPS.get(event.key, "zero_grad" if event.key.startswith("Optimizer.zero_grad") else "other")
        kinds[kind]["ms"] += event.self_cpu_time_total / 1000 / n_profiled
        if kind == "linear":
            kinds[kind]["gflop"] += (event.flops or 0) / 1e9 / n_profiled
    kinds["conv"]["gflop"] = conv_gflop
    return {"update_ms": statistics.median(times), "kinds": kinds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    scripts = ["double_dqn_atari.py", "bootstrapped_dqn_atari.py"]
    parser.add_argument("--scripts", nargs="+", choices=scripts, default=scripts)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["THP_MEM_ALLOC_ENABLE=0", "THP_MEM_ALLOC_ENABLE=1"],
        help="each a space-separated list of VAR=VALUE, '' for none (default: %(default)s)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default: %(default)s)")
    parser.add_argument("--updates", type=int, default=40, help="updates timed per process (default: %(default)s)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "update_ops.csv"))
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # a child process: script, updates, threads
    opts = parser.parse_args()
    if opts.one:
        print(json.dumps(one_process(opts.one[0], int(opts.one[1]), int(opts.one[2]))))
        return

    contenders = [(script, setting) for script in opts.scripts for setting in opts.settings]
    results = {contender: [] for contender in contenders}
    for round_ in range(opts.rounds):
        for script, setting in contenders if round_ % 2 == 0 else contenders[::-1]:
            env = {**os.environ, **dict(variable.split("=", 1) for variable in setting.split())}
            if script.startswith("bootstrapped"):  # as its main() does
                env.setdefault("THP_MEM_ALLOC_ENABLE", "1")
            command = [sys.executable, os.path.abspath(__file__), "--one", script, str(opts.updates), str(opts.threads)]
            child = subprocess.run(command, env=env, capture_output=True, text=True)
            if child.returncode != 0:
                sys.exit(f"{script} under {setting!r} failed:\n{child.stderr}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            results[script, setting].append(result)
            print(
                f"round {round_ + 1}: {script:<27} {setting:<24} {result['update_ms']:6.1f} ms per update", flush=True
            )

    rows = []
    print(f"\nms per update (median of {opts.rounds} processes, range), then by kind (median over processes):")
    for (script, setting), runs in results.items():
        update_ms = [run["update_ms"] for run in runs]
        row = {
            "script": script,
            "environment": setting,
            "update_ms": round(statistics.median(update_ms), 2),
            "min_update_ms": round(min(update_ms), 2),
            "max_update_ms": round(max(update_ms), 2),
        }
        for kind in runs[0]["kinds"]:
            row[f"{kind}_ms"] = round(statistics.median(run["kinds"][kind]["ms"] for run in runs), 2)
        for kind in ("linear", "conv"):
            gflop = runs[0]["kinds"][kind]["gflop"]
            row[f"{kind}_gflop"] = round(gflop, 3)
            row[f"{kind}_gflops"] = round(gflop / (row[f"{kind}_ms"] / 1000), 1) if row[f"{kind}_ms"] else float("nan")
        rows.append(row)
        by_kind = "  ".join(f"{kind} {row[f'{kind}_ms']:.1f}" for kind in runs[0]["kinds"])
        print(
            f"  {script:<27} {setting:<24} {row['update_ms']:6.1f}"
            f" ({row['min_update_ms']:.1f}-{row['max_update_ms']:.1f})"
            f"   {by_kind}   GFLOP/s: linear {row['linear_gflops']:.0f}, conv {row['conv_gflops']:.0f}"
        )
    write_csv(opts.out, rows)
    print(f"command: python benchmarks/update_ops.py {shlex.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
