"""What a checkpoint of dqn_atari.py costs: its size, and the seconds to write it (atomically, fsynced) and read it back.

A full replay memory of each --buffer-size is built directly (filling 1M slots by playing would take an hour here;
torch.save does not compress, so the frames' content does not change the size or the time), with networks, an
optimizer that has taken a step, and a real env. The checkpoint is the one the script writes, by its Run's
save_checkpoint (atomically, fsynced), and read back as --resume reads it: load_saved(), load_part_state() for each
part, and the env's restore_state(). Each size is written and read --rounds times; the figures are the medians.

It then gives the share of a default run (10M steps) that checkpoints every --checkpoint-frequency steps would take,
at the training speeds given by --sps (steps per second; defaults: this CPU's measured dqn_atari.py speed, CleanRL's
GPU speed, and the 1,850 SPS GPU target).

    python benchmarks/checkpoint_cost.py --sizes 100000 1000000 --rounds 5 --out benchmarks/results/checkpoint_cost.csv
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import dqn_atari  # noqa: E402
from results_csv import write_csv  # noqa: E402


def build(capacity: int, fill: bool = True):
    args = dqn_atari.RunArgs(buffer_size=capacity, cuda=False)
    env = dqn_atari.Resumable(dqn_atari.make_env(args, args.seed))
    obs, _ = env.reset(seed=args.seed)
    n_actions = env.action_space.n
    q_network, target_network = dqn_atari.QNetwork(n_actions), dqn_atari.QNetwork(n_actions)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-4, fused=True)
    q_network(torch.from_numpy(obs)[None]).sum().backward()
    optimizer.step()  # so that Adam's moments exist, as in a real checkpoint
    rb = dqn_atari.FrameReplayBuffer(capacity, (84, 84), n_actions, torch.device("cpu"), n_streams=1)
    if fill:  # a full memory, in place (a second copy of 1M frames would not fit beside it)
        rb.frames.random_(0, 256)
        rb.episode_step[:] = np.arange(capacity) % 1000
        rb.has_next[:] = True
        rb.size[:], rb.pos[:] = capacity, 0
    return args, env, obs, q_network, target_network, optimizer, rb


def write_and_read(capacity: int, folder: str | None) -> tuple[int, float, float]:
    """One checkpoint of a full memory: its size in bytes, the seconds to write it, and to read and restore it."""
    args, env, obs, q_network, target_network, optimizer, rb = build(capacity)
    os.makedirs("runs", exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder or "runs") as temp:
        run = object.__new__(dqn_atari.Run)  # the script's checkpoint code, without a run's folder or writer
        run.args, run.stop, run.n_actions, run.name = args, dqn_atari.GracefulStop(), 4, "checkpoint_cost"
        run.checkpoint, run.obs, run.recent_returns = os.path.join(temp, "checkpoint.pt"), obs, deque()
        run.rng = np.random.default_rng(0)
        run.envs = SimpleNamespace(call=lambda method: [env.save_state()])  # one env, as the vector env answers
        run.parts = {"q_network": q_network, "target_network": target_network, "optimizer": optimizer, "replay": rb}
        began = time.perf_counter()
        run.save_checkpoint(1000)
        write_s = time.perf_counter() - began
        size = os.path.getsize(run.checkpoint)
        fresh = build(capacity, fill=False)  # a resumed run's objects, to restore into (it makes them anyway)
        fresh_parts = {"target_network": fresh[4], "optimizer": fresh[5], "replay": fresh[6]}
        began = time.perf_counter()  # read back as --resume reads it
        saved = dqn_atari.load_saved(run.checkpoint)
        for name, part in fresh_parts.items():
            dqn_atari.load_part_state(part, saved["loop"][name])
        fresh[1].restore_state(saved["loop"]["env"][0], seed=args.seed)
        read_s = time.perf_counter() - began
        assert torch.equal(fresh[6].frames, rb.frames)
        fresh[1].close()
    env.close()
    return size, write_s, read_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="(default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="checkpoints per size; the median (default: %(default)s)")
    parser.add_argument("--frequency", type=int, default=dqn_atari.RunArgs.checkpoint_frequency)
    parser.add_argument("--sps", type=float, nargs="+", default=[105.0, 480.0, 1850.0])
    parser.add_argument("--folder", default=None, help="where to write (default: a temp folder under runs/)")
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for capacity in opts.sizes:
        measured = [write_and_read(capacity, opts.folder) for _ in range(opts.rounds)]
        size = measured[0][0]
        writes, reads = [m[1] for m in measured], [m[2] for m in measured]
        write_s, read_s = statistics.median(writes), statistics.median(reads)
        n_checkpoints = 10_000_000 // opts.frequency
        row = {
            "buffer_slots": capacity,
            "bytes": size,
            "GiB": round(size / 2**30, 3),
            "rounds": opts.rounds,
            "write_s": round(write_s, 2),
            "write_s_range": f"{min(writes):.2f}-{max(writes):.2f}",
            "read_and_restore_s": round(read_s, 2),
            "read_s_range": f"{min(reads):.2f}-{max(reads):.2f}",
            "frequency": opts.frequency,
            "checkpoints_per_10M_run": n_checkpoints,
        }
        for sps in opts.sps:
            run_s = 10_000_000 / sps
            row[f"share_at_{sps:g}_sps_%"] = round(100 * n_checkpoints * write_s / run_s, 3)
        rows.append(row)
        print(row, flush=True)
    if opts.out:
        write_csv(opts.out, rows)


if __name__ == "__main__":
    main()
