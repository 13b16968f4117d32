"""Dueling DQN on Atari: Wang et al. 2016, "Dueling Network Architectures for Deep Reinforcement Learning".

Parent: double_dqn_atari.py (the paper's dueling agent learns with Double-DQN targets). What changes:
- the network: the Nature conv torso feeds two streams, a state value V(s) and advantages A(s, a), each
  a 512-unit hidden layer, combined as Q = V + A - mean_a(A). Subtracting the mean makes the split
  identifiable (V and A cannot drift by opposite constants) without changing which action is greedy;
- the gradient entering the torso from the two streams is scaled by 1/sqrt(2), as in the paper, so the
  shared layers do not learn twice as fast as in a single-stream network;
- gradients are clipped to a global norm of at most 10, as in the paper.
The rest, defaults included, is the parent's; the paper's learning rate (6.25e-5, with its own optimizer
settings) is not taken, so the three Atari scripts run with the same flags.

    python dueling_dqn_atari.py --env-id BreakoutNoFrameskip-v4 --cuda

What is here, top to bottom: the arguments, the Atari preprocessing (SB3's wrappers), a video recorder
built on OpenCV, the dueling network, a replay buffer that stores every frame once, evaluation, and the loop.
Logs go to runs/{run_name} (`tensorboard --logdir runs`), with CleanRL's scalar names.

Copyright (c) 2026 The DQN family authors. MIT License: keep this line in copies (full text: LICENSE).
"""

import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal, NamedTuple

import ale_py
import cv2
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from stable_baselines3.common.atari_wrappers import (
    ClipRewardEnv,
    EpisodicLifeEnv,
    FireResetEnv,
    MaxAndSkipEnv,
    NoopResetEnv,
    WarpFrame,
)
from torch.utils.tensorboard import SummaryWriter

gym.register_envs(ale_py)  # gymnasium 1.x knows the Atari ids only after this

FRAME_STACK = 4  # an observation is the last 4 frames


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """use the GPU when there is one; without one, say so and run on the CPU"""
    capture_video: bool = False
    """record games 0, 1, 8, 27, ... (and the evaluation games) as mp4 files in `videos/{run_name}`"""
    save_model: bool = False
    """save the Q-network to `runs/{run_name}/{exp_name}.pt` at the end, or on Ctrl-C"""

    env_id: str = "BreakoutNoFrameskip-v4"
    """the id of an Atari environment without frame skipping (`*NoFrameskip-v4`)"""
    total_timesteps: int = 10_000_000
    """total agent steps (each is 4 emulator frames)"""
    learning_rate: float = 1e-4
    """the learning rate of the Adam optimizer"""
    buffer_size: int = 1_000_000
    """the replay memory size, in frames: one per transition, plus one per episode start"""
    buffer_device: Literal["cpu", "cuda"] = "cpu"
    """where the replay frames live; `cuda` keeps them on the GPU and saves a host-to-device copy per batch"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 1.0
    """the target network update rate (1.0 copies the weights)"""
    target_network_frequency: int = 1000
    """the number of steps between target network updates"""
    batch_size: int = 32
    """the batch size of samples from the replay memory"""
    start_e: float = 1.0
    """the starting epsilon for exploration"""
    end_e: float = 0.01
    """the ending epsilon for exploration"""
    exploration_fraction: float = 0.10
    """the fraction of `total_timesteps` it takes to go from start_e to end_e"""
    learning_starts: int = 80_000
    """the step at which learning starts"""
    train_frequency: int = 4
    """the number of steps between gradient updates"""
    eval_episodes: int = 10
    """whole games played at the end to evaluate the agent (0 to skip)"""
    eval_epsilon: float = 0.05
    """the epsilon of the evaluation games"""


def check_args(args: Args) -> None:
    """Raise ValueError naming the first argument that cannot work."""
    for name in ("total_timesteps", "buffer_size", "batch_size", "train_frequency", "target_network_frequency"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("learning_starts", "eval_episodes"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if args.buffer_size < args.batch_size:
        raise ValueError(f"--buffer-size ({args.buffer_size}) must be at least --batch-size ({args.batch_size})")
    if args.buffer_size < FRAME_STACK + 1:
        raise ValueError(
            f"--buffer-size must be at least {FRAME_STACK + 1}, to hold a stack of frames and the next one"
        )
    for name in ("start_e", "end_e", "eval_epsilon", "exploration_fraction", "tau"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning-rate must be positive, got {args.learning_rate}")


# ---------------------------------------------------------------------------------------------------
# Environment


class RecordGames(gym.Wrapper):
    """Write the raw RGB frames of games 0, 1, 8, 27, ..., 1000, 2000, ... to mp4 files.

    Gymnasium's RecordVideo needs moviepy; OpenCV, which the preprocessing already uses, can write mp4
    itself. It wraps the emulator directly, so a 'game' here is a whole game, every frame at 60 fps.
    """

    def __init__(self, env: gym.Env, folder: str):
        super().__init__(env)
        self.folder = folder
        self.games_started = 0
        self.writer = None
        os.makedirs(folder, exist_ok=True)

    @staticmethod
    def is_recorded(game: int) -> bool:
        # the schedule of gymnasium's RecordVideo: cubes up to 1000, then every 1000th game
        return round(game ** (1 / 3)) ** 3 == game if game < 1000 else game % 1000 == 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._close_writer()
        if self.is_recorded(self.games_started):
            height, width = obs.shape[:2]
            path = os.path.join(self.folder, f"game-{self.games_started}.mp4")
            self.writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 60, (width, height))
        self.games_started += 1
        self._write(obs)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._write(obs)
        return obs, reward, terminated, truncated, info

    def _write(self, frame: np.ndarray) -> None:
        if self.writer is not None:
            self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    def close(self):
        self._close_writer()
        super().close()


class ReportGamesEndedInReset(gym.Wrapper):
    """Pass on the record of a game that ended inside reset(), where SB3's wrappers would drop it.

    EpisodicLifeEnv takes a no-op step in reset() after a lost life, and FireResetEnv presses FIRE there; both
    throw that step's info away. When a time limit lands on such a step, the game ends there and its
    info["episode"] never reaches the loop. This outermost wrapper sees the game count go up during a reset
    and hands that game's record to the loop with the next step's info.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.stats = env
        while not isinstance(self.stats, gym.wrappers.RecordEpisodeStatistics):
            self.stats = self.stats.env
        self.pending = []  # records of games that ended in a reset, not yet reported, oldest first

    def reset(self, **kwargs):
        games_before = self.stats.episode_count
        obs, info = self.env.reset(**kwargs)
        for k in range(min(self.stats.episode_count - games_before, len(self.stats.return_queue)), 0, -1):
            self.pending.append(
                {"r": self.stats.return_queue[-k], "l": self.stats.length_queue[-k], "t": self.stats.time_queue[-k]}
            )
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.pending and "episode" not in info:
            info = {**info, "episode": self.pending.pop(0)}
        return obs, reward, terminated, truncated, info


def make_env(env_id: str, seed: int, video_folder: str | None = None, max_episode_steps: int | None = None) -> gym.Env:
    """The Nature-DQN preprocessing: observations are the last 4 grey 84x84 frames, as uint8 (4, 84, 84).

    A step is 4 emulator frames (max-pooled over the last two), rewards are clipped to their sign, and a lost
    life ends the learning episode while the game goes on; `info["episode"]` reports every whole game.
    `max_episode_steps` (in emulator frames) cuts games short, as a truncation.
    """
    try:
        env = gym.make(env_id, max_episode_steps=max_episode_steps)
    except gym.error.Error as e:
        raise ValueError(f"unknown --env-id {env_id!r}: {str(e).splitlines()[0]}") from None
    if not isinstance(env.unwrapped, ale_py.AtariEnv):
        raise ValueError(f"--env-id {env_id!r} is not an Atari environment; try BreakoutNoFrameskip-v4")
    if env.spec.kwargs.get("frameskip") != 1:
        raise ValueError(
            f"--env-id {env_id!r} skips frames itself (frameskip={env.spec.kwargs.get('frameskip')}), and this "
            f"script skips 4 more; use the NoFrameskip-v4 version, e.g. BreakoutNoFrameskip-v4"
        )
    if video_folder is not None:
        env = RecordGames(env, video_folder)
    env = gym.wrappers.RecordEpisodeStatistics(env)  # below EpisodicLifeEnv, so it sees whole games
    env = NoopResetEnv(env, noop_max=30)
    env = MaxAndSkipEnv(env, skip=4)
    env = EpisodicLifeEnv(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireResetEnv(env)
    env = WarpFrame(env, width=84, height=84)
    env = ClipRewardEnv(env)
    env = gym.wrappers.ReshapeObservation(env, (84, 84))
    env = gym.wrappers.FrameStackObservation(env, FRAME_STACK)  # a new episode starts as 4 copies of its first frame
    env = ReportGamesEndedInReset(env)
    env.action_space.seed(seed)
    return env


# ---------------------------------------------------------------------------------------------------
# Agent


TORSO_GRADIENT_SCALE = 2**-0.5  # two streams send gradient into the torso; the paper rescales their sum by 1/sqrt(2)
MAX_GRAD_NORM = 10.0  # the paper clips the gradient's global norm to 10


class QNetwork(nn.Module):
    """The dueling network: the Nature-DQN conv torso, then a value stream and an advantage stream."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.torso = nn.Sequential(
            nn.Conv2d(FRAME_STACK, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.value = nn.Sequential(nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, 1))
        self.advantage = nn.Sequential(nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, n_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # frames stay uint8 until here; channels-last is the faster layout for these convolutions,
        # and changing the layout before converting to float moves 4 times fewer bytes
        x = obs.contiguous(memory_format=torch.channels_last).float().div_(255.0)
        features = scale_gradient(self.torso(x), TORSO_GRADIENT_SCALE)
        return dueling_q_values(self.value(features), self.advantage(features))


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x unchanged in the forward pass; the gradient flowing back through it is multiplied by `scale`."""
    return x * scale + x.detach() * (1.0 - scale)


def dueling_q_values(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """Q(s, a) = V(s) + A(s, a) - mean_a A(s, a), for value (B, 1) and advantage (B, n_actions)."""
    return value + advantage - advantage.mean(dim=1, keepdim=True)


def double_dqn_target(
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """r + gamma * Q_target(s', argmax_a Q_online(s', a)); a termination ends the sum, a truncation still bootstraps."""
    next_actions = next_q_online.argmax(dim=-1, keepdim=True)
    return rewards + gamma * next_q_target.gather(-1, next_actions).squeeze(-1) * (1.0 - terminated)


def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    """Epsilon goes linearly from start_e to end_e over `duration` steps, then stays at end_e."""
    if t >= duration:
        return end_e
    return start_e + (end_e - start_e) * t / duration


# ---------------------------------------------------------------------------------------------------
# Replay buffer


class Batch(NamedTuple):
    obs: torch.Tensor  # uint8 (B, 4, 84, 84)
    actions: torch.Tensor  # int64 (B,)
    rewards: torch.Tensor  # float32 (B,)
    next_obs: torch.Tensor  # uint8 (B, 4, 84, 84)
    terminated: torch.Tensor  # float32 (B,): 1 where the episode ended for real (no bootstrap)


class FrameReplayBuffer:
    """A circular replay memory that stores each 84x84 frame once.

    An observation is a stack of the last 4 frames, and consecutive observations share 3 of them, so
    storing (obs, next_obs) stacks would keep every frame 8 times. Here slot i holds the newest frame of one
    observation, and stacks are rebuilt from the slots before it when sampling:

        frames[i]        the newest frame of an observation o
        episode_step[i]  how many steps into its episode o came (0 for the first observation; a stack
                         never reaches before its episode's first frame, it repeats it instead)
        actions[i], rewards[i], terminated[i]
                         what the agent did from o and what followed
        has_next[i]      slot i starts a transition: slot i+1 holds the observation that followed o

    add() takes transitions in the order the agent saw them. An episode's first observation takes a slot of
    its own; after that each transition adds one slot, its next observation. A truncated episode keeps its
    final observation, so its last transition bootstraps from it.
    """

    def __init__(self, capacity: int, frame_shape: tuple[int, int], n_actions: int, storage_device: torch.device):
        assert n_actions <= 256, "actions are stored as uint8"
        self.capacity = capacity
        # torch.empty reserves the memory without touching it; sample() only reads slots that were written
        self.frames = torch.empty((capacity, *frame_shape), dtype=torch.uint8, device=storage_device)
        self.episode_step = np.zeros(capacity, dtype=np.int32)
        self.actions = np.zeros(capacity, dtype=np.uint8)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.bool_)
        self.has_next = np.zeros(capacity, dtype=np.bool_)
        self.pos = 0  # the slot written next
        self.size = 0  # slots written so far, at most capacity
        self.continues_episode = False  # the next add() starts from the observation in the newest slot

    def _write_frame(self, frame: np.ndarray, episode_step: int) -> int:
        i = self.pos
        self.frames[i] = torch.from_numpy(frame)
        self.episode_step[i] = episode_step
        self.has_next[i] = False
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        return i

    def add(
        self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool, truncated: bool
    ) -> int:
        """Store a transition; returns the slot it starts at."""
        if self.continues_episode:
            i = (self.pos - 1) % self.capacity  # obs is the previous transition's next_obs
        else:
            i = self._write_frame(obs[-1], 0)
        self.actions[i] = action
        self.rewards[i] = reward
        self.terminated[i] = terminated
        self._write_frame(next_obs[-1], self.episode_step[i] + 1)
        self.has_next[i] = True
        self.continues_episode = not (terminated or truncated)
        return i

    def _is_valid(self, i: np.ndarray) -> np.ndarray:
        # once the buffer wraps, the oldest slots' earlier frames may be overwritten by new ones
        age = (self.pos - 1 - i) % self.capacity  # 0 for the newest slot
        frames_before = np.minimum(self.episode_step[i], FRAME_STACK - 1)
        return self.has_next[i] & (age + frames_before < self.size)

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device) -> Batch:
        """A batch drawn uniformly, with replacement, from the stored transitions."""
        i = rng.integers(0, self.size, batch_size)
        invalid = ~self._is_valid(i)
        while invalid.any():  # redraw the few slots that start no transition
            i[invalid] = rng.integers(0, self.size, invalid.sum())
            invalid = ~self._is_valid(i)
        return self.get(i, device)

    def get(self, i: np.ndarray, device: torch.device) -> Batch:
        """The transitions starting at slots i, with their observation stacks rebuilt."""
        # obs and next_obs share 3 frames: gather the 5-frame window ending at next_obs once.
        # next_obs sits in slot i+1, episode_step[i] + 1 steps into its episode.
        offsets = np.arange(FRAME_STACK, -1, -1)  # 4, 3, 2, 1, 0 slots back
        back = np.minimum(offsets, self.episode_step[i, None] + 1)
        window_slots = torch.from_numpy((i[:, None] + 1 - back) % self.capacity).to(self.frames.device)
        # index_select over the flattened slots is about 3x faster than advanced indexing here
        window = self.frames.index_select(0, window_slots.flatten()).view(
            len(i), FRAME_STACK + 1, *self.frames.shape[1:]
        )
        window = window.to(device, non_blocking=True)
        return Batch(
            obs=window[:, :-1],
            actions=torch.from_numpy(self.actions[i].astype(np.int64)).to(device),
            rewards=torch.from_numpy(self.rewards[i]).to(device),
            next_obs=window[:, 1:],
            terminated=torch.from_numpy(self.terminated[i].astype(np.float32)).to(device),
        )


# ---------------------------------------------------------------------------------------------------
# Evaluation


def evaluate(
    q_network: QNetwork, env: gym.Env, n_games: int, epsilon: float, seed: int, device: torch.device
) -> list[float]:
    """Play n_games whole games (all lives) epsilon-greedily and return their unclipped scores."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    scores = []
    while len(scores) < n_games:
        if rng.random() < epsilon:
            action = int(rng.integers(env.action_space.n))
        else:
            with torch.inference_mode():
                action = int(q_network(torch.from_numpy(obs).to(device)[None]).argmax(1).item())
        obs, _, terminated, truncated, info = env.step(action)
        if "episode" in info:
            scores.append(float(info["episode"]["r"]))
        if terminated or truncated:
            obs, _ = env.reset()
    return scores


def pick_device(args: Args) -> tuple[torch.device, torch.device]:
    """The training device and the replay storage device."""
    has_gpu = torch.cuda.is_available()
    if args.cuda and not has_gpu:
        print("note: no CUDA GPU found, running on the CPU (--no-cuda silences this)", file=sys.stderr)
    if args.buffer_device == "cuda" and not (args.cuda and has_gpu):
        raise ValueError("--buffer-device cuda needs --cuda and a CUDA GPU")
    device = torch.device("cuda" if args.cuda and has_gpu else "cpu")
    return device, torch.device(args.buffer_device)


# ---------------------------------------------------------------------------------------------------
# Training


def main(args: Args) -> int:
    try:
        check_args(args)
        device, buffer_device = pick_device(args)
        run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
        env = make_env(args.env_id, args.seed, f"videos/{run_name}" if args.capture_video else None)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    rng = np.random.default_rng(args.seed)

    writer = SummaryWriter(f"runs/{run_name}")
    writer.add_text(
        "hyperparameters",
        "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in vars(args).items()),
    )

    n_actions = env.action_space.n
    q_network = QNetwork(n_actions).to(device).to(memory_format=torch.channels_last)
    target_network = QNetwork(n_actions).to(device).to(memory_format=torch.channels_last)
    target_network.load_state_dict(q_network.state_dict())
    # the fused Adam kernel updates all parameters in one pass; noticeably faster on CPU too
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
    rb = FrameReplayBuffer(args.buffer_size, env.observation_space.shape[1:], n_actions, buffer_device)

    start_time = time.time()
    training_start_time = None  # when the first gradient update happened, for the training-phase SPS
    last_print = start_time
    recent_returns = deque(maxlen=20)
    global_step = 0
    interrupted = False
    print(f"run {run_name} on {device}; logs in runs/{run_name}", flush=True)
    obs, _ = env.reset(seed=args.seed)
    try:
        for global_step in range(args.total_timesteps):
            epsilon = linear_schedule(
                args.start_e, args.end_e, args.exploration_fraction * args.total_timesteps, global_step
            )
            if rng.random() < epsilon:
                action = int(rng.integers(n_actions))
            else:
                with torch.inference_mode():
                    action = int(q_network(torch.from_numpy(obs).to(device)[None]).argmax(1).item())

            next_obs, reward, terminated, truncated, info = env.step(action)
            if "episode" in info:  # a whole game ended: its unclipped score
                game_return = float(info["episode"]["r"])
                recent_returns.append(game_return)
                writer.add_scalar("charts/episodic_return", game_return, global_step)
                writer.add_scalar("charts/episodic_length", int(info["episode"]["l"]), global_step)

            rb.add(obs, action, reward, next_obs, terminated, truncated)
            obs = next_obs if not (terminated or truncated) else env.reset()[0]

            if global_step >= args.learning_starts:
                if global_step % args.train_frequency == 0:
                    if training_start_time is None:
                        training_start_time, training_start_step = time.time(), global_step
                    data = rb.sample(args.batch_size, rng, device)
                    with torch.no_grad():
                        next_q_online, next_q_target = q_network(data.next_obs), target_network(data.next_obs)
                        td_target = double_dqn_target(
                            next_q_online, next_q_target, data.rewards, data.terminated, args.gamma
                        )
                    q_taken = q_network(data.obs).gather(1, data.actions[:, None]).squeeze(1)
                    loss = F.mse_loss(q_taken, td_target)

                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(q_network.parameters(), MAX_GRAD_NORM)
                    optimizer.step()

                    if global_step % 100 == 0:
                        writer.add_scalar("losses/td_loss", loss.item(), global_step)
                        writer.add_scalar("losses/q_values", q_taken.mean().item(), global_step)
                        writer.add_scalar("charts/SPS", int(global_step / (time.time() - start_time)), global_step)
                        writer.add_scalar("charts/epsilon", epsilon, global_step)

                if global_step % args.target_network_frequency == 0:
                    with torch.no_grad():
                        for target_param, param in zip(target_network.parameters(), q_network.parameters()):
                            target_param.lerp_(param, args.tau)  # target <- target + tau * (online - target)

            if time.time() - last_print > 10:
                last_print = time.time()
                mean_return = f"{np.mean(recent_returns):.1f}" if recent_returns else "-"
                print(
                    f"step {global_step:>9,}/{args.total_timesteps:,}  SPS {int(global_step / (last_print - start_time)):>5}  "
                    f"return (last {len(recent_returns)} games) {mean_return:>6}  epsilon {epsilon:.3f}",
                    flush=True,
                )
        global_step = args.total_timesteps
    except KeyboardInterrupt:
        interrupted = True
        print(f"\ninterrupted at step {global_step:,}", file=sys.stderr)
    env.close()

    elapsed = time.time() - start_time
    summary = f"{global_step:,} steps in {elapsed:.1f} s ({global_step / elapsed:.1f} SPS"
    if training_start_time is not None:
        train_sps = (global_step - training_start_step) / (time.time() - training_start_time)
        summary += f", {train_sps:.1f} SPS once learning started"
    print(summary + ")")

    if args.save_model:
        model_path = f"runs/{run_name}/{args.exp_name}.pt"
        torch.save(q_network.state_dict(), model_path)
        print(f"model saved to {model_path}")
    if args.eval_episodes > 0 and not interrupted:
        if args.save_model:  # evaluate what was saved, loaded back, so the file is known to work
            q_network = QNetwork(n_actions).to(device)
            q_network.load_state_dict(torch.load(model_path, map_location=device))
        eval_env = make_env(args.env_id, args.seed + 1, f"videos/{run_name}-eval" if args.capture_video else None)
        scores = evaluate(q_network.eval(), eval_env, args.eval_episodes, args.eval_epsilon, args.seed + 1, device)
        eval_env.close()
        for game, score in enumerate(scores):
            writer.add_scalar("eval/episodic_return", score, game)
        print(
            f"evaluation over {len(scores)} games at epsilon {args.eval_epsilon}: mean {np.mean(scores):.1f}, scores {scores}"
        )
    writer.close()
    return 130 if interrupted else 0


if __name__ == "__main__":
    try:
        sys.exit(main(tyro.cli(Args)))
    except KeyboardInterrupt:  # outside the training loop (which saves and stops cleanly): just stop
        sys.exit(130)
