"""What a checkpoint of dqn_atari.py costs: its size, and the seconds to write it (atomically, fsynced) and read it back.

A full replay memory of each --buffer-size is built directly (filling 1M slots by playing would take an hour here;
torch.save does not compress, so the frames' content does not change the size or the time), with networks, an
optimizer that has taken a step, and a real env. The checkpoint is the one the script writes: `saved_file` plus
`loop_state`, written with `write_atomically` and read back with `load_saved` and `restore_loop_state`.

It then gives the share of a default run (10M steps) that checkpoints every --checkpoint-frequency steps would take,
at the training speeds given by --sps (steps per second; defaults: this CPU's measured dqn_atari.py speed, CleanRL's
GPU speed, and the 1,850 SPS GPU target).

    python benchmarks/checkpoint_cost.py --sizes 100000 1000000 --out benchmarks/results/checkpoint_cost.csv
"""

import argparse
import os
import sys
import tempfile
import time
from collections import deque

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import dqn_atari  # noqa: E402
from results_csv import write_csv  # noqa: E402


def build(capacity: int, fill: bool = True):
    args = dqn_atari.Args(buffer_size=capacity, cuda=False)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--frequency", type=int, default=dqn_atari.Args.checkpoint_frequency)
    parser.add_argument("--sps", type=float, nargs="+", default=[105.0, 480.0, 1850.0])
    parser.add_argument("--folder", default=None, help="where to write (default: a temp folder under runs/)")
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for capacity in opts.sizes:
        args, env, obs, q_network, target_network, optimizer, rb = build(capacity)
        parts = {"target_network": target_network, "optimizer": optimizer, "replay": rb}
        rng = np.random.default_rng(0)
        os.makedirs("runs", exist_ok=True)
        with tempfile.TemporaryDirectory(dir=opts.folder or "runs") as folder:
            path = os.path.join(folder, "checkpoint.pt")
            began = time.perf_counter()
            loop = dqn_atari.loop_state(1000, obs, rng, [env.save_state()], parts, deque())
            contents = {**dqn_atari.saved_file(args, env.action_space.n, q_network), "run_name": "x", "loop": loop}
            dqn_atari.write_atomically(path, contents)
            write_s = time.perf_counter() - began
            size = os.path.getsize(path)
            del contents, loop
            fresh = build(
                capacity, fill=False
            )  # a new run's objects, to restore into (not timed: a resumed run makes them anyway)
            load_began = time.perf_counter()
            saved = dqn_atari.load_saved(path)
            fresh_parts = {"target_network": fresh[4], "optimizer": fresh[5], "replay": fresh[6]}
            dqn_atari.restore_loop_state(saved["loop"], np.random.default_rng(1), fresh_parts, deque())
            fresh[1].restore_state(saved["loop"]["env"][0])
            read_s = time.perf_counter() - load_began
            assert torch.equal(fresh[6].frames, rb.frames)
            del saved, fresh, fresh_parts
        n_checkpoints = 10_000_000 // opts.frequency
        row = {
            "buffer_slots": capacity,
            "bytes": size,
            "GiB": round(size / 2**30, 3),
            "write_s": round(write_s, 2),
            "read_and_restore_s": round(read_s, 2),
            "frequency": opts.frequency,
            "checkpoints_per_10M_run": n_checkpoints,
        }
        for sps in opts.sps:
            run_s = 10_000_000 / sps
            row[f"share_at_{sps:g}_sps_%"] = round(100 * n_checkpoints * write_s / run_s, 3)
        rows.append(row)
        print(row, flush=True)
        env.close()
        del rb, parts
    if opts.out:
        write_csv(opts.out, rows)


if __name__ == "__main__":
    main()
