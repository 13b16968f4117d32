"""How many replay frames one copy moves when a checkpoint saves or restores the memory: on a GPU (--buffer-device
cuda), the memory a checkpoint's frames take there at once, beside the memory itself. The stand-in for a GPU, which no
machine here has: every gather from the frames and every scatter into them, counted by a TorchDispatchMode on the CPU.

    python benchmarks/checkpoint_copy_peak.py --capacity 200000 --tree . --out benchmarks/results/checkpoint_copy_peak.csv
    git worktree add /tmp/before 88e2d22 && python benchmarks/checkpoint_copy_peak.py --tree /tmp/before

Fills a dqn_atari.py memory to --fill of its --capacity (not full, so saving gathers the written frames), saves it as
a checkpoint does and restores it into a fresh memory, and prints the largest copy each way, in frames and GiB.
--tree names the copy of the repository whose dqn_atari.py is measured (one with part_state(), or an older one with
the memory's own state_dict()).
"""

import argparse
import importlib.util
import os
import sys

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_csv import write_csv  # noqa: E402


class LargestCopy(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.rows = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.index.Tensor and out.dim() == 3:  # a gather of frames
            self.rows = max(self.rows, out.shape[0])
        if func in (torch.ops.aten.index_put_.default, torch.ops.aten.index_put.default) and args[2].dim() == 3:
            self.rows = max(self.rows, args[2].shape[0])  # a scatter of frames
        if func is torch.ops.aten._to_copy.default and out.dim() == 3:  # a move of frames across devices
            self.rows = max(self.rows, out.shape[0])
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=200_000)
    parser.add_argument("--fill", type=float, default=0.9, help="the share of the memory written (default: 0.9)")
    parser.add_argument("--tree", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    spec = importlib.util.spec_from_file_location("measured", os.path.join(opts.tree, "dqn_atari.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rb = module.FrameReplayBuffer(opts.capacity, (84, 84), 4, torch.device("cpu"), 1)
    n = int(opts.capacity * opts.fill)  # written in place: a real fill by playing would take hours
    rb.frames[:n].random_(0, 256)
    rb.episode_step[:n], rb.has_next[: n - 1], rb.pos[:], rb.size[:] = np.arange(n) % 1000, True, n, n
    fresh = module.FrameReplayBuffer(opts.capacity, (84, 84), 4, torch.device("cpu"), 1)
    new_api = hasattr(module, "part_state")
    with LargestCopy() as saving:
        state = module.part_state(rb) if new_api else rb.state_dict()
    with LargestCopy() as loading:
        module.load_part_state(fresh, state) if new_api else fresh.load_state_dict(state)
    assert torch.equal(fresh.frames[:n], rb.frames[:n])
    frame_gib = 84 * 84 / 2**30
    row = {"tree": os.path.abspath(opts.tree), "capacity": opts.capacity, "written": n}
    row |= {"save_largest_frames": saving.rows, "save_largest_gib": round(saving.rows * frame_gib, 3)}
    row |= {"load_largest_frames": loading.rows, "load_largest_gib": round(loading.rows * frame_gib, 3)}
    print(row)
    if opts.out:
        write_csv(opts.out, [row])


if __name__ == "__main__":
    main()
