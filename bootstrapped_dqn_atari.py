"""Bootstrapped DQN on Atari: Osband, Blundell, Pritzel and Van Roy 2016, "Deep Exploration via Bootstrapped DQN".

Parent: double_dqn_atari.py. Each head learns with its own Double-DQN target (its online head picks the next
action, its target head scores it), which is how this project reads the paper's Atari agent. What changes:
- the network: K heads (default 10), each the Nature 512-unit hidden layer and output, on one shared Nature
  conv torso. All heads run as one batched operation: one matrix product for the hidden layers, one batched
  product (einsum) for the outputs. Acting computes the acting head alone;
- exploration: at the start of every whole game one head is drawn uniformly and the agent acts greedily with
  it until the game ends. Following one randomly drawn value function for a whole game is the paper's "deep"
  exploration, so epsilon is 0 by default (the flags still work). Before the run's first update (--learning-starts) the
  untrained heads would act arbitrarily anyway, so the agent acts uniformly at random to fill the replay (where
  its parent's epsilon is still close to 1); a resumed run that refills its memory acts with its trained heads;
- bootstrapping: each stored transition carries a Bernoulli(--mask-prob) mask with one bit per head, and a head
  learns only from the transitions its mask includes: its loss is the mean squared TD error over them.
  The paper's Atari runs used p = 1 (every head sees all data; the heads then differ by their random
  initialization and the order they see data in) and report p = 0.5 as similar; the default here is p = 1;
- the torso receives the sum of the K heads' gradients, normalized once by 1/K, as in the paper;
- evaluation: the heads vote, each for its greedy action; the most votes wins, ties go to the largest Q summed
  over heads. `eval/head_agreement` logs the share of heads that voted for the action played, over the steps that
  played the vote (an epsilon step plays a random action);
- speed: the heads' 64 MB gradient, fresh each update, is cheaper on 2 MB memory pages (at the end of the file).

    python bootstrapped_dqn_atari.py --env-id BreakoutNoFrameskip-v4 --cuda

Above the `# Run management` line is the algorithm, top to bottom: the arguments, the Atari preprocessing (SB3's
wrappers), the network with K heads, a replay buffer that stores every frame once and its masked version,
evaluation by vote, and the loop (main). Below it is what a reader of the algorithm can skip. Logs:
runs/{run_name}, with CleanRL's scalar names.

Copyright (c) 2026 The DQN family authors. MIT License: keep this line in copies (full text: LICENSE).
"""

import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal, NamedTuple

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
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
    """The algorithm's flags; the running flags (checkpoints, resume, play, tracking, video) follow them (RunArgs)."""

    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """set `torch.backends.cudnn.deterministic` (on by default; --no-torch-deterministic turns it off)"""
    cuda: bool = True
    """use the GPU when there is one; without one, say so and run on the CPU"""
    env_id: str = "BreakoutNoFrameskip-v4"
    """the id of an Atari game: `*NoFrameskip-v4` (no sticky actions) or `ALE/*-v5` (sticky actions 0.25)"""
    repeat_action_probability: float | None = None
    """sticky actions: the chance the emulator repeats the previous action (None: the id's, 0 for v4, 0.25 for v5)"""
    full_action_space: bool = False
    """use all 18 Atari actions in every game, not the game's minimal set"""
    episodic_life: bool = True
    """a lost life ends the learning episode (Nature, CleanRL); --no-episodic-life: game over only (Machado et al.)"""
    total_timesteps: int = 10_000_000
    """total agent steps (each is 4 emulator frames)"""
    schedule_timesteps: int | None = None
    """the steps epsilon's schedule is a fraction of (None: --total-timesteps; a resumed or extended run keeps its own)"""
    learning_rate: float = 1e-4
    """the learning rate of the Adam optimizer"""
    num_envs: int = 1
    """the number of envs stepping in parallel, each in a process of its own; steps count the transitions of all"""
    buffer_size: int = 1_000_000
    """the replay memory size, in frames: one per transition, plus one per episode start"""
    buffer_device: Literal["cpu", "cuda"] = "cpu"
    """where the replay frames live; `cuda` keeps them on the GPU and saves a host-to-device copy per batch"""
    bf16: bool = False
    """run the training forward passes under bfloat16 autocast (weights, Adam, loss and evaluation stay float32)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 1.0
    """the target network update rate (1.0 copies the weights)"""
    target_network_frequency: int = 1000
    """the number of steps between target network updates"""
    batch_size: int = 32
    """the batch size of samples from the replay memory"""
    start_e: float = 0.0
    """the starting epsilon for exploration (0: the acting head explores; it is drawn anew for every game)"""
    end_e: float = 0.0
    """the ending epsilon for exploration"""
    exploration_fraction: float = 0.10
    """the fraction of --schedule-timesteps it takes to go from start_e to end_e"""
    learning_starts: int = 80_000
    """the steps before learning starts, from where the replay memory began filling (at least --num-envs)"""
    train_frequency: int = 4
    """the number of steps between gradient updates"""
    eval_episodes: int = 10
    """whole games played at the end to evaluate the agent (0 to skip)"""
    eval_epsilon: float = 0.05
    """the epsilon of the evaluation games"""
    n_heads: int = 10
    """K, the number of bootstrapped Q-heads on the shared torso"""
    mask_prob: float = 1.0
    """p: each head learns from each transition with probability p (the paper's Atari runs: 1.0; 0.5 is its alternative)"""

    def __post_init__(self):
        if self.schedule_timesteps is None:  # a new run's schedule spans the run; a resumed run's is in its flags
            self.schedule_timesteps = self.total_timesteps


# Environment


def make_env(args: Args, seed: int, video_folder: str | None = None, max_episode_steps: int | None = None) -> gym.Env:
    """The Nature-DQN preprocessing: observations are the last 4 grey 84x84 frames, as uint8 (4, 84, 84).

    A step is 4 emulator frames (max-pooled over the last two), rewards are clipped to their sign, and a lost life
    ends the learning episode while the game goes on (unless --no-episodic-life); `info["episode"]` reports every whole
    game. An `ALE/*-v5` id is made with frameskip 1 (MaxAndSkipEnv skips) and keeps its sticky actions and its
    108,000-frame limit. `max_episode_steps` (in emulator frames) cuts games shorter, as a truncation.
    """
    emulator = {"frameskip": 1, "full_action_space": args.full_action_space}
    if args.repeat_action_probability is not None:
        emulator["repeat_action_probability"] = args.repeat_action_probability
    env = gym.make(args.env_id, max_episode_steps=max_episode_steps, **emulator)
    env = emulator_wrappers(env, video_folder)  # below: the videos, and the last action for an exact resume
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
    env = ReportGamesEndedInReset(env)  # below: a game that ended inside a reset is still reported
    env.action_space.seed(seed)
    return env


def make_envs(
    args: Args, video_folder: str | None = None, saved_states: list | None = None
) -> gym.vector.AsyncVectorEnv:
    """--num-envs copies of make_env's env, each stepping in a process of its own while the network learns. Env k is
    seeded with --seed + k; env 0 records the videos; Resumable (below) saves their states for checkpoints. Autoreset
    is gymnasium's SAME_STEP: the step that ends an episode resets the env and returns the next episode's first
    observation, with the final one in infos["final_obs"], so every step of every env is one transition."""

    def env_fn(k: int):
        video = video_folder if k == 0 else None
        return lambda: Resumable(make_env(args, args.seed + k, video), saved_states and saved_states[k], args.seed + k)

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


# Agent


class QNetwork(nn.Module):
    """The Nature-DQN conv torso, shared by n_heads heads that are each a 512-unit hidden layer and one Q per action."""

    def __init__(self, n_actions: int, n_heads: int):
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
        self.n_heads = n_heads
        # the heads' layers stacked, so that all heads are one batched product; nn.Linear's initialization
        self.hidden = nn.Linear(3136, n_heads * 512)  # each head's 512 units side by side
        bound = 512**-0.5
        self.out_weight = nn.Parameter(torch.empty(n_heads, 512, n_actions).uniform_(-bound, bound))
        self.out_bias = nn.Parameter(torch.empty(n_heads, n_actions).uniform_(-bound, bound))

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        # frames stay uint8 until here; channels-last is the faster layout for these convolutions,
        # and changing the layout before converting to float moves 4 times fewer bytes
        x = obs.contiguous(memory_format=torch.channels_last).float().div_(255.0)
        # K heads each send their gradient into the torso; the paper normalizes the sum by 1/K
        return scale_gradient(self.torso(x), 1.0 / self.n_heads)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values of every head: (batch, n_heads, n_actions)."""
        hidden = F.relu(self.hidden(self.features(obs))).view(len(obs), self.n_heads, 512)
        return torch.einsum("bkh,kha->bka", hidden, self.out_weight) + self.out_bias

    def head_q_values(self, obs: torch.Tensor, heads) -> torch.Tensor:
        """Q-values of one head per observation, (batch, n_actions): row b is head heads[b]'s. Acting reads only the
        acting heads' weights, not all K."""
        features = self.features(obs)
        q_values = []
        for row, head in enumerate(heads):
            units = slice(head * 512, (head + 1) * 512)
            hidden = F.relu(F.linear(features[row : row + 1], self.hidden.weight[units], self.hidden.bias[units]))
            q_values.append(hidden @ self.out_weight[head] + self.out_bias[head])
        return torch.cat(q_values)


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x unchanged in the forward pass; the gradient flowing back through it is multiplied by `scale`."""
    return x * scale + x.detach() * (1.0 - scale)


def masked_head_losses(q_taken: torch.Tensor, td_target: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Each head's mean squared TD error over the transitions its mask includes: (n_heads,).

    q_taken, td_target and masks are (batch, n_heads); the mask multiplies each squared error before any
    averaging, so a transition a head's mask excludes sends that head no gradient.
    """
    squared_errors = (q_taken - td_target).pow(2) * masks
    return squared_errors.sum(dim=0) / masks.sum(dim=0).clamp(min=1.0)


def vote(q_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each head votes for its greedy action; the most votes win, ties go to the largest Q summed over heads.

    q_values: (batch, n_heads, n_actions). Returns the actions (batch,) and the share of heads that voted for them.
    """
    n_actions = q_values.shape[-1]
    votes = F.one_hot(q_values.argmax(dim=-1), n_actions).sum(dim=1)  # (batch, n_actions)
    tied = votes == votes.max(dim=1, keepdim=True).values
    actions = q_values.sum(dim=1).masked_fill(~tied, -torch.inf).argmax(dim=1)
    return actions, votes.gather(1, actions[:, None]).squeeze(1) / q_values.shape[1]


class HeadPerGame:
    """Which head acts in each env: one drawn uniformly at the start of every whole game, kept through its lost lives."""

    def __init__(self, n_heads: int, n_envs: int, rng: np.random.Generator):
        self.n_heads = n_heads
        self.rng = rng
        self.heads = [int(head) for head in rng.integers(n_heads, size=n_envs)]

    def after_games(self, envs: list[int]) -> None:
        """A whole game ended in each of these envs (a lost life only ends the learning episode)."""
        for k in envs:
            self.heads[k] = int(self.rng.integers(self.n_heads))


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

    Each env writes a stream of its own, a circle of capacity // n_streams slots, so a stack never mixes envs. add()
    takes one transition per env. An episode's first observation takes a slot of its own; after that each transition
    adds one slot, its next observation, so a truncated episode's last transition bootstraps from its final one.
    `began` is the step of the first transition: 0, or where a resumed run without its memory refills it.
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
        self.began = 0

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

    def start_streams(self, obs: np.ndarray, step: int) -> None:
        """Begin refilling at `step` in mid-game: each stream starts with its env's observation whole, its 4 frames as
        the last 4 slots of one episode, so that the stacks of the transitions that follow are what the agent saw."""
        for t in range(FRAME_STACK):
            self._write_frames(np.arange(len(self.pos)), obs[:, t], t)
        self.continues_episode[:] = True
        self.began = step

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


class MaskedFrameReplayBuffer(FrameReplayBuffer):
    """The frame-once buffer, plus each transition's bootstrap mask: one byte per head, 1 where the head learns from it."""

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, int],
        n_actions: int,
        storage_device: torch.device,
        n_streams: int,
        n_heads: int,
    ):
        super().__init__(capacity, frame_shape, n_actions, storage_device, n_streams)
        self.masks = np.zeros((self.capacity, n_heads), dtype=np.bool_)

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        masks: np.ndarray,
    ) -> np.ndarray:
        i = super().add(obs, actions, rewards, next_obs, terminated, truncated)
        self.masks[i] = masks
        return i

    def get(self, i: np.ndarray, device: torch.device) -> tuple[Batch, torch.Tensor]:
        """The transitions starting at slots i, and their masks as float (len(i), n_heads); sample() returns both."""
        return super().get(i, device), to_device(torch.from_numpy(self.masks[i].astype(np.float32)), device)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """x on `device`. From the CPU to a GPU it goes through pinned memory, so the copy does not make the CPU wait;
    PyTorch's pinned-memory cache does not reuse that memory until the copy is done."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


# Evaluation


def evaluate(
    q_network: QNetwork, env: gym.Env, n_games: int, epsilon: float, seed: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """Play n_games whole games (all lives) by the heads' vote, epsilon-greedily; return their unclipped scores
    and, per game, the mean share of heads that voted for the action played, over the steps that played the vote
    (nan for a game that played none)."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    scores, agreements, game_agreement = [], [], []
    while len(scores) < n_games:
        with torch.inference_mode():
            voted, agreement = vote(q_network(torch.from_numpy(obs).to(device)[None]))
        if rng.random() < epsilon:  # a random action: the heads' agreement says nothing about it
            action = int(rng.integers(env.action_space.n))
        else:
            action = int(voted.item())
            game_agreement.append(agreement.item())
        obs, _, terminated, truncated, info = env.step(action)
        if "episode" in info:
            scores.append(float(info["episode"]["r"]))
            agreements.append(float(np.mean(game_agreement)) if game_agreement else float("nan"))
            game_agreement = []
        if (terminated or truncated) and len(scores) < n_games:  # no game begun after the last
            obs, _ = env.reset()
    return scores, agreements


def evaluate_and_log(
    q_network: QNetwork, args: Args, device: torch.device, writer: SummaryWriter, video_folder: str | None
) -> None:
    """Play --eval-episodes whole games by the heads' vote, log them as `eval/episodic_return` (with
    `eval/head_agreement`) and print them."""
    eval_env = make_env(args, args.seed + 1, video_folder)
    scores, agreements = evaluate(
        q_network.eval(), eval_env, args.eval_episodes, args.eval_epsilon, args.seed + 1, device
    )
    eval_env.close()
    for game, (score, agreement) in enumerate(zip(scores, agreements)):
        writer.add_scalar("eval/episodic_return", score, game)
        writer.add_scalar("eval/head_agreement", agreement, game)
    games = f"{len(scores)} game{'s' if len(scores) != 1 else ''}"
    print(f"evaluation over {games} at epsilon {args.eval_epsilon}: mean {np.mean(scores):.1f}, scores {scores}")
    played = [agreement for agreement in agreements if not np.isnan(agreement)]  # games that played the vote
    share = f"{np.mean(played):.2f}" if played else "- (no game played it)"
    print(f"share of heads agreeing with the vote, where it was played: {share}")


# Training


def main(args: Args, run) -> int:
    """Train (or, with --eval-only, play a saved agent); returns the exit code. `run` is the bookkeeping below the
    `# Run management` line: the run's folder and log, checkpoints and --resume, signals, the status line."""
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    rng = np.random.default_rng(args.seed)
    if run.plays:  # --eval-only, or a finished run stopped before its evaluation: play, no training
        return run.play(QNetwork(run.n_actions, args.n_heads).to(device).to(memory_format=torch.channels_last), device)

    envs = make_envs(args, run.video_folder, run.env_states)
    n_actions = int(envs.single_action_space.n)
    q_network = QNetwork(n_actions, args.n_heads).to(device).to(memory_format=torch.channels_last)
    target_network = QNetwork(n_actions, args.n_heads).to(device).to(memory_format=torch.channels_last)
    target_network.load_state_dict(q_network.state_dict())
    # the fused Adam kernel updates all parameters in one pass; noticeably faster on CPU too
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
    frame_shape = envs.single_observation_space.shape[1:]
    rb = MaskedFrameReplayBuffer(
        args.buffer_size, frame_shape, n_actions, torch.device(args.buffer_device), args.num_envs, args.n_heads
    )
    acting = HeadPerGame(args.n_heads, args.num_envs, rng)
    recent_returns = deque(maxlen=20)
    parts = {"q_network": q_network, "target_network": target_network, "optimizer": optimizer, "replay": rb}
    parts["acting"] = acting  # the head playing each env's game in progress
    # step 0 and the envs' first observations; or, with --resume, the checkpoint's step, with `parts` put back
    global_step, obs, writer = run.start(envs, device, rng, recent_returns, parts)
    # learning starts once the memory holds --learning-starts transitions, and no sooner than one from every env
    learning_starts = rb.began + max(args.learning_starts, args.num_envs)
    start_step, start_time = global_step, time.time()

    # Each pass is one step of every env: --num-envs transitions, numbered global_step, global_step + 1, ...
    while global_step < args.total_timesteps and not run.stopping():  # Ctrl-C, SIGTERM: stop between two steps
        epsilon = linear_schedule(
            args.start_e, args.end_e, args.exploration_fraction * args.schedule_timesteps, global_step
        )
        # act: each env's acting head, greedily (epsilon-greedy if epsilon is set); at random before the run's first
        # update, when the heads are untrained (a resumed run refilling its memory has trained heads: they act)
        actions = rng.integers(n_actions, size=args.num_envs)
        explore = (rng.random(args.num_envs) < epsilon) | (global_step < max(args.learning_starts, args.num_envs))
        if not explore.all():
            with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=args.bf16):
                q_values = q_network.head_q_values(to_device(torch.from_numpy(obs), device), acting.heads)
                greedy = q_values.argmax(1).cpu().numpy()
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
                # unlike the parent's, this buffer's sample() (through its get()) also returns the batch's masks
                data, masks = rb.sample(args.batch_size, rng, device)
                # --bf16: the forward passes in bfloat16 (the loss in float32); no weight-cast cache, which in PyTorch
                # 2.10 and older cut the online pass off from its gradient (pytorch/pytorch#165068)
                with torch.autocast(device.type, torch.bfloat16, enabled=args.bf16, cache_enabled=False):
                    with torch.no_grad():
                        # every head's own Double-DQN target: (batch, n_heads)
                        next_q_online, next_q_target = q_network(data.next_obs), target_network(data.next_obs)
                        td_target = double_dqn_target(
                            next_q_online, next_q_target, data.rewards[:, None], data.terminated[:, None], args.gamma
                        )
                    q_taken = (
                        q_network(data.obs)
                        .gather(2, data.actions[:, None, None].expand(-1, args.n_heads, 1))
                        .squeeze(2)
                    )
                    head_losses = masked_head_losses(q_taken, td_target, masks)
                    loss = head_losses.mean()  # logged: one head's loss on average, the scale the other scripts log

                optimizer.zero_grad(set_to_none=True)
                head_losses.sum().backward()  # every head learns from its own loss; the torso's 1/K is in the network
                optimizer.step()

                if step % 100 == 0:  # read after step_wait, so that logging never makes the CPU wait for a GPU here
                    losses_to_log = (step, loss.detach(), q_taken.detach().mean())
            if step % args.target_network_frequency == 0:
                with torch.no_grad():
                    for target_param, param in zip(target_network.parameters(), q_network.parameters()):
                        target_param.lerp_(param, args.tau)  # target <- target + tau * (online - target)

        next_obs, rewards, terminated, truncated, infos = envs.step_wait()
        games = games_ended(infos)
        acting.after_games([k for k, _, _ in games])  # a new game, a new head
        for k, game_return, game_length in games:  # whole games, with their unclipped scores
            recent_returns.append(game_return)
            writer.add_scalar("charts/episodic_return", game_return, global_step + k)
            writer.add_scalar("charts/episodic_length", game_length, global_step + k)
        if losses_to_log is not None:
            step, loss, q_mean = losses_to_log
            writer.add_scalar("losses/td_loss", loss.item(), step)
            writer.add_scalar("losses/q_values", q_mean.item(), step)
            writer.add_scalar("charts/SPS", int((step - start_step) / (time.time() - start_time)), step)
            writer.add_scalar("charts/epsilon", epsilon, step)

        # store: an env whose episode ended has begun the next one; the transition ends at the final observation
        masks = rng.random((args.num_envs, args.n_heads)) < args.mask_prob  # which heads learn from each transition
        rb.add(obs, actions, rewards, final_observations(next_obs, infos), terminated, truncated, masks)
        obs = next_obs
        global_step += args.num_envs
        run.step_done(global_step, obs, epsilon, learning_starts)  # the status line, and a checkpoint when one is due

    # the last checkpoint, the model (--save-model), the evaluation (--eval-episodes), what to do next
    return run.end(global_step, q_network, device)


# Run management: input checks, videos, checkpoints and --resume, signals, W&B, the status line. The algorithm is all
# above; main hands over to what is here in the few lines that name `run`.

import atexit
import contextlib
import copy
import importlib.util
import itertools
import multiprocessing
import multiprocessing.util  # noqa: F401  (its exit handler is registered now: see kill_env_processes)
import signal
import sys
import tempfile

import cv2
import tyro


@dataclass
class RunArgs(Args):
    """The algorithm's flags (Args), then the running flags: checkpoints, resume, play, tracking, video."""

    checkpoint_frequency: int = 2_000_000
    """steps between checkpoints of the whole run to `runs/{run_name}/checkpoint.pt`, for --resume (0: none)"""
    checkpoint_buffer: bool = True
    """keep the replay memory in checkpoints (--no-checkpoint-buffer: a resumed run refills it first)"""
    keep_final_buffer: bool = False
    """keep the replay memory in a finished run's last checkpoint too, to extend the run exactly later"""
    resume: str | None = None
    """continue the run in this folder (`runs/{run_name}`) from its checkpoint, with its flags"""
    load_model: str | None = None
    """a model saved by --save-model, or a checkpoint, to play with --eval-only"""
    eval_only: bool = False
    """play --eval-episodes games with --load-model's agent, without training"""
    save_model: bool = False
    """save the Q-network to `runs/{run_name}/{exp_name}.pt` at the end, or on Ctrl-C"""
    capture_video: bool = False
    """record games 0, 1, 8, 27, ... and the evaluation games as mp4 files in `videos/{run_name}`"""
    track: bool = False
    """mirror the run to Weights & Biases (needs wandb 0.19 or newer): its scalars, its flags, its videos"""
    wandb_project_name: str = "dqn-family"
    """the W&B project of --track"""
    wandb_entity: str | None = None
    """the W&B entity (team or user) of --track; None: yours"""


def check_args(args: RunArgs) -> None:
    """Raise ValueError naming the first argument that cannot work."""
    positive = [
        "n_heads",
        "total_timesteps",
        "schedule_timesteps",
        "num_envs",
        "buffer_size",
        "batch_size",
        "learning_rate",
    ]
    for name in positive + ["train_frequency", "target_network_frequency"]:
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("learning_starts", "eval_episodes", "checkpoint_frequency"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    fractions = ["gamma", "tau", "start_e", "end_e", "exploration_fraction", "eval_epsilon"]
    for name in fractions + ["repeat_action_probability", "mask_prob"]:
        if getattr(args, name) is not None and not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    if args.seed < 0:  # gymnasium's seeds are not negative
        raise ValueError(f"--seed must not be negative, got {args.seed}")
    if "/" in args.exp_name or args.exp_name in ("", ".", ".."):  # it names the run's folder and its model file
        raise ValueError(f"--exp-name {args.exp_name!r} cannot name a folder: no '/', not empty")
    if args.mask_prob == 0:
        raise ValueError("--mask-prob must be above 0, or no head would ever learn")
    if args.buffer_size < args.batch_size:
        raise ValueError(f"--buffer-size ({args.buffer_size}) must be at least --batch-size ({args.batch_size})")
    if args.buffer_size < (FRAME_STACK + 1) * args.num_envs:  # a stack and its next frame, in every env's stream
        raise ValueError(
            f"--buffer-size must be at least {FRAME_STACK + 1} per env ({(FRAME_STACK + 1) * args.num_envs})"
        )
    if args.eval_only != (args.load_model is not None):
        raise ValueError("--eval-only and --load-model go together (to continue training a run, use --resume)")
    if args.eval_only and args.eval_episodes == 0:
        raise ValueError("--eval-only needs --eval-episodes above 0")
    if args.buffer_device == "cuda" and not (args.cuda and torch.cuda.is_available()):
        raise ValueError("--buffer-device cuda needs --cuda and a CUDA GPU")
    if args.track and importlib.util.find_spec("wandb") is None:
        raise ValueError("--track needs wandb: pip install 'wandb>=0.19'")
    try:
        spec = gym.spec(args.env_id)
    except gym.error.Error as e:
        v5 = f"ALE/{args.env_id}" if f"ALE/{args.env_id}" in gym.registry else None  # Breakout-v5 is ALE/Breakout-v5
        raise ValueError(
            f"unknown --env-id {args.env_id!r}: " + (f"did you mean {v5}?" if v5 else str(e).splitlines()[0])
        ) from None
    if spec.entry_point != "ale_py.env:AtariEnv":
        raise ValueError(f"--env-id {args.env_id!r} is not an Atari environment; try BreakoutNoFrameskip-v4")
    if spec.kwargs.get("frameskip") != 1 and (spec.namespace, spec.version) != ("ALE", 5):
        raise ValueError(f"--env-id {args.env_id!r} skips frames itself; use its NoFrameskip-v4 or ALE/...-v5 version")


def emulator_wrappers(env: gym.Env, video_folder: str | None) -> gym.Env:
    """What make_env puts on the emulator besides the algorithm: LastAction, for --resume, and RecordGames."""
    return RecordGames(LastAction(env), video_folder) if video_folder else LastAction(env)


class LastAction(gym.Wrapper):
    """The last action sent to the emulator (a reset's no-ops and FIRE too): sticky actions repeat it, and ALE's saved
    state leaves it out, so Resumable puts it back. Out of reach: a step whose 4 frames all repeated an older action
    (p^4 at sticky actions p: 0.4% at 0.25, where the action changed); the emulator then remembers that one."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.action = 0  # a reset leaves NOOP as the emulator's previous action

    def reset(self, **kwargs):
        self.action = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        self.action = int(action)
        return self.env.step(action)


class RecordGames(gym.Wrapper):
    """Write the RGB frames of games 0, 1, 8, 27, ..., 1000, 2000, ... (RecordVideo's schedule) to mp4 files, with
    OpenCV (RecordVideo needs moviepy). While `paused` it opens no file: a resumed env's reset is undone at once."""

    def __init__(self, env: gym.Env, folder: str):
        super().__init__(env)
        self.folder, self.games_started, self.writer, self.paused = folder, 0, None, False

    @staticmethod
    def is_recorded(game: int) -> bool:
        return round(game ** (1 / 3)) ** 3 == game if game < 1000 else game % 1000 == 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.close_writer()
        game = self.games_started
        if self.is_recorded(game) and not self.paused:
            os.makedirs(self.folder, exist_ok=True)
            path, take = os.path.join(self.folder, f"game-{game}.mp4"), 1
            while os.path.exists(path):  # never over a file: an extended run's evaluation plays game 0 again
                path, take = os.path.join(self.folder, f"game-{game}.{take + 1}.mp4"), take + 1
            self.writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 60, obs.shape[1::-1])
        self.games_started += 1
        return self.write(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self.write(obs), reward, terminated, truncated, info

    def write(self, frame: np.ndarray) -> np.ndarray:
        if self.writer is not None:
            self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        return frame

    def close_writer(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    def close(self):
        self.close_writer()
        super().close()


def wrappers(env: gym.Env) -> list[gym.Wrapper]:
    """env's wrappers, outermost first."""
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


class ReportGamesEndedInReset(gym.Wrapper):
    """Pass on the record of a game that ended inside reset(), which SB3's wrappers would drop: EpisodicLifeEnv's
    no-op and FireResetEnv's FIRE are steps taken in reset(), and a time limit can end the game on one."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        [self.stats] = [w for w in wrappers(env) if isinstance(w, gym.wrappers.RecordEpisodeStatistics)]
        self.pending = []  # records of games that ended in a reset, not yet reported, oldest first

    def reset(self, **kwargs):
        games_before, stats = self.stats.episode_count, self.stats
        obs, info = self.env.reset(**kwargs)
        for k in range(min(stats.episode_count - games_before, len(stats.return_queue)), 0, -1):
            self.pending.append({"r": stats.return_queue[-k], "l": stats.length_queue[-k], "t": stats.time_queue[-k]})
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.pending and "episode" not in info:
            info = {**info, "episode": self.pending.pop(0)}
        return obs, reward, terminated, truncated, info


# What each wrapper carries from one step to the next (the frame stack is saved too: the observation's frames)
WRAPPER_STATE = {
    "RecordEpisodeStatistics": ("episode_returns", "episode_lengths", "episode_count"),
    "MaxAndSkipEnv": ("_obs_buffer",),  # the last two frames, which a step that ends the game at once max-pools
    "EpisodicLifeEnv": ("lives", "was_real_done"),
    "TimeLimit": ("_elapsed_steps",),
    "RecordGames": ("games_started",),
    "ReportGamesEndedInReset": ("pending",),
    "LastAction": ("action",),
}


class Resumable(gym.Wrapper):
    """The outermost wrapper of a training env, in its process, which ignores Ctrl-C and SIGTERM (they reach the
    whole process group; stopping is the main process's to do). It reads out for a checkpoint, and puts back on
    --resume, all that the env's next steps depend on: the emulator with its RNG and previous action, the no-op and
    action space RNGs, the frame stack, the wrappers' state."""

    def __init__(self, env: gym.Env, saved_state: dict | None = None, seed: int | None = None):
        super().__init__(env)
        if multiprocessing.parent_process() is not None:  # AsyncVectorEnv also makes env 0 here, to read its spaces
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if saved_state is not None:
                self.restore_state(saved_state, seed)

    def save_state(self) -> dict:
        """The state, with numpy arrays: the main process makes them tensors (torch work in a worker forked from a
        process that had run torch on several threads can hang)."""
        state = {
            "emulator": self.unwrapped.ale.cloneState(include_rng=True).serialize(),
            "np_random": self.unwrapped.np_random.bit_generator.state,
            "action_space": self.action_space.np_random.bit_generator.state,
        }
        for wrapper in wrappers(self.env):
            name = type(wrapper).__name__
            for attribute in WRAPPER_STATE.get(name, ()):
                value = getattr(wrapper, attribute)
                state[f"{name}.{attribute}"] = value.copy() if isinstance(value, np.ndarray) else value
            if isinstance(wrapper, gym.wrappers.FrameStackObservation):
                state["frame_stack"] = np.stack(wrapper.obs_queue)
        return state

    def restore_state(self, state: dict, seed: int) -> None:
        """Put this new env into a saved state. A reset comes first (its wrappers need one), with the videos paused."""
        recorders = [wrapper for wrapper in wrappers(self.env) if isinstance(wrapper, RecordGames)]
        for recorder in recorders:  # the games so far, the one in progress counted by the reset (if the run had none)
            recorder.paused, recorder.games_started = True, state["RecordEpisodeStatistics.episode_count"]
        self.reset(seed=seed)
        for _ in range(32):  # the emulator's previous action, which sticky actions repeat; restoreState() undoes these
            self.unwrapped.step(state["LastAction.action"])
        self.unwrapped.ale.restoreState(ale_py.ALEState(state["emulator"]))
        self.unwrapped.np_random.bit_generator.state = state["np_random"]
        self.action_space.np_random.bit_generator.state = state["action_space"]
        for recorder in recorders:  # recording goes on from the next recorded game
            recorder.paused = False
        for wrapper in wrappers(self.env):
            for attribute in WRAPPER_STATE.get(type(wrapper).__name__, ()):
                if (key := f"{type(wrapper).__name__}.{attribute}") in state:  # a run may add or drop videos on resume
                    value = state[key]
                    setattr(wrapper, attribute, value.numpy().copy() if isinstance(value, torch.Tensor) else value)
            if isinstance(wrapper, gym.wrappers.FrameStackObservation):
                wrapper.obs_queue = deque(np.asarray(state["frame_stack"]), maxlen=FRAME_STACK)


class GracefulStop:
    """How a run ends. The first Ctrl-C (SIGINT) or SIGTERM (Slurm, `timeout`, `docker stop`) only sets `signum`: the
    loop finishes its step and stops, what was asked is saved, and the script exits with 128 + signum. A second
    signal, or one once `deferring` is off (the final evaluation: it says so, `leaving`), exits at once; so does a
    loop that has not come round within `grace_s` of the first (a hung env), unless it is `saving` or has ended. A crash
    prints its traceback and exits with 1. Every way out kills the env processes, which ignore SIGTERM, with which
    Python would end them, then wait forever."""

    def __init__(self, grace_s: int = 60):
        self.signum, self.deferring, self.grace_s, self.saving = None, True, grace_s, False
        self.looping, self.leaving = True, None
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)
        if hasattr(signal, "SIGALRM"):  # the grace timer; Windows has none
            signal.signal(signal.SIGALRM, self._give_up)
        # registered after multiprocessing's own exit handler (imported above), so that it runs before it; once
        atexit.unregister(kill_env_processes)
        atexit.register(kill_env_processes)

    def _handle(self, signum, frame):
        if self.signum is not None or not self.deferring:
            if self.leaving:
                print(self.leaving, file=sys.stderr)
            kill_env_processes()  # now: leaving the frame that holds the envs would wait on them first
            raise SystemExit(128 + signum)
        self.signum = signum
        if self.looping:  # after the loop, what is left (a save, an upload) is no hang
            alarm(self.grace_s)

    def _give_up(self, signum, frame):
        if self.saving:  # a save may take longer than the grace period, and is no hang: look again later
            return alarm(self.grace_s)
        print(f"error: the run did not stop within {self.grace_s} s of the signal; exiting unsaved", file=sys.stderr)
        kill_env_processes()
        raise SystemExit(128 + (self.signum or signal.SIGTERM))

    def requested(self) -> bool:
        """Whether a signal asked the run to stop; asked between two steps, which calls off the grace timer."""
        if self.signum is not None:
            alarm(0)
        return self.signum is not None


alarm = getattr(signal, "alarm", lambda seconds: 0)  # the grace timer's; Windows has none


def kill_env_processes() -> None:
    """Kill every child process multiprocessing started: in these scripts, the envs."""
    alarm(0)
    for process in multiprocessing.active_children():
        process.kill()


# Flags that a resumed run, or the evaluation of a saved agent, may change: where it runs, how long, what it records
# and keeps, how it is evaluated. Any other flag would change what the run learns, and must agree with the saved one.
CHANGEABLE_FLAGS = {"cuda", "buffer_device", "torch_deterministic", "capture_video", "save_model", "total_timesteps"}
CHANGEABLE_FLAGS |= {"eval_episodes", "eval_epsilon", "checkpoint_frequency", "checkpoint_buffer", "keep_final_buffer"}
CHANGEABLE_FLAGS |= {"track", "wandb_project_name", "wandb_entity"}
COMMAND_FLAGS = {"resume", "load_model", "eval_only"}  # what this command does: never taken from a saved file
CHANGEABLE_FLAGS |= COMMAND_FLAGS
SCRIPT = os.path.basename(__file__)
CHECKPOINT_FORMAT = 2  # what a checkpoint holds and how: 2 since --schedule-timesteps and part_state()


def write_atomically(path: str, contents: dict, stop: GracefulStop) -> None:
    """torch.save to a temp file, fsynced, then renamed over `path`: a kill at any instant leaves the old file or the
    new one, whole, and no temp file (a full disk, a second signal); the folder is fsynced for the rename."""
    stop.saving = True
    try:
        with open(path + ".tmp", "wb") as f:
            torch.save(contents, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(path + ".tmp")
        raise
    finally:
        stop.saving = False
    folder = os.open(os.path.dirname(path), os.O_RDONLY)
    os.fsync(folder)
    os.close(folder)


def load_saved(path: str) -> dict:
    """A model or checkpoint that this script saved, read back; ValueError saying what is wrong with any other file."""
    if os.path.isdir(path):
        files = ", ".join(sorted(name for name in os.listdir(path) if name.endswith(".pt"))) or "none"
        raise ValueError(f"{path} is a folder; name one of its saved files (.pt): {files}")
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


SLICE = 65536  # frames copied at once between a checkpoint and the replay memory (460 MB of 84x84 frames)


def part_state(part) -> dict:
    """A checkpoint's copy of one of the loop's objects: its state_dict() where it has one (networks, optimizer), else
    its attributes: arrays (as tensors), numbers, strings, lists of numbers, and the objects it holds (PER's sum tree),
    all that torch.load(weights_only=True) reads back. The loop's RNG is saved apart; any other kind is an error, not a
    silent gap. A replay memory that is not full keeps its written frames only, gathered to the host in slices."""
    if hasattr(part, "state_dict"):
        return part.state_dict()
    state = {}
    for name, value in vars(part).items():
        if name == "frames" and part.size.sum() < part.capacity:  # a full memory's are saved as they are (on a GPU,
            # torch.save copies them to the host once)
            written = torch.from_numpy(written_slots(part, part.size))
            state[name] = torch.empty((len(written), *value.shape[1:]), dtype=value.dtype)  # on the host
            for begin in range(0, len(written), SLICE):
                state[name][begin : begin + SLICE] = value[written[begin : begin + SLICE].to(value.device)]
        elif isinstance(value, np.ndarray):
            state[name] = torch.from_numpy(value.copy())
        elif isinstance(value, np.generic):
            state[name] = value.item()
        elif isinstance(value, (torch.Tensor, bool, int, float, str, type(None))):
            state[name] = value
        elif isinstance(value, list) and all(isinstance(item, (bool, int, float)) for item in value):
            state[name] = list(value)
        elif hasattr(value, "__dict__") and not isinstance(value, np.random.Generator):
            state[name] = part_state(value)
        elif not isinstance(value, np.random.Generator):
            raise TypeError(f"a checkpoint cannot keep {type(part).__name__}.{name}, a {type(value).__name__}")
    return state


def load_part_state(part, state: dict) -> None:
    """Put back what part_state() saved; the frames in slices, so that a memory on a GPU is never copied there whole."""
    if hasattr(part, "load_state_dict"):
        return part.load_state_dict(copy.deepcopy(state))  # copied out of the memory-mapped checkpoint
    for name, value in state.items():
        if isinstance(value, dict):
            load_part_state(getattr(part, name), value)
        elif isinstance(getattr(part, name), np.ndarray):
            getattr(part, name)[...] = value.numpy()
        elif name == "frames":
            written = written_slots(part, state["size"].numpy())
            for begin in range(0, len(written), SLICE):
                rows = torch.from_numpy(written[begin : begin + SLICE]).to(part.frames.device)
                part.frames[rows] = value[begin : begin + SLICE].to(part.frames.device)
        else:
            setattr(part, name, value)


def written_slots(rb: FrameReplayBuffer, size: np.ndarray) -> np.ndarray:  # each stream fills its slots in order
    return np.concatenate([first + np.arange(n) for first, n in zip(rb.first_slot, size)])


class Run:
    """Where a run is in its life, and what this command does with it. A run's folder, runs/{name}, holds a run that
    is stopped (its checkpoint.pt has steps left before --total-timesteps) or finished. A command without --resume or
    --load-model starts a new run in a new folder; --resume RUN goes on from its checkpoint (to a higher
    --total-timesteps, even when finished; a finished run stopped before its evaluation gets only that); --load-model
    FILE --eval-only plays a saved agent in runs/{name}-play. A refused command writes nothing. docs/running.md has
    the whole table: what each row prints and where it writes."""

    def __init__(self, args: RunArgs, stop: GracefulStop, argv: list[str] | None = None):
        """The run's flags (a saved run's, with what this command line changes) and state; ValueError if they cannot
        work. The run's folder is made only once every check has passed."""
        self.stop, self.saved, self.step, self.finished, self.plays = stop, None, 0, False, args.eval_only
        if args.resume and args.load_model:
            raise ValueError("--resume and --load-model do not go together")
        if args.resume and os.path.isfile(args.resume):
            raise ValueError(
                f"--resume takes the run's folder, not a file: --resume {os.path.dirname(args.resume) or '.'}"
            )
        if args.resume and not os.path.isfile(os.path.join(args.resume, "checkpoint.pt")):
            there = "no checkpoint.pt there (--checkpoint-frequency 0?)"
            raise ValueError(f"--resume {args.resume}: {there if os.path.isdir(args.resume) else 'no such folder'}")
        if args.resume or args.load_model:
            self.saved = load_saved(os.path.join(args.resume, "checkpoint.pt") if args.resume else args.load_model)
            if args.resume and "loop" not in self.saved:
                raise ValueError(f"{args.resume}/checkpoint.pt holds a model but not a training loop to resume")
            if args.resume and self.saved["loop"].get("format") != CHECKPOINT_FORMAT:  # an older version's
                raise ValueError(f"{args.resume}: its checkpoint is an older version's; resume it with that version")
            # the saved run's flags, under those this command line names (parsed again, over them)
            saved = {name: value for name, value in self.saved["args"].items() if name in RunArgs.__dataclass_fields__}
            saved |= {name: getattr(args, name) for name in COMMAND_FLAGS}
            args = tyro.cli(RunArgs, args=argv, default=RunArgs(**saved), description=__doc__.splitlines()[0])
            for name in sorted(saved.keys() - CHANGEABLE_FLAGS):  # a flag that would change what the run learns
                if getattr(args, name) != saved[name]:
                    changed = f"{getattr(args, name)} would change the saved run, which has {saved[name]}"
                    raise ValueError(f"--{name.replace('_', '-')} {changed}")
        check_args(args)
        with contextlib.closing(make_env(args, args.seed)) as probe:  # an --env-id that cannot work fails here
            self.args, self.n_actions = args, int(probe.action_space.n)
        if self.saved is not None and self.saved["n_actions"] != self.n_actions:
            raise ValueError(f"the saved agent has {self.saved['n_actions']} actions, {args.env_id} {self.n_actions}")
        if args.resume:
            self._resume()
        if not self.finished:
            self._begin()
        if args.cuda and not torch.cuda.is_available() and not self.finished:  # once every check has passed
            print("note: no CUDA GPU found, running on the CPU (--no-cuda silences this)", file=sys.stderr)

    def _resume(self) -> None:
        """--resume: is the run stopped, or finished, and what does this command ask of it?"""
        args, self.step, folder = self.args, self.saved["loop"]["step"], os.path.normpath(self.args.resume)
        if args.checkpoint_frequency == 0:
            raise ValueError("--checkpoint-frequency 0 would leave the run's checkpoint behind it")
        self.finished = self.saved["args"]["total_timesteps"] <= args.total_timesteps <= self.step  # to where it is
        if args.total_timesteps <= self.step and not self.finished:
            raise ValueError(f"--total-timesteps {args.total_timesteps:,} is not above the {self.step:,} steps run")
        mark = os.path.join(folder, "evaluated")  # the step whose network the evaluation played
        evaluated = os.path.isfile(mark) and open(mark).read().strip() == str(self.step)
        self.plays = self.finished and args.eval_episodes > 0 and not evaluated
        if self.plays:
            print(f"{folder} has finished ({self.step:,} steps), but was stopped before its evaluation: evaluating")
        elif self.finished:
            extend = f"python {SCRIPT} --resume {folder} --total-timesteps N, with N above {self.step:,}"
            print(f"{folder} has finished ({self.step:,} steps): nothing to do. To extend it: {extend}")
        self.finished &= not self.plays

    def _begin(self) -> None:
        """The run's folder (a new run's own, even beside one of the same name begun in the same second) and its
        TensorBoard writer, which for a resumed run hides what the stopped run logged after its checkpoint."""
        args = self.args
        self.name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
        self.name = self.saved["run_name"] if args.resume else self.name + ("-play" if args.eval_only else "")
        self.folder = os.path.normpath(args.resume) if args.resume else f"runs/{self.name}"
        for suffix in itertools.count(2) if not args.resume else ():
            with contextlib.suppress(FileExistsError):
                os.makedirs(self.folder)
                break
            self.folder = f"runs/{self.name}-{suffix}"
        self.name = self.name if args.resume else os.path.basename(self.folder)
        self.checkpoint = f"{self.folder}/checkpoint.pt"
        self.video_folder, self.began = f"videos/{self.name}" if args.capture_video else None, time.time()
        self.env_states = copy.deepcopy(self.saved["loop"]["env"]) if args.resume and not self.plays else None
        if args.track:  # before the writer, whose scalars W&B mirrors
            self._track()
        self.writer = SummaryWriter(self.folder, purge_step=self.step if args.resume else None)
        if args.eval_only:  # where the play's output goes
            videos = f", videos in {self.video_folder}-eval" if self.video_folder else ""
            print(f"playing {args.load_model}: logs in {self.folder}{videos}", flush=True)
        if not args.resume:
            flags = {**vars(args), "device": "cuda" if args.cuda and torch.cuda.is_available() else "cpu"}
            table = "\n".join(f"|{key}|{value}|" for key, value in flags.items())
            self.writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)

    def _track(self) -> None:
        """--track: a W&B run that mirrors this one (its scalars, flags and name). Its id is kept in the run's folder,
        so that a resumed run goes on in it; a grid's runs share the group in $WANDB_RUN_GROUP. W&B failing to start
        refuses the command (ValueError), and a new run's folder goes."""
        import wandb  # only with --track: the scripts run without it

        id_file = os.path.join(self.folder, "wandb-run-id")
        run_id = open(id_file).read().strip() if os.path.isfile(id_file) else os.urandom(8).hex()
        try:
            where = {"project": self.args.wandb_project_name, "entity": self.args.wandb_entity, "name": self.name}
            # never wait forever for an upload at the end (wandb 0.27 and newer: older ones have no such setting)
            settings = wandb.Settings(
                **({"finish_timeout": 120} if "finish_timeout" in getattr(wandb.Settings, "model_fields", {}) else {})
            )
            where |= {"id": run_id, "resume": "allow", "config": vars(self.args), "settings": settings}
            wandb.init(**where, sync_tensorboard=True)
        except Exception as e:  # wandb's errors, and what its service raises when it cannot start
            if not self.args.resume:
                with contextlib.suppress(OSError):
                    os.rmdir(self.folder)  # still empty: nothing of the run was written
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"--track: W&B did not start: {reason} (--no-track runs without it)") from None
        with open(id_file, "w") as f:
            f.write(run_id + "\n")

    def start(self, envs, device, rng, recent_returns, parts: dict) -> tuple[int, np.ndarray, SummaryWriter]:
        """Step 0 and the envs' first observations; or, on --resume, the checkpoint's step and observations, with the
        RNGs, the recent returns and `parts` put back (the envs' states went back where they were made). And the
        TensorBoard writer."""
        self.envs, self.rng, self.recent_returns, self.parts = envs, rng, recent_returns, parts
        self.memory_kept, self.learning_since, self.last_print, self.checkpointed = None, None, time.time(), self.step
        if not self.args.resume:
            self.obs, _ = envs.reset(seed=self.args.seed)  # env k is seeded with --seed + k
        else:
            loop = self.saved["loop"]
            parts["q_network"].load_state_dict(self.saved["model"])
            for name in parts.keys() & loop.keys():
                load_part_state(parts[name], loop[name])
            rng.bit_generator.state, self.obs = loop["rng"], loop["obs"].numpy().copy()
            torch.set_rng_state(loop["torch_rng"])
            recent_returns.extend(loop["recent_returns"])
            if "replay" not in loop:  # it refills, from the frames of the games in progress
                refill = f"learning resumes after {max(self.args.learning_starts, self.args.num_envs):,} steps"
                print(f"note: the checkpoint has no replay memory; {refill}", file=sys.stderr)
                parts["replay"].start_streams(self.obs, self.step)
            self.saved = None  # the old checkpoint, memory-mapped: let it go (its file is replaced at the next one)
        print(f"run {self.name} on {device} from step {self.step:,}; logs in {self.folder}", flush=True)
        return self.step, self.obs, self.writer

    def stopping(self) -> bool:
        """Whether a signal asked the run to stop: asked between two steps, where the run's state is whole."""
        return self.stop.requested()

    def step_done(self, step: int, obs: np.ndarray, epsilon: float, learning_starts: int) -> None:
        """After each step: a status line every 10 s, and a checkpoint when one is due."""
        self.obs = obs
        if self.learning_since is None and step > learning_starts:
            self.learning_since = (step, time.time())  # the training phase's speed is counted from here
        if time.time() - self.last_print > 10:
            self.last_print, mean = time.time(), np.mean(self.recent_returns) if self.recent_returns else np.nan
            games = f"{len(self.recent_returns)} game{'s' if len(self.recent_returns) != 1 else ''}"
            print(
                f"step {step:>9,}/{self.args.total_timesteps:,}  SPS {self.sps(step):>5.0f}  "
                f"return (last {games}) {mean:>6.1f}  epsilon {epsilon:.3f}",
                flush=True,
            )
        every = self.args.checkpoint_frequency
        if every > 0 and step // every > self.checkpointed // every:
            self.save_checkpoint(step)

    def sps(self, step: int, since: tuple | None = None) -> float:
        first_step, began = since or (self.step, self.began)
        return (step - first_step) / (time.time() - began)

    def save_checkpoint(self, step: int) -> None:
        """The whole run after `step` steps: the networks and all that the loop's next steps depend on. The replay
        memory is left out with --no-checkpoint-buffer, and from a finished run's last checkpoint unless
        --keep-final-buffer (it is buffer-sized: 6.6 GiB at the Atari default)."""
        memory = self.args.checkpoint_buffer and (self.args.keep_final_buffer or step < self.args.total_timesteps)
        loop = {"format": CHECKPOINT_FORMAT, "step": step, "obs": torch.from_numpy(self.obs.copy())}
        loop |= {"rng": self.rng.bit_generator.state}
        envs = [
            {key: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for key, v in env.items()}
            for env in self.envs.call("save_state")
        ]
        loop |= {"torch_rng": torch.get_rng_state(), "env": envs}
        loop |= {"recent_returns": list(self.recent_returns)}
        loop |= {name: part_state(part) for name, part in self.parts.items() if name not in ("q_network", "replay")}
        if memory:
            loop["replay"] = part_state(self.parts["replay"])
        self.writer.flush()  # the events up to here on disk first: a resume hides those after the checkpoint
        write_atomically(self.checkpoint, {**self.file(self.parts["q_network"]), "loop": loop}, self.stop)
        self.checkpointed, self.memory_kept = step, memory

    def file(self, q_network: nn.Module) -> dict:
        """What --save-model writes, and a checkpoint too: the weights, and what they are."""
        flags = {name: value for name, value in vars(self.args).items() if name not in COMMAND_FLAGS}
        saved = {"script": SCRIPT, "env_id": self.args.env_id, "n_actions": self.n_actions, "args": flags}
        return {**saved, "run_name": self.name, "model": q_network.state_dict()}

    def end(self, step: int, q_network: nn.Module, device: torch.device) -> int:
        """After the loop, stopped or finished: the last checkpoint, the speed, what the checkpoint kept and what a
        next command can do, the model (--save-model), then the evaluation. Returns the exit code."""
        self.stop.looping = False  # after the loop, what is left (a save, an upload) is no hang: no grace timer
        self.stop.requested()  # the loop has come round: the grace timer, if a signal set it, is done
        if self.args.checkpoint_frequency and (step != self.checkpointed or not os.path.isfile(self.checkpoint)):
            self.save_checkpoint(step)
        self.envs.close()
        speed = f"{step - self.step:,} steps in {time.time() - self.began:.1f} s ({self.sps(step):.1f} SPS"
        print(
            speed
            + (
                f", {self.sps(step, self.learning_since):.1f} SPS once learning started)"
                if self.learning_since
                else ")"
            )
        )
        first = -(-max(self.args.learning_starts, self.args.num_envs) // self.args.train_frequency)
        if step <= first * self.args.train_frequency:  # the run never reached its first update
            print(f"note: learning had not started by step {step:,} (--learning-starts): the network is untrained")
        resume, finished = f"python {SCRIPT} --resume {self.folder}", step >= self.args.total_timesteps
        if self.stop.signum and not finished:
            where = f"checkpoint in {self.folder}; to go on: {resume}" if self.args.checkpoint_frequency else ""
            print(
                f"\ninterrupted at step {step:,}; {where or 'no checkpoint (--checkpoint-frequency 0)'}",
                file=sys.stderr,
            )
        if finished and self.args.checkpoint_frequency:
            memory = "keeps the replay memory" if self.memory_kept else "leaves the replay memory out"
            why = "" if self.memory_kept else " (--keep-final-buffer keeps it)" if self.args.checkpoint_buffer else ""
            print(f"finished; its checkpoint {memory}{why}: {resume} --total-timesteps N extends it")
        if self.args.save_model:
            write_atomically(f"{self.folder}/{self.args.exp_name}.pt", self.file(q_network), self.stop)
            print(f"model saved to {self.folder}/{self.args.exp_name}.pt")
            self.saved = load_saved(f"{self.folder}/{self.args.exp_name}.pt")  # the evaluation plays it, loaded back
        self.step = step
        return self.play(q_network, device)

    def play(self, q_network: nn.Module, device: torch.device) -> int:
        """The evaluation, then the writer and W&B close: at the end of training, for --load-model FILE --eval-only (the
        saved agent), or for a finished run stopped before its evaluation (its final network). Returns the exit code."""
        if self.saved is not None:
            q_network.load_state_dict(self.saved["model"])
        self.stop.deferring = False  # from here on, a signal stops at once
        resume, finished = f"python {SCRIPT} --resume {self.folder}", self.step >= self.args.total_timesteps
        if self.args.eval_episodes > 0 and self.stop.signum and finished and not self.args.eval_only:
            print(f"\nfinished at step {self.step:,}, stopped before its evaluation: {resume} runs it", file=sys.stderr)
        if self.args.eval_episodes > 0 and not self.stop.signum:
            again = f"{resume} runs it" if not self.args.eval_only else "its games are lost"
            self.stop.leaving = f"\nstopped during the evaluation, which did not finish: {again}"  # what a stop says
            videos = self.video_folder and self.video_folder + "-eval"
            evaluate_and_log(q_network, self.args, device, self.writer, videos)
            self.stop.leaving = None
            if not self.args.eval_only:  # a resume then finds the run finished, with nothing left to do
                with open(f"{self.folder}/evaluated", "w") as f:
                    f.write(f"{self.step}\n")
        self.writer.close()
        code = 128 + self.stop.signum if self.stop.signum else 0
        if self.args.track:  # the videos this command recorded, then the end of the W&B run; a failure costs a warning
            import wandb

            try:
                for folder in (f"videos/{self.name}", f"videos/{self.name}-eval"):
                    videos = [f"{folder}/{file}" for file in os.listdir(folder)] if os.path.isdir(folder) else []
                    for path in sorted(videos, key=os.path.getmtime):  # in the order recorded
                        if path.endswith(".mp4") and os.path.getmtime(path) >= self.began:  # not a stopped run's again
                            with tempfile.TemporaryDirectory() as temp:  # W&B copies the file as it logs it
                                video = wandb.Video(browser_playable(path, temp))
                                wandb.log({"eval/videos" if folder.endswith("-eval") else "videos": video})
                wandb.finish(exit_code=code)
            except Exception as e:
                print(f"warning: W&B did not finish ({type(e).__name__}: {e}); the run is saved", file=sys.stderr)
        return code


def browser_playable(path: str, folder: str) -> str:
    """A copy of an mp4 file in VP9, in `folder`: browsers play VP9 (W&B shows videos in one), not the faster mp4v that
    the recorders write. Where OpenCV has no VP9 encoder, the file itself, which browsers may not play."""
    copy_path = os.path.join(folder, os.path.basename(path))
    reader = cv2.VideoCapture(path)
    size = (int(reader.get(cv2.CAP_PROP_FRAME_WIDTH)), int(reader.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(copy_path, cv2.VideoWriter_fourcc(*"vp09"), reader.get(cv2.CAP_PROP_FPS), size)
    if not writer.isOpened():  # no VP9 encoder here: the file as it is
        reader.release()
        return path
    while (frame := reader.read())[0]:
        writer.write(frame[1])
    reader.release()
    writer.release()
    return copy_path


if __name__ == "__main__":
    # Speed, not the algorithm: the K heads' hidden layers are one 64 MB weight, and each update's backward pass
    # writes its gradient into freshly mapped memory, 15,680 page faults of 4 KB. Set before its first allocation,
    # this has PyTorch's CPU allocator ask Linux for 2 MB pages for its tensors of 2 MB and more, the replay memory's
    # frames included (where the kernel's transparent huge pages are 'madvise' or 'always'; elsewhere it does
    # nothing). Measured on a 2-core CPU: 42.7 to 47.2 training steps per second. The parent leaves it unset: its
    # per-update tensors are small enough for malloc to reuse, and it measured slower with it.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    try:
        stop = GracefulStop()
        run = Run(tyro.cli(RunArgs, description=__doc__.splitlines()[0]), stop, sys.argv[1:])
    except (ValueError, OSError) as e:  # a refused command: one line, and exit 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # in the instant before GracefulStop takes over the signals: just stop
        sys.exit(130)
    sys.exit(0 if run.finished else main(run.args, run))
