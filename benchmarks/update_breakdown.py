"""Where the time of one DQN update goes on this machine: drawing the batch, the target network's forward pass,
the online forward pass and loss, backward, and Adam's step; in float32 and under bfloat16 autocast.

    python benchmarks/update_breakdown.py --threads 1 2 --compile

It uses dqn_atari.py's own pieces (FrameReplayBuffer, QNetwork, dqn_target, fused Adam) on a buffer of random
frames, batch 32. Each phase is timed over --updates updates after a warm-up, with the other phases run as in the
loop; the figure is the median per update. With --compile, the same update (without the sampling) compiled by
torch.compile, timed whole. Results go to benchmarks/results/update_breakdown.csv.
"""

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from results_csv import write_csv  # benchmarks/results_csv.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import dqn_atari  # noqa: E402

PHASES = ("sample", "target_forward", "online_forward_and_loss", "backward", "adam_step")


def time_updates(n_updates: int, bf16: bool, rb, rng) -> dict[str, float]:
    """Milliseconds per update for each phase, the median over n_updates."""
    device = torch.device("cpu")
    q_network = dqn_atari.QNetwork(4).to(memory_format=torch.channels_last)
    target_network = dqn_atari.QNetwork(4).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-4, fused=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    times = {phase: [] for phase in PHASES}
    for update in range(n_updates + 10):  # the first 10 warm up
        marks = [time.perf_counter()]
        data = rb.sample(32, rng, device)
        marks.append(time.perf_counter())
        with torch.no_grad(), autocast:
            td_target = dqn_atari.dqn_target(target_network(data.next_obs).float(), data.rewards, data.terminated, 0.99)
        marks.append(time.perf_counter())
        with autocast:
            q_taken = q_network(data.obs).float().gather(1, data.actions[:, None]).squeeze(1)
        loss = F.mse_loss(q_taken, td_target)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        if update >= 10:
            for phase, start, end in zip(PHASES, marks, marks[1:]):
                times[phase].append((end - start) * 1000)
    return {phase: statistics.median(values) for phase, values in times.items()}


def time_compiled_updates(n_updates: int, bf16: bool, rb, rng) -> float:
    """Milliseconds per update, the median over n_updates, with the update (targets, loss, backward, Adam's step)
    compiled by torch.compile as one function; the batch is drawn outside it, as the loop draws it."""
    q_network = dqn_atari.QNetwork(4).to(memory_format=torch.channels_last)
    target_network = dqn_atari.QNetwork(4).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-4, fused=True)

    @torch.compile
    def update(data):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            with torch.no_grad():
                td_target = dqn_atari.dqn_target(target_network(data.next_obs), data.rewards, data.terminated, 0.99)
            q_taken = q_network(data.obs).gather(1, data.actions[:, None]).squeeze(1)
            loss = F.mse_loss(q_taken, td_target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    began = time.perf_counter()
    update(rb.sample(32, rng, torch.device("cpu")))
    print(f"    (compiling took {time.perf_counter() - began:.0f} s)")
    times = []
    for step in range(n_updates + 10):
        data = rb.sample(32, rng, torch.device("cpu"))
        began = time.perf_counter()
        update(data)
        if step >= 10:
            times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--compile", action="store_true", help="also time the update compiled by torch.compile")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "update_breakdown.csv"))
    opts = parser.parse_args()

    rng = np.random.default_rng(0)
    rb = dqn_atari.FrameReplayBuffer(10_000, (84, 84), 4, torch.device("cpu"), n_streams=1)
    frames = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    for step in range(10_000):  # episodes of 100 steps
        done = np.array([step % 100 == 99])
        rb.add(frames, [step % 4], [0.0], frames, done, np.array([False]))

    rows = []
    for threads in opts.threads:
        torch.set_num_threads(threads)
        for bf16 in (False, True):
            ms = time_updates(opts.updates, bf16, rb, rng)
            total = sum(ms.values())
            precision = "bf16 autocast" if bf16 else "float32"
            print(f"{threads} thread(s), {precision}: {total:.2f} ms per update")
            for phase in PHASES:
                print(f"    {phase:<26} {ms[phase]:6.2f} ms  {100 * ms[phase] / total:4.0f}%")
            rows.append({"threads": threads, "precision": precision, "total_ms": round(total, 3)})
            rows[-1] |= {f"{phase}_ms": round(ms[phase], 3) for phase in PHASES}
            if opts.compile:
                compiled = time_compiled_updates(opts.updates, bf16, rb, rng)
                print(f"    torch.compile'd update (sampling outside): {compiled:.2f} ms")
                rows[-1]["compiled_update_ms"] = round(compiled, 3)
    write_csv(opts.out, rows)
    print(f"command: python benchmarks/update_breakdown.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
