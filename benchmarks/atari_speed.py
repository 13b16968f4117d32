"""Training-phase speed of our Atari DQN scripts against Stable-Baselines3's DQN, side by side, and replay memory.

    python benchmarks/atari_speed.py                                 # dqn_atari.py vs SB3, Breakout
    python benchmarks/atari_speed.py --scripts dqn_atari.py double_dqn_atari.py --rounds 2
    python benchmarks/atari_speed.py --num-envs 1 2 4 --bf16 --rounds 3  # parallel envs, and bf16 autocast in the loop
    python benchmarks/atari_speed.py --no-sb3 --contenders double_dqn_atari.py \\
        "THP_MEM_ALLOC_ENABLE=0 bootstrapped_dqn_atari.py" bootstrapped_dqn_atari.py   # named contenders

Each contender runs the same env with the same hyperparameters (Nature DQN: batch 32, train every 4 steps,
target copy every 1,000 steps, Adam 1e-4) for `--learning-starts` random steps, then `--train-steps` steps
of training; we time the training phase only (steps per second after learning starts). Contenders run one
after another, in alternating order over `--rounds`, so a noisy shared machine hurts all of them alike;
ratios are of the medians. SB3 keeps its own loss (Huber) and gradient clipping (10), which cost little.
--num-envs runs each script at each N; --bf16 adds each of those with the scripts' --bf16 (the forward passes
under torch.autocast in bfloat16). --contenders names them instead, each a script with its flags, maybe after
environment variables to set ('VAR=VALUE script --flag').

Memory: bytes per stored transition of our frame-once buffer, filled by random play in the real wrapped
env, against SB3's ReplayBuffer for the same observations (its arrays' sizes, allocated, per transition).
Results go to benchmarks/results/atari_speed.csv.
"""

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile

import numpy as np

from results_csv import write_csv  # benchmarks/results_csv.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def our_training_sps(contender: str, opts, extra: list[str]) -> float:
    """contender: a script, maybe with flags and environment variables ('VAR=1 dqn_atari.py --num-envs 4 --bf16')."""
    words = shlex.split(contender)
    env = dict(os.environ)
    while len(words) > 1 and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
        variable, value = words.pop(0).split("=", 1)
        env[variable] = value
    script, *flags = words
    cmd = [
        sys.executable,
        os.path.join(ROOT, script),
        *flags,
        "--env-id",
        opts.env_id,
        "--no-cuda" if opts.device == "cpu" else "--cuda",
        "--total-timesteps",
        str(opts.learning_starts + opts.train_steps),
        "--learning-starts",
        str(opts.learning_starts),
        "--buffer-size",
        str(opts.buffer_size),
        "--eval-episodes",
        "0",
        *extra,
    ]
    with tempfile.TemporaryDirectory() as workdir:
        out = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"([\d.]+) SPS once learning started", out).group(1))


def sb3_training_sps(opts) -> float:
    """SB3's DQN with the same settings; a callback times the steps after learning starts."""
    code = f"""
import time, gymnasium as gym, ale_py
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack
gym.register_envs(ale_py)

class Timer(BaseCallback):
    def _on_step(self):
        if self.num_timesteps == {opts.learning_starts}:
            self.start = time.perf_counter()
        return True

env = VecFrameStack(make_atari_env({opts.env_id!r}, n_envs=1, seed=1), n_stack=4)
model = DQN("CnnPolicy", env, learning_rate=1e-4, buffer_size={opts.buffer_size}, learning_starts={opts.learning_starts},
            batch_size=32, gamma=0.99, train_freq=4, gradient_steps=1, target_update_interval=1000,
            exploration_fraction=0.1, exploration_final_eps=0.01, seed=1, device={opts.device!r})
timer = Timer()
model.learn(total_timesteps={opts.learning_starts + opts.train_steps}, callback=timer)
print("SB3_TRAIN_SPS", {opts.train_steps} / (time.perf_counter() - timer.start))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"SB3_TRAIN_SPS ([\d.]+)", out).group(1))


def our_bytes_per_transition(env_id: str, capacity: int) -> tuple[float, int, int]:
    """Fill a real frame-once buffer by random play; its bytes over the transitions it can sample."""
    sys.path.insert(0, ROOT)
    import torch

    import dqn_atari

    env = dqn_atari.make_env(dqn_atari.Args(env_id=env_id), seed=0)
    rb = dqn_atari.FrameReplayBuffer(capacity, (84, 84), env.action_space.n, torch.device("cpu"), n_streams=1)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for _ in range(capacity + 1000):  # past full, so the circular storage has wrapped
        action = int(rng.integers(env.action_space.n))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rb.add(obs[None], [action], [reward], next_obs[None], np.array([terminated]), np.array([truncated]))
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
    arrays = (rb.episode_step, rb.actions, rb.rewards, rb.terminated, rb.has_next)
    total = rb.frames.nbytes + sum(array.nbytes for array in arrays)
    transitions = int(rb._is_valid(np.arange(rb.capacity)).sum())
    return total / transitions, total, transitions


def sb3_bytes_per_transition(optimize_memory_usage: bool) -> float:
    import gymnasium as gym
    from stable_baselines3.common.buffers import ReplayBuffer

    size = 10_000
    obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    rb = ReplayBuffer(
        size,
        obs_space,
        gym.spaces.Discrete(4),
        device="cpu",
        optimize_memory_usage=optimize_memory_usage,
        handle_timeout_termination=not optimize_memory_usage,
    )
    arrays = [rb.observations, rb.actions, rb.rewards, rb.dones, rb.timeouts] + (
        [] if optimize_memory_usage else [rb.next_observations]
    )
    return sum(array.nbytes for array in arrays) / size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="BreakoutNoFrameskip-v4")
    parser.add_argument("--scripts", nargs="+", default=["dqn_atari.py"])
    parser.add_argument("--no-sb3", action="store_true", help="leave SB3 out (compare our scripts only)")
    parser.add_argument("--learning-starts", type=int, default=2_000)
    parser.add_argument("--train-steps", type=int, default=2_000)
    parser.add_argument("--buffer-size", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default: %(default)s)")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1], help="run each script at each of these N")
    parser.add_argument("--bf16", action="store_true", help="add each script at each N with --bf16")
    parser.add_argument(
        "--contenders",
        nargs="+",
        help="instead of --scripts, --num-envs and --bf16, which must keep their defaults: 'VAR=VALUE script --flag'",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--extra", default="", help="flags added to our scripts' command lines, e.g. '--buffer-device cuda'"
    )
    parser.add_argument(
        "--memory-capacity",
        type=int,
        default=20_000,
        help="slots of the buffer filled for the memory figure (0 skips it)",
    )
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "atari_speed.csv"))
    opts = parser.parse_args()

    contenders = [script if n == 1 else f"{script} --num-envs {n}" for script in opts.scripts for n in opts.num_envs]
    contenders += [f"{name} --bf16" for name in contenders if opts.bf16]
    if opts.contenders and (opts.bf16 or opts.num_envs != [1] or opts.scripts != ["dqn_atari.py"]):
        parser.error("--contenders names every contender: leave out --scripts, --num-envs and --bf16")
    contenders = list(dict.fromkeys(opts.contenders or contenders))  # each once
    contenders += [] if opts.no_sb3 or "sb3" in contenders else ["sb3"]
    sps = {name: [] for name in contenders}
    for round_ in range(opts.rounds):
        order = contenders if round_ % 2 == 0 else contenders[::-1]
        for name in order:
            value = sb3_training_sps(opts) if name == "sb3" else our_training_sps(name, opts, opts.extra.split())
            sps[name].append(value)
            print(f"round {round_ + 1}: {name:<28} {value:7.1f} training-phase SPS", flush=True)

    rows = []
    reference = statistics.median(sps[contenders[0]])
    print(
        f"\n{opts.env_id}, {opts.train_steps} training steps after {opts.learning_starts} random ones, device {opts.device}, {opts.rounds} round(s)"
    )
    for name in contenders:
        median = statistics.median(sps[name])
        ratio_to_sb3 = median / statistics.median(sps["sb3"]) if "sb3" in sps else float("nan")
        versus_sb3 = f"   x{ratio_to_sb3:.2f} of SB3" if "sb3" in sps else ""
        spread = f" (range {min(sps[name]):.1f}-{max(sps[name]):.1f})"
        print(f"  {name:<28} {median:7.1f} SPS{spread}{versus_sb3}   x{median / reference:.2f} of {contenders[0]}")
        per_round = [v / sb3 for v, sb3 in zip(sps[name], sps["sb3"])] if "sb3" in sps else [float("nan")]
        rows.append(
            {
                "contender": name,
                "median_training_sps": round(median, 1),
                "min_training_sps": round(min(sps[name]), 1),
                "max_training_sps": round(max(sps[name]), 1),
                "round_ratios_to_sb3": " ".join(f"{ratio:.2f}" for ratio in per_round),
                "runs": " ".join(f"{v:.1f}" for v in sps[name]),
                "ratio_to_sb3": round(ratio_to_sb3, 3),
                "ratio_to_first": round(median / reference, 3),
                "device": opts.device,
            }
        )

    write_csv(opts.out, rows)

    if opts.memory_capacity:
        per_transition, total, transitions = our_bytes_per_transition(opts.env_id, opts.memory_capacity)
        memory_rows = [
            {
                "buffer": "frame-once (ours)",
                "bytes_per_transition": round(per_transition, 1),
                "gib_per_million": round(per_transition * 1e6 / 2**30, 2),
            }
        ]
        print("\nreplay memory, bytes per stored transition:")
        print(
            f"  frame-once buffer (ours)                   {per_transition:7.0f}   1M transitions: {per_transition * 1e6 / 2**30:5.2f} GiB"
            f"   ({total:,} bytes for {transitions:,} sampleable transitions after random play)"
        )
        for optimize in (True, False):
            b = sb3_bytes_per_transition(optimize)
            print(
                f"  SB3 ReplayBuffer, optimize_memory_usage={optimize!s:<5} {b:7.0f}   1M transitions: {b * 1e6 / 2**30:5.2f} GiB"
            )
            memory_rows.append(
                {
                    "buffer": f"SB3 optimize_memory_usage={optimize}",
                    "bytes_per_transition": round(b, 1),
                    "gib_per_million": round(b * 1e6 / 2**30, 2),
                }
            )
        write_csv(opts.out.replace("speed", "memory"), memory_rows)
    print(f"command: python benchmarks/atari_speed.py {shlex.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
