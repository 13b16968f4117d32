"""Prioritized replay on Atari: Schaul, Quan, Antonoglou and Silver 2016, "Prioritized Experience Replay".

Parent: double_dqn_atari.py (the paper's agent is Double DQN). What changes, with the paper's values as defaults:
- transitions are replayed in proportion to priority^alpha (alpha 0.6), where a transition's priority is its
  last |TD error| plus a small epsilon (1e-6), and a new transition enters at the largest priority seen so far,
  so that it is replayed at least once soon. A sum tree over the replay slots makes drawing a batch and
  updating its priorities cost O(batch * log N), in NumPy operations over the tree's levels;
- a batch is stratified: the total priority is cut into batch_size equal slices and one transition is drawn
  from each, which spreads a batch over the distribution;
- each transition's squared TD error is weighted by (N * P(i))^-beta to undo the bias of drawing it with
  probability P(i) instead of 1/N. Beta goes linearly from 0.4 to 1.0 over the run (full correction at the end;
  over its first --total-timesteps if it is extended),
  and the weights are divided by the batch's largest, so they only ever scale updates down (N cancels);
- the learning rate is the parent's divided by 4 (2.5e-5), as the paper did, since prioritized batches
  carry larger errors.

    python per_dqn_atari.py --env-id BreakoutNoFrameskip-v4 --cuda

What is here, top to bottom: the arguments, the Atari preprocessing (SB3's wrappers), a video recorder
built on OpenCV, the Nature CNN, a replay buffer that stores every frame once, the sum tree and the prioritized
buffer built on both, evaluation, the loop (main), and then the run's life cycle (checkpoints, --resume,
signals), which a reader of the algorithm can skip.
Logs go to runs/{run_name} (`tensorboard --logdir runs`), with CleanRL's scalar names.

Copyright (c) 2026 The DQN family authors. MIT License: keep this line in copies (full text: LICENSE).
"""

import atexit
import contextlib
import copy
import importlib.util
import multiprocessing
import multiprocessing.util  # noqa: F401  (its exit handler is registered now: see GracefulStop)
import os
import signal
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
    track: bool = False
    """mirror the run to Weights & Biases (needs `pip install wandb`): its TensorBoard scalars, its flags, its videos"""
    wandb_project_name: str = "dqn-family"
    """the W&B project of --track"""
    wandb_entity: str | None = None
    """the W&B entity (team or user) of --track; default: yours"""
    capture_video: bool = False
    """record games 0, 1, 8, 27, ... (and the evaluation games) as mp4 files in `videos/{run_name}`"""
    save_model: bool = False
    """save the Q-network to `runs/{run_name}/{exp_name}.pt` at the end, or on Ctrl-C"""

    env_id: str = "BreakoutNoFrameskip-v4"
    """the id of an Atari game: `*NoFrameskip-v4` (no sticky actions) or `ALE/*-v5` (sticky actions 0.25)"""
    repeat_action_probability: float | None = None
    """sticky actions: the emulator repeats the agent's previous action with this probability (default: the id's, 0
    for `*NoFrameskip-v4`, 0.25 for `ALE/*-v5`, as Machado et al. 2018 recommend)"""
    full_action_space: bool = False
    """use all 18 Atari actions in every game, not the game's minimal set"""
    episodic_life: bool = True
    """a lost life ends the learning episode (Nature DQN, CleanRL); `--no-episodic-life` ends it at game over only
    (Machado et al. 2018). The returns logged are whole games either way"""
    total_timesteps: int = 10_000_000
    """total agent steps (each is 4 emulator frames)"""
    learning_rate: float = 2.5e-5
    """the learning rate of the Adam optimizer (the parent's 1e-4 divided by 4, as in the paper)"""
    buffer_size: int = 1_000_000
    """the replay memory size, in frames: one per transition, plus one per episode start"""
    buffer_device: Literal["cpu", "cuda"] = "cpu"
    """where the replay frames live; `cuda` keeps them on the GPU and saves a host-to-device copy per batch"""
    bf16: bool = False
    """run the network's forward passes in training (acting, targets, the update) under `torch.autocast` in bfloat16;
    the weights, the optimizer and the loss stay float32, and evaluation runs in float32. Faster where the CPU or GPU
    has bfloat16 units; it changes the run's numerics"""
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
    """the fraction of `total_timesteps` it takes to go from start_e to end_e (the run's first: an extension keeps it)"""
    learning_starts: int = 80_000
    """the step at which learning starts (at the earliest --num-envs: once every env has stored a transition)"""
    train_frequency: int = 4
    """the number of steps between gradient updates"""
    num_envs: int = 1
    """the number of envs stepping in parallel, each in a process of its own; steps count the transitions of all"""
    eval_episodes: int = 10
    """whole games played at the end to evaluate the agent (0 to skip)"""
    eval_epsilon: float = 0.05
    """the epsilon of the evaluation games"""
    checkpoint_frequency: int = 2_000_000
    """steps between checkpoints of the whole run to `runs/{run_name}/checkpoint.pt`, for --resume (0: none)"""
    checkpoint_buffer: bool = True
    """keep the replay memory in checkpoints; without it a resumed run refills it for --learning-starts steps"""
    keep_final_buffer: bool = False
    """keep the replay memory in a finished run's last checkpoint too, to extend the run exactly later; by default
    that checkpoint leaves it out (it is buffer-sized), and an extension refills it"""
    resume: str | None = None
    """continue the run in this folder (`runs/{run_name}`) from its checkpoint, with its flags"""
    load_model: str | None = None
    """a model saved by --save-model, or a checkpoint, to play with --eval-only"""
    eval_only: bool = False
    """play --eval-episodes games with --load-model's agent, without training"""
    alpha: float = 0.6
    """how much prioritization is used: transitions are drawn in proportion to priority^alpha (0 is uniform)"""
    beta_start: float = 0.4
    """the importance-sampling exponent at the start; it goes linearly to --beta-end over the run"""
    beta_end: float = 1.0
    """the importance-sampling exponent at the end of the run (1 fully corrects the non-uniform draws)"""
    priority_epsilon: float = 1e-6
    """added to |TD error|, so that no stored transition has zero chance of being replayed"""


def check_args(args: Args) -> None:
    """Raise ValueError naming the first argument that cannot work."""
    for name in (
        "total_timesteps",
        "buffer_size",
        "batch_size",
        "train_frequency",
        "target_network_frequency",
        "num_envs",
    ):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("learning_starts", "eval_episodes", "checkpoint_frequency"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if args.buffer_size < args.batch_size:
        raise ValueError(f"--buffer-size ({args.buffer_size}) must be at least --batch-size ({args.batch_size})")
    if args.buffer_size < (FRAME_STACK + 1) * args.num_envs:
        raise ValueError(
            f"--buffer-size must be at least {FRAME_STACK + 1} per env ({(FRAME_STACK + 1) * args.num_envs}), "
            f"to hold a stack of frames and the next one"
        )
    for name in (
        "gamma",
        "start_e",
        "end_e",
        "eval_epsilon",
        "exploration_fraction",
        "tau",
        "beta_start",
        "beta_end",
        "repeat_action_probability",
    ):
        if getattr(args, name) is not None and not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.eval_only != (args.load_model is not None):
        raise ValueError("--eval-only and --load-model go together (to continue training a run, use --resume)")
    if args.eval_only and args.eval_episodes == 0:
        raise ValueError("--eval-only needs --eval-episodes above 0")
    if args.alpha < 0:
        raise ValueError(f"--alpha must not be negative, got {args.alpha}")
    if args.priority_epsilon <= 0:
        raise ValueError(f"--priority-epsilon must be positive, got {args.priority_epsilon}")


# ---------------------------------------------------------------------------------------------------
# Environment


class RecordGames(gym.Wrapper):
    """Write the raw RGB frames of games 0, 1, 8, 27, ..., 1000, 2000, ... to mp4 files.

    Gymnasium's RecordVideo needs moviepy; OpenCV, which the preprocessing already uses, can write mp4
    itself. It wraps the emulator directly, so a 'game' here is a whole game, every frame at 60 fps. While `paused`
    it records nothing: the reset that makes a resumed run's env, undone when its saved state goes back, must not
    open a file of the run's past again (a resumed run records from its next recorded game on).
    """

    def __init__(self, env: gym.Env, folder: str):
        super().__init__(env)
        self.folder = folder
        self.games_started = 0
        self.writer = None
        self.paused = False

    @staticmethod
    def is_recorded(game: int) -> bool:
        # the schedule of gymnasium's RecordVideo: cubes up to 1000, then every 1000th game
        return round(game ** (1 / 3)) ** 3 == game if game < 1000 else game % 1000 == 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._close_writer()
        if self.is_recorded(self.games_started) and not self.paused:
            os.makedirs(self.folder, exist_ok=True)
            height, width = obs.shape[:2]
            path, take = os.path.join(self.folder, f"game-{self.games_started}.mp4"), 1
            while os.path.exists(path):  # never over a file: an extended run's evaluation plays game 0 again
                take += 1
                path = os.path.join(self.folder, f"game-{self.games_started}.{take}.mp4")
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


def wrappers(env: gym.Env) -> list[gym.Wrapper]:
    """env's wrappers, outermost first."""
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


class ReportGamesEndedInReset(gym.Wrapper):
    """Pass on the record of a game that ended inside reset(), where SB3's wrappers would drop it.

    EpisodicLifeEnv takes a no-op step in reset() after a lost life, and FireResetEnv presses FIRE there; both
    throw that step's info away. When a time limit lands on such a step, the game ends there and its
    info["episode"] never reaches the loop. This outermost wrapper sees the game count go up during a reset
    and hands that game's record to the loop with the next step's info.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        [self.stats] = [w for w in wrappers(env) if isinstance(w, gym.wrappers.RecordEpisodeStatistics)]
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


class LastAction(gym.Wrapper):
    """The last action sent to the emulator: each frame's, the resets' no-ops and FIRE included.

    With sticky actions the emulator repeats its previous action, which ALE's saved state leaves out; a resumed env
    puts it back from here (Resumable). One case stays out of reach: when all 4 frames of the last step repeated an
    older action (probability p^4 for --repeat-action-probability p: 0.4% at 0.25, where the action changed), the
    emulator remembers that one.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        # a reset leaves NOOP as the emulator's previous action: action 0 of the games NoopResetEnv takes
        self.action = 0

    def reset(self, **kwargs):
        self.action = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        self.action = int(action)
        return self.env.step(action)


def make_env(args: Args, seed: int, video_folder: str | None = None, max_episode_steps: int | None = None) -> gym.Env:
    """The Nature-DQN preprocessing: observations are the last 4 grey 84x84 frames, as uint8 (4, 84, 84).

    A step is 4 emulator frames (max-pooled over the last two), rewards are clipped to their sign, and a lost life
    ends the learning episode while the game goes on (unless --no-episodic-life); `info["episode"]` reports every whole
    game. The emulator is the id's, with args' sticky actions and action set: an `ALE/*-v5` id skips frames itself,
    so it is made with frameskip 1 (MaxAndSkipEnv skips) and keeps its sticky actions and its 108,000-frame limit.
    `max_episode_steps` (in emulator frames) cuts games shorter, as a truncation.
    """
    try:
        spec = gym.spec(args.env_id)
    except gym.error.Error as e:
        raise ValueError(f"unknown --env-id {args.env_id!r}: {str(e).splitlines()[0]}") from None
    if spec.entry_point != "ale_py.env:AtariEnv":
        raise ValueError(f"--env-id {args.env_id!r} is not an Atari environment; try BreakoutNoFrameskip-v4")
    if spec.kwargs.get("frameskip") != 1 and (spec.namespace, spec.version) != ("ALE", 5):
        raise ValueError(
            f"--env-id {args.env_id!r} skips frames itself (frameskip={spec.kwargs.get('frameskip')}), and this "
            f"script skips 4 more; use the NoFrameskip-v4 or the ALE/...-v5 version, e.g. BreakoutNoFrameskip-v4"
        )
    emulator = {"frameskip": 1, "full_action_space": args.full_action_space}
    if args.repeat_action_probability is not None:
        emulator["repeat_action_probability"] = args.repeat_action_probability
    env = LastAction(gym.make(args.env_id, max_episode_steps=max_episode_steps, **emulator))
    if video_folder is not None:
        env = RecordGames(env, video_folder)
    env = gym.wrappers.RecordEpisodeStatistics(env)  # below EpisodicLifeEnv, so it sees whole games
    env = NoopResetEnv(env, noop_max=30)
    env = MaxAndSkipEnv(env, skip=4)
    if args.episodic_life:
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


def make_envs(args: Args, run_name: str, saved_states: list[dict] | None = None) -> gym.vector.AsyncVectorEnv:
    """--num-envs copies of make_env's env, each stepping in a process of its own, so that the envs step while the
    network learns: the loop picks the actions, calls step_async, runs the updates due, then step_wait. The actions
    were picked before those updates, as in a sequential loop; the one difference is that an update cannot sample the
    transitions whose env steps are in flight. Env k is seeded with --seed + k; env 0 records the videos. A resumed
    run's envs start in the states its checkpoint saved.

    Autoreset is gymnasium's SAME_STEP: the step that ends an env's episode resets it and returns the next episode's
    first observation, with the final one in infos["final_obs"]. Every step of every env is then one transition,
    and none spans two episodes.
    """

    def env_fn(k: int):
        def make() -> gym.Env:
            # AsyncVectorEnv also builds env 0 once in this process, only to read its spaces
            in_worker = multiprocessing.parent_process() is not None
            if in_worker:  # Ctrl-C reaches the whole process group; stopping is the main process's to do
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            video = f"videos/{run_name}" if args.capture_video and k == 0 and in_worker else None
            env = Resumable(make_env(args, args.seed + k, video))
            if saved_states is not None and in_worker:
                env.restore_state(saved_states[k], seed=args.seed + k)
            return env

        return make

    return gym.vector.AsyncVectorEnv(
        [env_fn(k) for k in range(args.num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


def games_ended(infos: dict) -> list[tuple[int, float, int]]:
    """(env, score, length) of each whole game that ended in this vector step. The info of a step that ended its env's
    episode is in infos["final_info"], since the env was reset within the step."""
    games = []
    for info in (infos, infos.get("final_info", {})):
        if "episode" in info:
            for k in np.flatnonzero(info["_episode"]):
                games.append((int(k), float(info["episode"]["r"][k]), int(info["episode"]["l"][k])))
    return games


def final_observations(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """Where each env's step led: next_obs, except where the episode ended, whose final observation is in infos."""
    if "final_obs" not in infos:
        return next_obs
    reached = next_obs.copy()
    for k in np.flatnonzero(infos["_final_obs"]):
        reached[k] = infos["final_obs"][k]
    return reached


# ---------------------------------------------------------------------------------------------------
# Agent


class QNetwork(nn.Module):
    """The Nature-DQN CNN: three conv layers, a 512-unit hidden layer, one Q-value per action."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(FRAME_STACK, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(3136, 512),
            nn.ReLU(),
            nn.Linear(512, n_actions),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # frames stay uint8 until here; channels-last is the faster layout for these convolutions,
        # and changing the layout before converting to float moves 4 times fewer bytes
        x = obs.contiguous(memory_format=torch.channels_last).float().div_(255.0)
        return self.network(x)


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
    """A circular replay memory that stores each 84x84 frame once, for n_streams envs side by side.

    An observation is a stack of the last 4 frames, and consecutive observations share 3 of them, so
    storing (obs, next_obs) stacks would keep every frame 8 times. Here slot i holds the newest frame of one
    observation, and stacks are rebuilt from the slots before it when sampling:

        frames[i]        the newest frame of an observation o
        episode_step[i]  how many steps into its episode o came (0 for the first observation; a stack
                         never reaches before its episode's first frame, it repeats it instead)
        actions[i], rewards[i], terminated[i]
                         what the agent did from o and what followed
        has_next[i]      slot i starts a transition: the next slot of its stream holds the observation that followed o

    Each env writes a stream of its own: stream k owns the slots from k * S to (k + 1) * S - 1 (S = capacity //
    n_streams) and goes round them in a circle, so a stack never mixes envs. add() takes one transition per env, in
    the order the agent saw them. An episode's first observation takes a slot of its own; after that each
    transition adds one slot, its next observation. A truncated episode keeps its final observation, so its last
    transition bootstraps from it.
    """

    def __init__(
        self, capacity: int, frame_shape: tuple[int, int], n_actions: int, storage_device: torch.device, n_streams: int
    ):
        assert n_actions <= 256, "actions are stored as uint8"
        self.stream_capacity = capacity // n_streams
        self.capacity = self.stream_capacity * n_streams
        self.first_slot = np.arange(n_streams) * self.stream_capacity  # where each stream's slots begin
        # torch.empty reserves the memory without touching it; sample() only reads slots that were written
        self.frames = torch.empty((self.capacity, *frame_shape), dtype=torch.uint8, device=storage_device)
        self.episode_step = np.zeros(self.capacity, dtype=np.int32)
        self.actions = np.zeros(self.capacity, dtype=np.uint8)
        self.rewards = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=np.bool_)
        self.has_next = np.zeros(self.capacity, dtype=np.bool_)
        self.pos = np.zeros(n_streams, dtype=np.int64)  # per stream, the slot written next (counted in the stream)
        self.size = np.zeros(n_streams, dtype=np.int64)  # per stream, slots written so far, at most stream_capacity
        self.continues_episode = np.zeros(n_streams, dtype=np.bool_)  # the next add() starts from the newest slot

    def _write_frames(self, streams: np.ndarray, frames: np.ndarray, episode_step: np.ndarray | int) -> None:
        i = self.first_slot[streams] + self.pos[streams]
        slots = to_device(torch.from_numpy(i), self.frames.device)
        # frames is a view of the envs' stacks (their newest frames): made contiguous, it pins and copies only those
        frames = to_device(torch.from_numpy(np.ascontiguousarray(frames)), self.frames.device)
        self.frames.index_copy_(0, slots, frames)
        self.episode_step[i] = episode_step
        self.has_next[i] = False
        self.pos[streams] = (self.pos[streams] + 1) % self.stream_capacity
        self.size[streams] = np.minimum(self.size[streams] + 1, self.stream_capacity)

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> np.ndarray:
        """Store one transition per env (each argument has a row per env); returns the slots they start at."""
        starts = np.flatnonzero(~self.continues_episode)  # elsewhere obs is the previous transition's next_obs
        if len(starts):
            self._write_frames(starts, obs[starts, -1], 0)
        i = self.first_slot + (self.pos - 1) % self.stream_capacity  # each stream's newest slot: obs
        self.actions[i] = actions
        self.rewards[i] = rewards
        self.terminated[i] = terminated
        self._write_frames(np.arange(len(i)), next_obs[:, -1], self.episode_step[i] + 1)
        self.has_next[i] = True
        self.continues_episode = ~(terminated | truncated)
        return i

    def start_streams(self, obs: np.ndarray) -> None:
        """Begin each stream with its env's observation whole, its 4 frames as the last 4 slots of one episode, so that
        the stacks of the transitions that follow are what the agent saw (a memory refilled in mid-game, after a
        resume without it; an episode's first observation is 4 copies of one frame, and comes out the same)."""
        for t in range(FRAME_STACK):
            self._write_frames(np.arange(len(self.pos)), obs[:, t], t)
        self.continues_episode[:] = True

    def _written(self) -> np.ndarray:
        return np.concatenate([first + np.arange(n) for first, n in zip(self.first_slot, self.size)])

    def state_dict(self) -> dict:
        """The written slots and where writing goes on, for checkpoints."""
        full = self.size.sum() == self.capacity
        written = self._written()
        arrays = ("episode_step", "actions", "rewards", "terminated", "has_next")
        return {
            # a full memory is saved as it is; a gather would copy it all first
            "frames": self.frames if full else self.frames[torch.from_numpy(written).to(self.frames.device)],
            **{name: torch.from_numpy(getattr(self, name)[written]) for name in arrays},
            **{name: torch.from_numpy(getattr(self, name).copy()) for name in ("pos", "size", "continues_episode")},
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("pos", "size", "continues_episode"):
            getattr(self, name)[:] = state[name].numpy()
        written = self._written()
        self.frames[torch.from_numpy(written).to(self.frames.device)] = state["frames"].to(self.frames.device)
        for name in ("episode_step", "actions", "rewards", "terminated", "has_next"):
            getattr(self, name)[written] = state[name].numpy()

    def _is_valid(self, i: np.ndarray) -> np.ndarray:
        # once a stream wraps, its oldest slots' earlier frames may be overwritten by new ones
        stream = i // self.stream_capacity
        age = (self.pos[stream] - 1 - (i - self.first_slot[stream])) % self.stream_capacity  # 0: the newest
        frames_before = np.minimum(self.episode_step[i], FRAME_STACK - 1)
        return self.has_next[i] & (age + frames_before < self.size[stream])

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n slots drawn uniformly, with replacement, from the written slots of all streams."""
        ends = np.cumsum(self.size)
        k = rng.integers(0, ends[-1], n)  # the k-th written slot, counting stream after stream
        stream = np.searchsorted(ends, k, side="right")
        return self.first_slot[stream] + k - (ends[stream] - self.size[stream])

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device) -> Batch:
        """A batch drawn uniformly, with replacement, from the stored transitions of all streams."""
        i = self._draw(batch_size, rng)
        invalid = ~self._is_valid(i)
        while invalid.any():  # redraw the few slots that start no transition
            i[invalid] = self._draw(invalid.sum(), rng)
            invalid = ~self._is_valid(i)
        return self.get(i, device)

    def get(self, i: np.ndarray, device: torch.device) -> Batch:
        """The transitions starting at slots i, with their observation stacks rebuilt."""
        # obs and next_obs share 3 frames: gather the 5-frame window ending at next_obs once.
        # next_obs is the next slot of i's stream, episode_step[i] + 1 steps into its episode.
        first = self.first_slot[i // self.stream_capacity, None]
        offsets = np.arange(FRAME_STACK, -1, -1)  # 4, 3, 2, 1, 0 slots back
        back = np.minimum(offsets, self.episode_step[i, None] + 1)
        window_slots = first + (i[:, None] - first + 1 - back) % self.stream_capacity
        window_slots = to_device(torch.from_numpy(window_slots.flatten()), self.frames.device)
        # gathered straight into pinned memory when it goes on to a GPU, so that the copy runs without waiting
        pinned = device.type == "cuda" and self.frames.device.type == "cpu"
        window = torch.empty(
            (len(i), FRAME_STACK + 1, *self.frames.shape[1:]),
            dtype=torch.uint8,
            device=self.frames.device,  # index_select(out=) copies across no device
            pin_memory=pinned,
        )
        # index_select over the flattened slots is about 3x faster than advanced indexing here
        torch.index_select(self.frames, 0, window_slots, out=window.view(-1, *self.frames.shape[1:]))
        window = to_device(window, device)
        return Batch(
            obs=window[:, :-1],
            actions=to_device(torch.from_numpy(self.actions[i].astype(np.int64)), device),
            rewards=to_device(torch.from_numpy(self.rewards[i]), device),
            next_obs=window[:, 1:],
            terminated=to_device(torch.from_numpy(self.terminated[i].astype(np.float32)), device),
        )


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """x on `device`. From the CPU to a GPU it goes through pinned memory, so the copy does not make the CPU wait;
    PyTorch's pinned-memory cache does not reuse that memory until the copy is done."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


# ---------------------------------------------------------------------------------------------------
# Prioritized replay


class SumTree:
    """Non-negative priorities of `capacity` slots, in a binary tree where every node holds the sum of its children.

    nodes[1] is the root, node k's children are 2k and 2k+1, and slot s is the leaf nodes[n_leaves + s].
    Finding the slot where a cumulative mass falls is one walk from the root to a leaf; a batch of masses walks
    down together, one NumPy operation per level, and a batch of updates walks up the same way.
    """

    def __init__(self, capacity: int):
        self.depth = (capacity - 1).bit_length()
        self.n_leaves = 1 << self.depth  # a power of two, so every leaf is at the same depth
        self.nodes = np.zeros(2 * self.n_leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def leaves(self, slots: np.ndarray) -> np.ndarray:
        return self.nodes[self.n_leaves + slots]

    def update(self, slots: np.ndarray, priorities: np.ndarray | float) -> None:
        """Set the priorities of slots; a slot given twice ends with one of its values, and every sum stays exact."""
        nodes = slots + self.n_leaves
        self.nodes[nodes] = priorities
        for _ in range(self.depth):  # recompute each ancestor from its two children
            nodes >>= 1
            left = nodes << 1
            self.nodes[nodes] = self.nodes[left] + self.nodes[left + 1]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """The slot whose share of the cumulative priority contains each mass in [0, total)."""
        mass = mass.copy()
        nodes = np.ones(len(mass), dtype=np.int64)
        for _ in range(self.depth):
            nodes <<= 1  # the left child
            left_mass = self.nodes[nodes]
            go_right = mass >= left_mass
            go_right &= self.nodes[nodes + 1] > 0  # never into an empty subtree, whatever the rounding
            np.subtract(mass, left_mass, out=mass, where=go_right)
            nodes += go_right
        return nodes - self.n_leaves


class PrioritizedFrameReplayBuffer(FrameReplayBuffer):
    """The frame-once buffer, with a sum tree over its slots: a slot's leaf is priority^alpha while it starts a
    transition that can be sampled, and 0 otherwise, so the tree draws only stored transitions."""

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, int],
        n_actions: int,
        storage_device: torch.device,
        n_streams: int,
        alpha: float,
        priority_epsilon: float,
    ):
        super().__init__(capacity, frame_shape, n_actions, storage_device, n_streams)
        self.tree = SumTree(self.capacity)
        self.alpha = alpha
        self.priority_epsilon = priority_epsilon
        self.max_priority = 1.0  # the largest priority seen so far, given to every new transition

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> np.ndarray:
        i = super().add(obs, actions, rewards, next_obs, terminated, truncated)
        # in each stream, slot i now starts a transition; the slot after it holds its next observation, which starts
        # none yet; and the oldest slots lose their transition once the frames their stacks reach back to are overwritten
        first = self.first_slot[:, None]
        after = first + (i[:, None] - first + np.arange(1, FRAME_STACK + 1)) % self.stream_capacity
        next_slot, oldest = after[:, 0], after[:, 1:].flatten()
        slots = np.concatenate((i, next_slot, oldest[~self._is_valid(oldest)]))
        priorities = np.zeros(len(slots))
        priorities[: len(i)] = self.max_priority**self.alpha
        self.tree.update(slots, priorities)
        return i

    def sample(
        self, batch_size: int, rng: np.random.Generator, device: torch.device, beta: float
    ) -> tuple[Batch, np.ndarray, torch.Tensor]:
        """A stratified prioritized batch, its slots (to update their priorities) and its importance-sampling weights."""
        total = self.tree.total
        # one draw from each of batch_size equal slices of the total priority
        mass = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
        slots = self.tree.find(mass)
        probabilities = self.tree.leaves(slots) / total
        # (N * P(i))^-beta over its batch maximum, which is the smallest P(i)'s weight: N cancels
        weights = (probabilities / probabilities.min()) ** -beta
        return self.get(slots, device), slots, to_device(torch.from_numpy(weights.astype(np.float32)), device)

    def update_priorities(self, slots: np.ndarray, td_errors: np.ndarray) -> None:
        priorities = np.abs(td_errors) + self.priority_epsilon
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(slots, priorities**self.alpha)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "tree": torch.from_numpy(self.tree.nodes), "max_priority": self.max_priority}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.tree.nodes[:] = state["tree"].numpy()
        self.max_priority = state["max_priority"]


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


def evaluate_and_log(
    q_network: QNetwork, args: Args, run_name: str, device: torch.device, writer: SummaryWriter
) -> None:
    """Play --eval-episodes whole games with q_network, log them as `eval/episodic_return` and print them."""
    eval_env = make_env(args, args.seed + 1, f"videos/{run_name}-eval" if args.capture_video else None)
    scores = evaluate(q_network.eval(), eval_env, args.eval_episodes, args.eval_epsilon, args.seed + 1, device)
    eval_env.close()
    for game, score in enumerate(scores):
        writer.add_scalar("eval/episodic_return", score, game)
    print(
        f"evaluation over {len(scores)} games at epsilon {args.eval_epsilon}: mean {np.mean(scores):.1f}, scores {scores}"
    )


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


def main(args: Args, given: set[str] = frozenset()) -> int:
    """Train (or, with --eval-only, play a saved agent); `given` names the flags set on the command line."""
    stop = GracefulStop()
    try:
        run = Run(args, given)  # new, stopped or finished, and what this command does with it (see Run)
        if run.finished:  # asked to go on to where it is: nothing to do (Run said so, and how to extend it)
            return 0
        args = run.args
        device, buffer_device = pick_device(args)
        probe = make_env(args, args.seed)  # an --env-id that cannot work fails here, with one line
        n_actions, frame_shape = int(probe.action_space.n), probe.observation_space.shape[1:]
        probe.close()
        run.fits(n_actions)
        writer = run.begin(device)  # the run's folder: made only now, so that a refused command leaves nothing
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    rng = np.random.default_rng(args.seed)

    q_network = QNetwork(n_actions).to(device).to(memory_format=torch.channels_last)
    target_network = QNetwork(n_actions).to(device).to(memory_format=torch.channels_last)
    target_network.load_state_dict(q_network.state_dict())
    # the fused Adam kernel updates all parameters in one pass; noticeably faster on CPU too
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)

    def final_evaluation() -> None:  # --eval-episodes games, logged and printed
        evaluate_and_log(q_network, args, run.name, device, writer)

    if args.eval_only or run.evaluation_left:  # play a saved agent (or evaluate a run stopped before it), no training
        return run.play(q_network, stop, final_evaluation, writer)

    rb = PrioritizedFrameReplayBuffer(
        args.buffer_size, frame_shape, n_actions, buffer_device, args.num_envs, args.alpha, args.priority_epsilon
    )
    recent_returns = deque(maxlen=20)
    parts = {"target_network": target_network, "optimizer": optimizer, "replay": rb}  # what checkpoints keep
    envs = make_envs(args, run.name, run.env_states)
    # learning starts after --learning-starts steps, and no sooner than every env has stored a transition to draw
    global_step, learning_starts = run.step, run.learning_start(max(args.learning_starts, args.num_envs))
    if args.resume:  # back to the checkpoint's step, exactly as the run was then
        obs = run.restore(q_network, parts, rng, recent_returns)
        if not run.memory_restored:  # it refills, from the frames of the game in progress
            rb.start_streams(obs)
    else:
        obs, _ = envs.reset(seed=args.seed)  # env k is seeded with --seed + k

    def save_checkpoint(step: int) -> None:
        with stop.saving():
            run.save_checkpoint(step, obs, rng, list(envs.call("save_state")), parts, recent_returns, q_network)

    progress = Progress(global_step)  # the status line, and the speed
    print(f"run {run.name} on {device} from step {global_step:,}; logs in {run.folder}", flush=True)
    # Each pass is one step of every env: --num-envs transitions, numbered global_step, global_step + 1, ...
    while global_step < args.total_timesteps:
        if stop.requested():  # Ctrl-C or SIGTERM: stop between two steps, where the run's state is whole
            break
        epsilon = linear_schedule(args.start_e, args.end_e, args.exploration_fraction * run.horizon, global_step)
        # act: epsilon-greedy in every env
        actions = rng.integers(n_actions, size=args.num_envs)
        explore = rng.random(args.num_envs) < epsilon
        if not explore.all():
            with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=args.bf16):
                greedy = q_network(to_device(torch.from_numpy(obs), device)).argmax(1).cpu().numpy()
            actions = np.where(explore, actions, greedy)
        # step: the envs step in their processes while the network learns below. The actions were picked before this
        # pass's updates, as in a sequential loop; the one difference is that these updates cannot sample the
        # transitions in flight.
        envs.step_async(actions)

        # learn: one update per --train-frequency transitions, whatever the number of envs
        losses_to_log = None
        for step in range(global_step, global_step + args.num_envs):
            if step < learning_starts:
                continue
            if step % args.train_frequency == 0:
                progress.learning(step)
                beta = linear_schedule(args.beta_start, args.beta_end, run.horizon, step)
                # unlike the parent's, this sample() also returns the slots drawn and their importance weights
                data, slots, weights = rb.sample(args.batch_size, rng, device, beta)
                # --bf16: the forward passes in bfloat16 (autocast computes the loss in float32)
                # no weight-cast cache: in PyTorch before its fix (pytorch/pytorch#165068, December 2025), a cache
                # filled in a no-grad pass cut the online network's next pass off from its gradient
                with torch.autocast(device.type, torch.bfloat16, enabled=args.bf16, cache_enabled=False):
                    with torch.no_grad():
                        next_q_online, next_q_target = q_network(data.next_obs), target_network(data.next_obs)
                        td_target = double_dqn_target(
                            next_q_online, next_q_target, data.rewards, data.terminated, args.gamma
                        )
                    q_taken = q_network(data.obs).gather(1, data.actions[:, None]).squeeze(1)
                    td_errors = q_taken - td_target
                    loss = (weights * td_errors.pow(2)).mean()  # the weights stay on the training device

                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                rb.update_priorities(slots, td_errors.detach().cpu().numpy())  # only the TD errors cross to the CPU

                if step % 100 == 0:  # read after step_wait, so that logging never makes the CPU wait for a GPU here
                    losses_to_log = (step, loss.detach(), q_taken.detach().mean())
            if step % args.target_network_frequency == 0:
                with torch.no_grad():
                    for target_param, param in zip(target_network.parameters(), q_network.parameters()):
                        target_param.lerp_(param, args.tau)  # target <- target + tau * (online - target)

        next_obs, rewards, terminated, truncated, infos = envs.step_wait()
        for k, game_return, game_length in games_ended(infos):  # whole games, with their unclipped scores
            recent_returns.append(game_return)
            writer.add_scalar("charts/episodic_return", game_return, global_step + k)
            writer.add_scalar("charts/episodic_length", game_length, global_step + k)
        if losses_to_log is not None:
            step, loss, q_mean = losses_to_log
            writer.add_scalar("losses/td_loss", loss.item(), step)
            writer.add_scalar("losses/q_values", q_mean.item(), step)
            writer.add_scalar("charts/SPS", progress.sps(step), step)
            writer.add_scalar("charts/epsilon", epsilon, step)
            writer.add_scalar("charts/beta", beta, step)

        # store: an env whose episode ended has begun the next one; the transition ends at the final observation
        rb.add(obs, actions, rewards, final_observations(next_obs, infos), terminated, truncated)
        obs = next_obs
        global_step += args.num_envs

        progress.status(global_step, args.total_timesteps, recent_returns, epsilon)
        if run.checkpoint_due(global_step):
            save_checkpoint(global_step)
    run.loop_ended(global_step, stop, save_checkpoint)  # the last checkpoint, and what to do next
    envs.close()

    progress.summary(global_step)
    return run.end(q_network, stop, final_evaluation, writer)


# ---------------------------------------------------------------------------------------------------
# The run's life cycle: new, stopped, finished. Bookkeeping only; the algorithm is all above.

# Flags that a resumed run, or the evaluation of a saved agent, may change: where it runs, how long, what it records
# and keeps, how it is evaluated. Any other flag would change what the run learns, and must agree with the saved one.
CHANGEABLE_FLAGS = {"cuda", "buffer_device", "torch_deterministic", "capture_video", "save_model", "total_timesteps"}
CHANGEABLE_FLAGS |= {"eval_episodes", "eval_epsilon", "checkpoint_frequency", "checkpoint_buffer", "keep_final_buffer"}
CHANGEABLE_FLAGS |= {"track", "wandb_project_name", "wandb_entity"}
COMMAND_FLAGS = {"resume", "load_model", "eval_only"}  # what this command does: never taken from a saved file
CHANGEABLE_FLAGS |= COMMAND_FLAGS
SCRIPT = os.path.basename(__file__)


class GracefulStop:
    """How a run ends. Ctrl-C (SIGINT) and SIGTERM (Slurm preemption, `timeout`, `docker stop`) end it without losing
    it; a crash ends it at once.

    The first signal only sets `signum`: the training loop finishes its step, stops, and saves what was asked for
    (the model, a checkpoint); the script then exits with 128 + signum (130, 143). A second signal, or one once
    `deferring` is off (during the final evaluation), exits at once, and so does a run whose loop has not come round
    to stop within `grace_s` seconds of the first signal (a hung env, say), unless it is saving (`saving()`), which
    is progress however long it takes. (The grace timer is SIGALRM's, which Windows lacks.)

    A crash (any exception) prints its traceback and exits with 1. On every way out, env processes still running are
    killed: they ignore SIGTERM (a stopping run still needs them, to save their states), and SIGTERM is how Python's
    multiprocessing would end them at exit, before it waits for them, forever.
    """

    def __init__(self, grace_s: int = 60):
        self.signum = None  # the first signal received
        self.deferring = True
        self.grace_s = grace_s
        self.busy_saving = False
        self.timer = hasattr(signal, "SIGALRM")  # not on Windows
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)
        if self.timer:
            signal.signal(signal.SIGALRM, self._give_up)
        # registered after multiprocessing's own exit handler (imported above), so that it runs before it; once
        atexit.unregister(GracefulStop._kill_env_processes)
        atexit.register(GracefulStop._kill_env_processes)

    def _handle(self, signum, frame):
        if self.signum is None and self.deferring:
            self.signum = signum
            if self.timer:
                signal.alarm(self.grace_s)
        else:
            self._exit(128 + signum)

    def _give_up(self, signum, frame):
        if self.busy_saving:  # look again later
            signal.alarm(self.grace_s)
            return
        print(f"error: the run did not stop within {self.grace_s} s of the signal; exiting unsaved", file=sys.stderr)
        self._exit(128 + (self.signum or signal.SIGTERM))

    def _exit(self, code: int):
        self._kill_env_processes()  # now: leaving the frame that holds the envs would wait on them first
        raise SystemExit(code)

    def requested(self) -> bool:
        """Whether a signal asked the run to stop. The loop asks between two steps, where the run's state is whole;
        asking calls off the grace timer."""
        if self.signum is not None and self.timer:
            signal.alarm(0)
        return self.signum is not None

    @contextlib.contextmanager
    def saving(self):
        """Around a save: it may take longer than the grace period, and is no hang."""
        self.busy_saving = True
        try:
            yield
        finally:
            self.busy_saving = False

    @staticmethod
    def _kill_env_processes() -> None:  # every child process multiprocessing started: in these scripts, the envs
        if hasattr(signal, "alarm"):
            signal.alarm(0)
        for process in multiprocessing.active_children():
            process.kill()


def flags_given(argv: list[str]) -> set[str]:
    """The Args fields named on a command line: `--buffer-size 10`, `--buffer-size=10`, `--no-cuda`."""
    names = {token[2:].split("=")[0].replace("-", "_") for token in argv if token.startswith("--")}
    return {name[3:] if name.startswith("no_") and name[3:] in Args.__dataclass_fields__ else name for name in names}


def write_atomically(path: str, contents: dict) -> None:
    """torch.save to a temp file in the same folder, flushed and fsynced, then renamed over `path`: a kill at any
    instant leaves either the old file or the new one, complete."""
    temp = path + ".tmp"
    try:
        with open(temp, "wb") as f:
            torch.save(contents, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:  # a full disk, a second signal: the old file stays, with no half-written one beside it
        if os.path.exists(temp):
            os.remove(temp)
        raise
    folder = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power loss
    finally:
        os.close(folder)


def saved_file(args: Args, n_actions: int, q_network: nn.Module) -> dict:
    """What --save-model writes: the weights, and what they are (script, env, number of actions, flags)."""
    return {
        "script": SCRIPT,
        "env_id": args.env_id,
        "n_actions": int(n_actions),
        "args": {name: value for name, value in vars(args).items() if name not in COMMAND_FLAGS},
        "model": q_network.state_dict(),
    }


def load_saved(path: str) -> dict:
    """A model or checkpoint that this script saved, read back; ValueError saying what is wrong with any other file."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:  # weights_only: a file that is not ours cannot run code
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        raise ValueError(f"{path} cannot be read as a saved model or checkpoint (truncated, or not one)") from None
    if not (isinstance(saved, dict) and {"script", "env_id", "n_actions", "args", "model"} <= saved.keys()):
        raise ValueError(f"{path} is not a model or checkpoint saved by these scripts")
    if saved["script"] != SCRIPT:
        raise ValueError(f"{path} was saved by {saved['script']}, not by {SCRIPT}")
    return saved


class Run:
    """Where a run is in its life, and what each command does with it: the one place that knows.

    A run's folder, runs/{name}, holds a run that is stopped (its checkpoint.pt has steps left before
    --total-timesteps) or finished (the checkpoint reached them). A command with neither --resume nor --load-model
    starts a new run, in a new folder. The others:

        command                            on a stopped run                  on a finished run
        --resume RUN                       goes on from its checkpoint       refused, saying how to extend it
        --resume RUN --total-timesteps N   goes on, to N                     extends it to N
        --load-model FILE --eval-only      plays the saved agent (a model or a checkpoint) in a folder of its own,
                                           runs/{name}-play: never in the training run's folder or its videos

    The schedules (epsilon, PER's beta) span the run's first --total-timesteps, its horizon, whatever N a resume gives:
    an extension never changes what a step's past was, and past the horizon they hold their end values. A refused
    command writes nothing. A stop prints the command that resumes the run; the end says what the checkpoint kept.
    docs/running.md ("Long runs: checkpoints, --resume, signals, saved agents") has the full table, with what each
    row prints and where it writes.
    """

    def __init__(self, args: Args, given: set[str]):
        """The run's flags and state, from this command line (`given`: the flags it names) and the saved file it names;
        ValueError if they cannot work. Nothing is written until begin()."""
        if args.resume and args.load_model:
            raise ValueError("--resume and --load-model do not go together")
        saved = None
        if args.resume:
            path = os.path.join(args.resume, "checkpoint.pt")
            if not os.path.isdir(args.resume):
                raise ValueError(f"--resume {args.resume}: no such folder")
            if not os.path.isfile(path):
                raise ValueError(f"--resume {args.resume}: no checkpoint.pt there (--checkpoint-frequency 0?)")
            saved = load_saved(path)
            if "loop" not in saved:
                raise ValueError(f"{path} holds a model but not a training loop to resume")
        elif args.load_model:
            saved = load_saved(args.load_model)
        if saved is not None:  # the saved run's flags hold, with those given here
            for name in sorted(given - CHANGEABLE_FLAGS):
                if name in saved["args"] and getattr(args, name) != saved["args"][name]:
                    raise ValueError(
                        f"--{name.replace('_', '-')} {getattr(args, name)} would change the saved run, "
                        f"which has {saved['args'][name]}"
                    )
            kept = {name: value for name, value in saved["args"].items() if name in Args.__dataclass_fields__}
            given = (given | COMMAND_FLAGS) & Args.__dataclass_fields__.keys()
            args = Args(**{**kept, **{name: getattr(args, name) for name in given}})
        check_args(args)
        if args.track and importlib.util.find_spec("wandb") is None:
            raise ValueError("--track needs wandb: pip install wandb")
        self.args, self.saved = args, saved
        self.step = saved["loop"]["step"] if args.resume else 0  # where training goes on from
        self.checkpointed = self.step  # the step of the last checkpoint
        self.horizon = args.total_timesteps  # the steps the schedules span
        self.finished = False  # a finished run asked to go on to where it is: nothing to do
        self.evaluation_left = False  # ... unless it was stopped before its evaluation: that is what is left
        if args.resume:
            self.horizon = saved["loop"].get("horizon", saved["args"]["total_timesteps"])
            if args.checkpoint_frequency == 0:
                raise ValueError(
                    "--checkpoint-frequency 0 would leave the run's checkpoint behind it; resume with checkpoints"
                )
            self.finished = saved["args"]["total_timesteps"] <= args.total_timesteps <= self.step
            if args.total_timesteps <= self.step and not self.finished:
                raise ValueError(f"--total-timesteps {args.total_timesteps:,} is not above the {self.step:,} steps run")
            mark = os.path.join(args.resume, "evaluated")  # the step whose network the evaluation played
            evaluated = os.path.isfile(mark) and open(mark).read().strip() == str(self.step)
            if self.finished and args.eval_episodes > 0 and not evaluated:
                self.finished, self.evaluation_left = False, True
        name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
        self.name = saved["run_name"] if args.resume else name + ("-play" if args.eval_only else "")
        self.folder = os.path.normpath(args.resume) if args.resume else f"runs/{self.name}"  # begin() may add -2, -3
        self.checkpoint = f"{self.folder}/checkpoint.pt"
        # for the envs to start in; copied out of the checkpoint, which is memory-mapped and replaced on disk
        self.env_states = copy.deepcopy(saved["loop"]["env"]) if args.resume else None
        self.memory_kept = None  # whether the last checkpoint kept the replay memory
        extend = f"python {SCRIPT} --resume {self.folder} --total-timesteps N, with N above {self.step:,}"
        if self.finished:
            print(f"{self.folder} has finished ({self.step:,} steps): nothing to do. To extend it: {extend}")
        if self.evaluation_left:
            print(
                f"{self.folder} has finished ({self.step:,} steps), but was stopped before its evaluation: evaluating"
            )

    def fits(self, n_actions: int) -> None:
        """ValueError if the saved agent has another number of actions than the env; else the run keeps the number,
        for the files it saves."""
        if self.saved is not None and self.saved["n_actions"] != n_actions:
            raise ValueError(f"the saved agent has {self.saved['n_actions']} actions, {self.args.env_id} {n_actions}")
        self.n_actions = n_actions

    def begin(self, device: torch.device) -> SummaryWriter:
        """Make the run's folder, once every check has passed, and its TensorBoard writer: a new run logs its flags and
        the device it runs on; a resumed one hides what the stopped run logged after its checkpoint, so that no step is
        logged twice."""
        if self.args.resume:
            os.makedirs(self.folder, exist_ok=True)
        else:  # a folder of its own, even beside a run of the same name begun in the same second
            name, suffix = self.name, 1
            while not self._made(f"runs/{self.name}"):
                suffix += 1
                self.name = f"{name}-{suffix}"
            self.folder, self.checkpoint = f"runs/{self.name}", f"runs/{self.name}/checkpoint.pt"
        self.began = time.time()
        if self.args.track:  # before the writer, whose scalars W&B mirrors
            self._track()
        writer = SummaryWriter(self.folder, purge_step=self.step if self.args.resume else None)
        if not self.args.resume:
            flags = {**vars(self.args), "device": device}
            writer.add_text(
                "hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in flags.items())
            )
        return writer

    def _track(self) -> None:
        """--track: a Weights & Biases run that mirrors this one: its TensorBoard scalars, its flags as the config, its
        name as in runs/. Its id is kept in the run's folder, so that a resumed run goes on in the same W&B run; the
        runs of a grid share the group that benchmarks/grid.py puts in $WANDB_RUN_GROUP. W&B failing to start (no
        login, no network) refuses the command (ValueError), and a new run's folder goes."""
        import wandb  # only with --track: the scripts run without it

        id_file = os.path.join(self.folder, "wandb-run-id")
        run_id = open(id_file).read().strip() if os.path.isfile(id_file) else os.urandom(8).hex()
        try:
            wandb.init(
                project=self.args.wandb_project_name,
                entity=self.args.wandb_entity,
                id=run_id,
                resume="allow",
                name=self.name,
                config=vars(self.args),
                sync_tensorboard=True,
                settings=wandb.Settings(finish_timeout=120),  # never wait forever for an upload at the end
            )
        except Exception as e:  # wandb's errors, and what its service raises when it cannot start
            if not self.args.resume:
                with contextlib.suppress(OSError):
                    os.rmdir(self.folder)  # still empty: nothing of the run was written
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"--track: W&B did not start: {reason} (--no-track runs without it)") from None
        with open(id_file, "w") as f:
            f.write(run_id + "\n")

    def _close(self, writer: SummaryWriter, stop: GracefulStop) -> int:
        """Close the writer, and with --track the W&B run, after uploading the videos this command recorded. Returns
        the exit code: 0, or 128 + the signal that stopped the run. A W&B that fails here (its service killed by the
        same signal, say) costs one warning line: the run itself is saved."""
        writer.close()
        code = 128 + stop.signum if stop.signum else 0
        if self.args.track:
            import wandb

            try:
                for folder in (f"videos/{self.name}", f"videos/{self.name}-eval"):
                    videos = (
                        [os.path.join(folder, file) for file in os.listdir(folder)] if os.path.isdir(folder) else []
                    )
                    for path in sorted(videos, key=os.path.getmtime):  # in the order recorded
                        if path.endswith(".mp4") and os.path.getmtime(path) >= self.began:  # not a stopped run's again
                            wandb.log({"eval/videos" if folder.endswith("-eval") else "videos": wandb.Video(path)})
            except Exception as e:
                print(f"warning: W&B did not take the videos ({type(e).__name__}: {e})", file=sys.stderr)
            try:
                wandb.finish(exit_code=code)
            except Exception as e:
                print(f"warning: W&B did not finish ({type(e).__name__}: {e}); the run is saved", file=sys.stderr)
        return code

    @staticmethod
    def _made(folder: str) -> bool:
        try:
            os.makedirs(folder)
            return True
        except FileExistsError:
            return False

    def learning_start(self, delay: int) -> int:
        """The step of the first update: `delay` steps into a new run, or into a resumed one whose checkpoint left
        the replay memory out (it refills first); else where the stopped run had it."""
        if not self.args.resume:
            self.learning_starts = delay
        elif "replay" in self.saved["loop"]:
            self.learning_starts = self.saved["loop"].get("learning_starts", delay)
        else:
            self.learning_starts = self.step + delay
            print(f"note: the checkpoint has no replay memory; learning resumes after {delay:,} steps", file=sys.stderr)
        return self.learning_starts

    def restore(self, q_network: nn.Module, parts: dict, rng: np.random.Generator, recent_returns) -> np.ndarray:
        """Put the network, the RNGs and each of `parts` back as the checkpoint left them (the envs' states go back where
        the envs are made); returns the observation to go on from."""
        loop = self.saved["loop"]
        q_network.load_state_dict(self.saved["model"])
        for name, part in parts.items():
            if name in loop:  # copied out of the memory-mapped file (the memory is copied into its arrays anyway)
                part.load_state_dict(loop[name] if name == "replay" else copy.deepcopy(loop[name]))
        rng.bit_generator.state = loop["rng"]
        torch.set_rng_state(loop["torch_rng"])
        recent_returns.extend(loop["recent_returns"])
        self.memory_restored = "replay" in loop
        self.saved = None  # the old checkpoint, memory-mapped: let it go (its file is replaced at the next one)
        return loop["obs"].numpy().copy()

    def checkpoint_due(self, step: int) -> bool:
        frequency = self.args.checkpoint_frequency
        return frequency > 0 and step // frequency > self.checkpointed // frequency

    def save_checkpoint(
        self, step: int, obs: np.ndarray, rng, env_state, parts: dict, recent_returns, q_network
    ) -> None:
        """The whole run after `step` steps, for --resume: the networks, and all that the loop's next steps depend on
        (the observation, the RNGs, the envs' state, each of `parts`: target network, optimizer, replay memory, ...).
        The replay memory is left out with --no-checkpoint-buffer, and from a finished run's last checkpoint unless
        --keep-final-buffer (it is buffer-sized: 6.6 GiB at the Atari default)."""
        finished = step >= self.args.total_timesteps
        memory = self.args.checkpoint_buffer and (self.args.keep_final_buffer or not finished)
        loop = {
            "step": step,
            "horizon": self.horizon,
            "learning_starts": self.learning_starts,
            "obs": torch.from_numpy(obs.copy()),
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "env": env_state,
            "recent_returns": list(recent_returns),
            **{name: part.state_dict() for name, part in parts.items() if memory or name != "replay"},
        }
        saved = {**saved_file(self.args, self.n_actions, q_network), "run_name": self.name, "loop": loop}
        write_atomically(self.checkpoint, saved)
        self.checkpointed, self.memory_kept = step, memory

    def loop_ended(self, step: int, stop: GracefulStop, save_checkpoint) -> None:
        """Where the loop ended, stopped or finished: the last checkpoint, there."""
        stop.requested()  # the loop has come round: the grace timer, if a signal set it, is done
        self.reached = step
        if self.args.checkpoint_frequency and (step != self.checkpointed or not os.path.isfile(self.checkpoint)):
            save_checkpoint(step)

    def end(self, q_network: nn.Module, stop: GracefulStop, evaluate, writer: SummaryWriter) -> int:
        """After training: a line that says what the checkpoint kept and what a next command can do with it, the model
        (--save-model), then the evaluation of a run that was not stopped. Returns the exit code: 0, or 128 + the
        signal that stopped the run."""
        resume = f"python {SCRIPT} --resume {self.folder}"
        finished = self.reached >= self.args.total_timesteps
        if stop.signum and not finished:
            where = f"checkpoint in {self.folder}; to go on: {resume}" if self.args.checkpoint_frequency else ""
            print(
                f"\ninterrupted at step {self.reached:,}; {where or 'no checkpoint (--checkpoint-frequency 0)'}",
                file=sys.stderr,
            )
        elif stop.signum:
            print(
                f"\nfinished at step {self.reached:,}, stopped before its evaluation: {resume} runs it", file=sys.stderr
            )
        if finished and self.args.checkpoint_frequency:
            memory = "keeps the replay memory" if self.memory_kept else "leaves the replay memory out"
            why = "" if self.memory_kept else " (--keep-final-buffer keeps it)" if self.args.checkpoint_buffer else ""
            print(f"finished; its checkpoint {memory}{why}: {resume} --total-timesteps N extends it")

        if self.args.save_model:
            model_path = f"{self.folder}/{self.args.exp_name}.pt"
            with stop.saving():
                write_atomically(model_path, saved_file(self.args, self.n_actions, q_network))
            print(f"model saved to {model_path}")
        if self.args.eval_episodes > 0 and not stop.signum:
            if self.args.save_model:  # evaluate what was saved, loaded back, so the file is known to work
                q_network.load_state_dict(load_saved(model_path)["model"])
            stop.deferring = False  # from here on, a signal stops at once
            evaluate()
            self._evaluated()
        return self._close(writer, stop)

    def _evaluated(self) -> None:  # a resume then finds the run finished, with nothing left to do
        with open(f"{self.folder}/evaluated", "w") as f:
            f.write(f"{self.step if self.evaluation_left else self.reached}\n")

    def play(self, q_network: nn.Module, stop: GracefulStop, evaluate, writer: SummaryWriter) -> int:
        """--load-model FILE --eval-only: play the saved agent, in a folder of its own. Or the evaluation left to a run
        that finished but was stopped before it: in the run's folder, with its final network (dqn_cartpole.py's is the
        best of its greedy checks, kept in the checkpoint)."""
        best = self.saved["loop"].get("best", {}).get("weights") if self.evaluation_left else None
        q_network.load_state_dict(best or self.saved["model"])
        stop.deferring = False
        if not stop.signum:  # a signal that came while the agent was loading: no games at all
            evaluate()
            if self.evaluation_left:
                self._evaluated()
        return self._close(writer, stop)


class Progress:
    """What the terminal shows of a run: a status line every 10 s (step, speed, recent return, epsilon), and the speed
    at the end, overall and once learning started (the training-phase SPS that benchmarks/ compares)."""

    def __init__(self, step: int):
        self.start_step, self.start_time = step, time.time()
        self.last_print = self.start_time
        self.learning_since = None  # (step, time) of the first gradient update

    def sps(self, step: int) -> int:
        return int((step - self.start_step) / (time.time() - self.start_time))

    def learning(self, step: int) -> None:
        """Called at each update: the first one starts the training phase's clock."""
        if self.learning_since is None:
            self.learning_since = (step, time.time())

    def status(self, step: int, total_steps: int, recent_returns, epsilon: float) -> None:
        if time.time() - self.last_print > 10:
            self.last_print = time.time()
            mean_return = f"{np.mean(recent_returns):.1f}" if recent_returns else "-"
            print(
                f"step {step:>9,}/{total_steps:,}  SPS {self.sps(step):>5}  "
                f"return (last {len(recent_returns)} games) {mean_return:>6}  epsilon {epsilon:.3f}",
                flush=True,
            )

    def summary(self, step: int) -> None:
        elapsed = time.time() - self.start_time
        line = f"{step - self.start_step:,} steps in {elapsed:.1f} s ({(step - self.start_step) / elapsed:.1f} SPS"
        if self.learning_since is not None:
            first_step, began = self.learning_since
            line += f", {(step - first_step) / (time.time() - began):.1f} SPS once learning started"
        print(line + ")")


# What each wrapper carries from one step to the next (its other attributes are settings, or scratch each step
# rewrites); the frame stack, which Resumable saves as well, is the observation's frames
WRAPPER_STATE = {
    "RecordEpisodeStatistics": ("episode_returns", "episode_lengths", "episode_count"),
    "EpisodicLifeEnv": ("lives", "was_real_done"),
    "TimeLimit": ("_elapsed_steps",),
    "RecordGames": ("games_started",),
    "ReportGamesEndedInReset": ("pending",),
    "LastAction": ("action",),
}


class Resumable(gym.Wrapper):
    """Reads out, and puts back, what the wrapped env's next steps depend on: the emulator with its RNG and its previous
    action (which sticky actions repeat), the no-op RNG,
    the action space's RNG, the frame stack, and the wrappers' state (the game in progress, its lives, records not yet
    reported). It is the outermost wrapper of the training envs, whose processes run these methods for a checkpoint."""

    def save_state(self) -> dict:
        state = {
            "emulator": self.unwrapped.ale.cloneState(include_rng=True).serialize(),
            "np_random": self.unwrapped.np_random.bit_generator.state,
            "action_space": self.action_space.np_random.bit_generator.state,
        }
        for wrapper in wrappers(self.env):
            name = type(wrapper).__name__
            state |= {f"{name}.{a}": getattr(wrapper, a) for a in WRAPPER_STATE.get(name, ())}
            if isinstance(wrapper, gym.wrappers.FrameStackObservation):
                state["frame_stack"] = torch.from_numpy(np.stack(wrapper.obs_queue))
        return state

    def restore_state(self, state: dict, seed: int) -> None:
        """Put this new env into a saved state. A reset comes first (its wrappers need one), with the videos paused:
        that game is undone at once."""
        recorders = [wrapper for wrapper in wrappers(self.env) if isinstance(wrapper, RecordGames)]
        for recorder in recorders:
            recorder.paused = True
            # the games so far (the reset counts the one in progress), for a checkpoint that kept no count of its own
            recorder.games_started = state["RecordEpisodeStatistics.episode_count"]
        self.reset(seed=seed)
        for recorder in recorders:
            recorder.paused = False
        if "LastAction.action" in state:  # the emulator's previous action, which sticky actions repeat: its state
            for _ in range(32):  # leaves it out, and restoreState() undoes these frames (and their RNG draws)
                self.unwrapped.step(state["LastAction.action"])
        self.unwrapped.ale.restoreState(ale_py.ALEState(state["emulator"]))
        self.unwrapped.np_random.bit_generator.state = state["np_random"]
        self.action_space.np_random.bit_generator.state = state["action_space"]
        for wrapper in wrappers(self.env):
            for attribute in WRAPPER_STATE.get(type(wrapper).__name__, ()):
                if (key := f"{type(wrapper).__name__}.{attribute}") in state:  # a run may add or drop videos on resume
                    setattr(wrapper, attribute, state[key])
            if isinstance(wrapper, gym.wrappers.FrameStackObservation):
                wrapper.obs_queue = deque(state["frame_stack"].numpy().copy(), maxlen=FRAME_STACK)


if __name__ == "__main__":
    try:
        sys.exit(main(tyro.cli(Args), flags_given(sys.argv[1:])))
    except KeyboardInterrupt:  # before main() takes over the signals: just stop
        sys.exit(130)
