"""Tabular Q-learning on FrozenLake-v1, checked against the exact optimum.

Parent: none. Watkins' Q-learning with an epsilon-greedy behaviour policy, on a table of Q-values:

    Q(s, a) <- Q(s, a) + alpha * (r + gamma * max_a' Q(s', a') - Q(s, a))

with no bootstrap when the episode terminates (hole or goal) and a bootstrap when the time limit truncates it.

FrozenLake's transition model is known (`env.unwrapped.P`), so this script also solves the MDP exactly by
value iteration with the same gamma, and reports side by side the success rate of the learned greedy
policy and of that optimal policy: measured over evaluation episodes, and exactly, as the probability
of reaching the goal within the episode's step limit, computed from the model. It also reports the
best success rate any policy can reach within that limit, the ceiling of both.

    python tabular_q_frozenlake.py --map-name 8x8 --total-timesteps 3000000   # 8x8 needs about 6x the default steps

Copyright (c) 2026 The DQN family authors. MIT License: keep this line in copies (full text: LICENSE).
"""

import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

import cv2
import gymnasium as gym
import numpy as np
import tyro
from torch.utils.tensorboard import SummaryWriter


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment"""
    capture_video: bool = False
    """record episodes 0, 1, 8, 27, ... (and the evaluation episodes) as mp4 files in `videos/{run_name}` (needs pygame)"""
    save_model: bool = False
    """save the Q-table to `runs/{run_name}/{exp_name}.npy` at the end, or on Ctrl-C"""

    env_id: str = "FrozenLake-v1"
    """the id of a gymnasium environment with Discrete observations and actions and a transition model `P`"""
    map_name: Literal["4x4", "8x8"] = "4x4"
    """the FrozenLake map"""
    is_slippery: bool = True
    """if toggled, the agent moves in the intended direction with probability 1/3 only"""
    total_timesteps: int = 500_000
    """total environment steps"""
    learning_rate: float = 0.02
    """alpha, the step size of the Q-learning update"""
    gamma: float = 0.99
    """the discount factor gamma"""
    start_e: float = 1.0
    """the starting epsilon for exploration"""
    end_e: float = 0.05
    """the ending epsilon for exploration"""
    exploration_fraction: float = 0.5
    """the fraction of `total_timesteps` it takes to go from start_e to end_e"""
    eval_episodes: int = 10_000
    """greedy episodes played at the end to measure the success rates (0 to skip)"""


def check_args(args: Args) -> None:
    """Raise ValueError naming the first argument that cannot work."""
    if args.total_timesteps <= 0:
        raise ValueError(f"--total-timesteps must be positive, got {args.total_timesteps}")
    if args.eval_episodes < 0:
        raise ValueError(f"--eval-episodes must not be negative, got {args.eval_episodes}")
    if not 0.0 < args.learning_rate <= 1.0:
        raise ValueError(f"--learning-rate must be in (0, 1], got {args.learning_rate}")
    if not 0.0 <= args.gamma < 1.0:
        raise ValueError(f"--gamma must be in [0, 1), got {args.gamma}")
    for name in ("start_e", "end_e", "exploration_fraction"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")


# ---------------------------------------------------------------------------------------------------
# Environment


class RecordEpisodes(gym.Wrapper):
    """Write the rendered frames of episodes 0, 1, 8, 27, ..., 1000, 2000, ... (RecordVideo's schedule) to mp4 files,
    with OpenCV (RecordVideo needs moviepy); rendering these envs needs pygame (`pip install pygame`)."""

    def __init__(self, env: gym.Env, folder: str):
        super().__init__(env)
        self.folder, self.episodes_started, self.writer = folder, 0, None

    @staticmethod
    def is_recorded(episode: int) -> bool:
        return round(episode ** (1 / 3)) ** 3 == episode if episode < 1000 else episode % 1000 == 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.close_writer()
        if self.is_recorded(episode := self.episodes_started):
            os.makedirs(self.folder, exist_ok=True)
            path, frame = os.path.join(self.folder, f"episode-{episode}.mp4"), self.env.render()
            fps = self.env.metadata.get("render_fps", 30)
            self.writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
            self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.episodes_started += 1
        return obs, info

    def step(self, action):
        result = self.env.step(action)
        if self.writer is not None:
            self.writer.write(cv2.cvtColor(self.env.render(), cv2.COLOR_RGB2BGR))
        return result

    def close_writer(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    def close(self):
        self.close_writer()
        super().close()


def make_env(args: Args, seed: int, video_folder: str | None = None) -> gym.Env:
    """The environment as gymnasium makes it, with episode statistics in `info["episode"]`."""
    if video_folder is not None:
        try:
            import pygame  # noqa: F401  (toy-text rendering needs it)
        except ImportError:
            raise ValueError("--capture-video needs pygame to render FrozenLake: pip install pygame") from None
    kwargs = (
        {"map_name": args.map_name, "is_slippery": args.is_slippery} if args.env_id.startswith("FrozenLake") else {}
    )
    try:
        env = gym.make(args.env_id, render_mode="rgb_array" if video_folder else None, **kwargs)
    except gym.error.Error as e:
        raise ValueError(f"unknown --env-id {args.env_id!r}: {str(e).splitlines()[0]}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(
            f"--env-id {args.env_id!r} has {type(env.action_space).__name__} actions; a Q-table needs Discrete ones"
        )
    if not isinstance(env.observation_space, gym.spaces.Discrete) or not hasattr(env.unwrapped, "P"):
        raise ValueError(
            f"--env-id {args.env_id!r} has no discrete states with a transition model P (try FrozenLake-v1)"
        )
    if video_folder is not None:
        env = RecordEpisodes(env, video_folder)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env.action_space.seed(seed)
    return env


# ---------------------------------------------------------------------------------------------------
# The exact model: value iteration and success probabilities


def model_arrays(P: dict, n_states: int, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """From gymnasium's P[s][a] = [(prob, next_state, reward, terminated), ...]:
    expected reward R[s, a], and C[s, a, s'], the probability of moving to s' with the episode going on."""
    R = np.zeros((n_states, n_actions))
    C = np.zeros((n_states, n_actions, n_states))
    for s in range(n_states):
        for a in range(n_actions):
            for prob, next_state, reward, terminated in P[s][a]:
                R[s, a] += prob * reward
                if not terminated:
                    C[s, a, next_state] += prob
    return R, C


def value_iteration(R: np.ndarray, C: np.ndarray, gamma: float, tol: float = 1e-12) -> np.ndarray:
    """The optimal Q-values of the discounted MDP: Q = R + gamma * C @ max_a Q."""
    Q = np.zeros_like(R)
    while True:
        new_Q = R + gamma * C @ Q.max(axis=1)
        if np.abs(new_Q - Q).max() < tol:
            return new_Q
        Q = new_Q


def success_probability(policy: np.ndarray, R: np.ndarray, C: np.ndarray, horizon: int, start: np.ndarray) -> float:
    """Exact probability that `policy` collects the goal's reward (FrozenLake: 1, at the goal only) within `horizon` steps."""
    states = np.arange(len(policy))
    R_pi, C_pi = R[states, policy], C[states, policy]
    p = np.zeros(len(policy))  # p[s]: success within k steps from s, for k = 0, 1, ..., horizon
    for _ in range(horizon):
        p = R_pi + C_pi @ p
    return float(start @ p)


def best_success_probability(R: np.ndarray, C: np.ndarray, horizon: int, start: np.ndarray) -> float:
    """The best success probability within `horizon` steps of any policy, even one that looks at the clock."""
    p = np.zeros(R.shape[0])
    for _ in range(horizon):
        p = (R + C @ p).max(axis=1)
    return float(start @ p)


# ---------------------------------------------------------------------------------------------------
# Evaluation


def evaluate(policy: np.ndarray, env: gym.Env, n_episodes: int, seed: int) -> float:
    """Play n_episodes with a fixed policy (a table state -> action) and return the fraction that reached the goal."""
    obs, _ = env.reset(seed=seed)
    successes = episodes = 0
    while episodes < n_episodes:
        obs, reward, terminated, truncated, _ = env.step(int(policy[obs]))
        if terminated or truncated:
            successes += reward > 0
            episodes += 1
            obs, _ = env.reset()
    return successes / n_episodes


def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    """Epsilon goes linearly from start_e to end_e over `duration` steps, then stays at end_e."""
    if t >= duration:
        return end_e
    return start_e + (end_e - start_e) * t / duration


# ---------------------------------------------------------------------------------------------------
# Training


def main(args: Args) -> int:
    try:
        check_args(args)
        run_name = f"{args.env_id}-{args.map_name}__{args.exp_name}__{args.seed}__{int(time.time())}"
        env = make_env(args, args.seed, f"videos/{run_name}" if args.capture_video else None)
        writer = SummaryWriter(f"runs/{run_name}")  # makes the run's folder: a `runs` that is a file fails here
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    rng = np.random.default_rng(args.seed)
    writer.add_text(
        "hyperparameters",
        "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in vars(args).items()),
    )

    n_states, n_actions = env.observation_space.n, env.action_space.n
    q_table = np.zeros((n_states, n_actions))

    start_time = time.time()
    last_print = start_time
    recent_returns = deque(maxlen=1000)
    global_step = 0
    interrupted = False
    print(f"run {run_name}; logs in runs/{run_name}", flush=True)
    obs, _ = env.reset(seed=args.seed)
    try:
        for global_step in range(args.total_timesteps):
            epsilon = linear_schedule(
                args.start_e, args.end_e, args.exploration_fraction * args.total_timesteps, global_step
            )
            if rng.random() < epsilon:
                action = int(rng.integers(n_actions))
            else:  # greedy, with ties broken at random so that an all-zero row does not always pick action 0
                best = np.flatnonzero(q_table[obs] == q_table[obs].max())
                action = int(rng.choice(best))

            next_obs, reward, terminated, truncated, info = env.step(action)
            td_target = reward + (0.0 if terminated else args.gamma * q_table[next_obs].max())
            q_table[obs, action] += args.learning_rate * (td_target - q_table[obs, action])

            if "episode" in info:
                recent_returns.append(float(info["episode"]["r"]))
                writer.add_scalar("charts/episodic_return", float(info["episode"]["r"]), global_step)
                writer.add_scalar("charts/episodic_length", int(info["episode"]["l"]), global_step)
            obs = next_obs if not (terminated or truncated) else env.reset()[0]

            if global_step % 1000 == 0:
                writer.add_scalar("charts/epsilon", epsilon, global_step)
                if recent_returns:
                    writer.add_scalar("charts/success_rate", np.mean(recent_returns), global_step)
            if time.time() - last_print > 5:
                last_print = time.time()
                success = f"{np.mean(recent_returns):.3f}" if recent_returns else "-"
                print(
                    f"step {global_step:>9,}/{args.total_timesteps:,}  SPS {int(global_step / (last_print - start_time)):>6}  "
                    f"success (last {len(recent_returns)} episodes) {success}  epsilon {epsilon:.3f}",
                    flush=True,
                )
        global_step = args.total_timesteps
    except KeyboardInterrupt:
        interrupted = True
        print(f"\ninterrupted at step {global_step:,}", file=sys.stderr)
    env.close()
    elapsed = time.time() - start_time
    print(f"{global_step:,} steps in {elapsed:.1f} s ({global_step / elapsed:.0f} SPS)")

    if args.save_model:
        model_path = f"runs/{run_name}/{args.exp_name}.npy"
        np.save(model_path, q_table)
        print(f"Q-table saved to {model_path}")
    if not interrupted:
        if args.save_model:  # report on what was saved, loaded back, so the file is known to work
            q_table = np.load(model_path)
        R, C = model_arrays(env.unwrapped.P, n_states, n_actions)
        horizon = env.spec.max_episode_steps
        start = env.unwrapped.initial_state_distrib
        learned = q_table.argmax(axis=1)
        optimal = value_iteration(R, C, args.gamma).argmax(axis=1)
        exact = {
            "learned": success_probability(learned, R, C, horizon, start),
            "optimal": success_probability(optimal, R, C, horizon, start),
        }
        print(f"success rate within {horizon} steps   learned greedy   optimal (value iteration, gamma {args.gamma})")
        print(f"  exact, from the model           {exact['learned']:14.4f}   {exact['optimal']:.4f}")
        writer.add_scalar("eval/success_rate_exact", exact["learned"], global_step)
        writer.add_scalar("eval/optimal_success_rate_exact", exact["optimal"], global_step)
        if args.eval_episodes > 0:
            eval_env = make_env(args, args.seed + 1, f"videos/{run_name}-eval" if args.capture_video else None)
            measured = {
                name: evaluate(policy, eval_env, args.eval_episodes, args.seed + 1)
                for name, policy in (("learned", learned), ("optimal", optimal))
            }
            eval_env.close()
            print(
                f"  over {args.eval_episodes:,} episodes{'':<{14 - len(f'{args.eval_episodes:,}')}}{measured['learned']:14.4f}   {measured['optimal']:.4f}"
            )
            writer.add_scalar("eval/episodic_return", measured["learned"], global_step)
            writer.add_scalar("eval/optimal_episodic_return", measured["optimal"], global_step)
        print(f"best any policy can do within {horizon} steps: {best_success_probability(R, C, horizon, start):.4f}")
        print(f"gap to optimal (exact): {exact['optimal'] - exact['learned']:.4f}")
    writer.close()
    return 130 if interrupted else 0


if __name__ == "__main__":
    try:
        sys.exit(main(tyro.cli(Args)))
    except KeyboardInterrupt:  # outside the training loop (which saves and stops cleanly): just stop
        sys.exit(130)
