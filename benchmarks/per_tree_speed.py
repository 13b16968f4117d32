"""Cost of prioritized replay's bookkeeping in per_dqn_atari.py, with 1,000,000 stored transitions.

    python benchmarks/per_tree_speed.py              # the sum tree alone, then through the real buffer
    python benchmarks/per_tree_speed.py --tree-only  # skips filling a 1M-frame buffer (7 GB, about a minute)

One operation = what the training loop does per update besides the network: draw a stratified batch of 32
(its slots and importance-sampling weights), then give those slots new priorities. "tree" times SumTree.find,
the weights and SumTree.update on a tree of 1M random priorities; "buffer" times PrioritizedFrameReplayBuffer's
sample() (which also gathers the 32 frame stacks, as uniform replay does) and update_priorities(), on a buffer
holding 1M transitions, next to FrameReplayBuffer's uniform sample() on the same frames. Medians over rounds.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import per_dqn_atari as per  # noqa: E402
from results_csv import write_csv  # noqa: E402  (benchmarks/results_csv.py)


def time_per_call(operation, n_calls: int, rounds: int) -> tuple[float, list[float]]:
    for _ in range(100):  # warm up
        operation()
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n_calls):
            operation()
        per_round.append((time.perf_counter() - start) / n_calls * 1e3)
    return statistics.median(per_round), per_round


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--tree-only", action="store_true")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "per_tree_speed.csv"))
    opts = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, batch = opts.transitions, opts.batch_size
    rows = []

    tree = per.SumTree(n)
    tree.update(np.arange(n), (rng.exponential(size=n) + 1e-6) ** 0.6)

    def tree_sample_and_update():
        mass = (np.arange(batch) + rng.random(batch)) * (tree.total / batch)
        slots = tree.find(mass)
        probabilities = tree.leaves(slots) / tree.total
        (probabilities / probabilities.min()) ** -0.4
        tree.update(slots, (rng.exponential(size=batch) + 1e-6) ** 0.6)

    median, runs = time_per_call(tree_sample_and_update, opts.calls, opts.rounds)
    print(
        f"sum tree over {n:,} priorities, batch {batch}: sample + weights + update  {median:.3f} ms  (rounds: {' '.join(f'{r:.3f}' for r in runs)})"
    )
    rows.append(
        {
            "operation": "tree: sample + IS weights + update",
            "transitions": n,
            "batch": batch,
            "median_ms": round(median, 4),
            "rounds_ms": " ".join(f"{r:.4f}" for r in runs),
        }
    )

    if not opts.tree_only:
        print(
            f"filling a prioritized buffer with {n:,} transitions (synthetic frames, episodes of 100-1,000 steps) ...",
            flush=True,
        )
        episode_lengths = rng.integers(100, 1000, n // 100)
        episode_lengths = episode_lengths[: np.searchsorted(np.cumsum(episode_lengths), n) + 1]
        episode_lengths[-1] -= episode_lengths.sum() - n  # exactly n transitions
        rb = per.PrioritizedFrameReplayBuffer(
            n + len(episode_lengths), (84, 84), 4, torch.device("cpu"), 1, alpha=0.6, priority_epsilon=1e-6
        )
        frames = np.zeros((1, 4, 84, 84), dtype=np.uint8)
        for length in episode_lengths:
            for step in range(length):
                rb.add(frames, [0], [0.0], frames, np.array([step == length - 1]), np.array([False]))
        every_other = np.flatnonzero(rb._is_valid(np.arange(rb.capacity)))[::2]
        rb.update_priorities(every_other, rng.exponential(size=len(every_other)))  # spread the priorities
        print(
            f"  {int(rb._is_valid(np.arange(rb.capacity)).sum()):,} transitions stored in {rb.size.sum():,} slots",
            flush=True,
        )
        cpu = torch.device("cpu")

        def buffer_sample_and_update():
            _, slots, _ = rb.sample(batch, rng, cpu, beta=0.4)
            rb.update_priorities(slots, rng.exponential(size=batch))

        def uniform_sample():
            per.FrameReplayBuffer.sample(rb, batch, rng, cpu)

        for name, operation in (
            ("buffer: prioritized sample + update_priorities", buffer_sample_and_update),
            ("buffer: uniform sample (the parent's)", uniform_sample),
        ):
            median, runs = time_per_call(operation, opts.calls // 4, opts.rounds)
            print(f"{name:<48} {median:.3f} ms  (rounds: {' '.join(f'{r:.3f}' for r in runs)})")
            rows.append(
                {
                    "operation": name,
                    "transitions": int(rb._is_valid(np.arange(rb.capacity)).sum()),
                    "batch": batch,
                    "median_ms": round(median, 4),
                    "rounds_ms": " ".join(f"{r:.4f}" for r in runs),
                }
            )
        tree_bytes = rb.tree.nodes.nbytes
        print(
            f"memory: the tree adds {tree_bytes / rb.capacity:.1f} bytes per slot ({tree_bytes / 2**20:.0f} MiB for {rb.capacity:,} slots)"
        )

    write_csv(opts.out, rows)
    print(f"command: python benchmarks/per_tree_speed.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
