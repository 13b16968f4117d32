"""DQN on CartPole-v1 (or any classic-control env with a Box observation and Discrete actions).

Parent: none. The smallest member of the family: the DQN of Mnih et al. 2015 with an MLP, tuned so that
`python dqn_cartpole.py` reaches a greedy 500 within 50,000 steps, in about a minute on a CPU (docs/dqn_cartpole.md
has the measured seeds and times).

Why the defaults differ from CleanRL's dqn.py (which needs about 250,000 steps to hold 500):
  - a 256x256 MLP and Adam at 2e-3 learn the value function fast; training starts after 1,000 steps and
    does one update every 4 steps, on batches of 64 (CleanRL: 10,000 steps, every 10, batch 128);
  - the target network is a running average of the online one (tau 0.02 after each update) instead of
    a copy every 500 steps, so targets move smoothly;
  - Double-DQN targets (the online network picks the next action, the target network scores it) remove
    the overestimation that makes CartPole's Q-values drift once the pole stays up;
  - epsilon falls from 1 to 0.02 over the first 5,000 steps (10% of the run): CartPole needs little random
    exploration, and the replay then fills sooner with the agent's own long episodes;
  - the Huber loss and gradient-norm clipping at 1 bound the step after a rare large TD error, so one bad
    batch cannot undo a network that already balances the pole;
  - DQN on CartPole still forgets now and then, so every 5,000 steps 5 greedy episodes check the network,
    and the best one is kept for the end, as SB3's EvalCallback keeps its best model (--eval-frequency 0
    keeps the last network instead).
The episode limit of 500 steps is a truncation: those transitions bootstrap, a fallen pole does not.

Top to bottom: the arguments, the env, the MLP, the replay memory, evaluation, the loop (main), and then the run's
life cycle (checkpoints, --resume, signals), which a reader of the algorithm can skip.

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
from typing import NamedTuple

import cv2
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter


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
    """record episodes 0, 1, 8, 27, ... (and the evaluation episodes) as mp4 files in `videos/{run_name}`"""
    save_model: bool = False
    """save the Q-network to `runs/{run_name}/{exp_name}.pt` at the end, or on Ctrl-C"""

    env_id: str = "CartPole-v1"
    """the id of a gymnasium environment with a Box observation and Discrete actions"""
    total_timesteps: int = 50_000
    """total environment steps"""
    learning_rate: float = 2e-3
    """the learning rate of the Adam optimizer"""
    buffer_size: int = 50_000
    """the replay memory size, in transitions"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 0.02
    """the target network update rate: target <- tau * online + (1 - tau) * target"""
    target_network_frequency: int = 4
    """the number of steps between target network updates"""
    batch_size: int = 64
    """the batch size of samples from the replay memory"""
    start_e: float = 1.0
    """the starting epsilon for exploration"""
    end_e: float = 0.02
    """the ending epsilon for exploration"""
    exploration_fraction: float = 0.1
    """the fraction of `total_timesteps` it takes to go from start_e to end_e (the run's first: an extension keeps it)"""
    learning_starts: int = 1_000
    """the step at which learning starts"""
    train_frequency: int = 4
    """the number of steps between gradient updates"""
    max_grad_norm: float = 1.0
    """the gradient-norm clipping threshold"""
    eval_frequency: int = 5_000
    """steps between greedy checks during training (5 episodes each); the best network so far is kept and used at the end (0: use the last network)"""
    eval_episodes: int = 10
    """greedy episodes played at the end to evaluate the agent (0 to skip)"""
    checkpoint_frequency: int = 0
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
    """play --eval-episodes episodes with --load-model's agent, without training"""


def check_args(args: Args) -> None:
    """Raise ValueError naming the first argument that cannot work."""
    for name in ("total_timesteps", "buffer_size", "batch_size", "train_frequency", "target_network_frequency"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("learning_starts", "eval_frequency", "eval_episodes", "checkpoint_frequency"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if args.buffer_size < args.batch_size:
        raise ValueError(f"--buffer-size ({args.buffer_size}) must be at least --batch-size ({args.batch_size})")
    for name in ("gamma", "start_e", "end_e", "exploration_fraction", "tau"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    if args.learning_rate <= 0 or args.max_grad_norm <= 0:
        raise ValueError("--learning-rate and --max-grad-norm must be positive")
    if args.eval_only != (args.load_model is not None):
        raise ValueError("--eval-only and --load-model go together (to continue training a run, use --resume)")
    if args.eval_only and args.eval_episodes == 0:
        raise ValueError("--eval-only needs --eval-episodes above 0")


# ---------------------------------------------------------------------------------------------------
# Environment


class RecordEpisodes(gym.Wrapper):
    """Write the rendered frames of episodes 0, 1, 8, 27, ..., 1000, 2000, ... to mp4 files.

    Gymnasium's RecordVideo needs moviepy; OpenCV can write mp4 itself. Rendering classic-control
    and toy-text environments needs pygame (`pip install pygame`), which this script checks for up front. While
    `paused` it records nothing (the reset that makes a resumed run's env is undone at once), and its folder is made
    with its first file.
    """

    def __init__(self, env: gym.Env, folder: str):
        super().__init__(env)
        self.folder = folder
        self.episodes_started = 0
        self.writer = None
        self.paused = False

    @staticmethod
    def is_recorded(episode: int) -> bool:
        # the schedule of gymnasium's RecordVideo: cubes up to 1000, then every 1000th episode
        return round(episode ** (1 / 3)) ** 3 == episode if episode < 1000 else episode % 1000 == 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._close_writer()
        if self.is_recorded(self.episodes_started) and not self.paused:
            os.makedirs(self.folder, exist_ok=True)
            frame = self.env.render()
            path, take = os.path.join(self.folder, f"episode-{self.episodes_started}.mp4"), 1
            while os.path.exists(path):  # never over a file: an extended run's evaluation plays episode 0 again
                take += 1
                path = os.path.join(self.folder, f"episode-{self.episodes_started}.{take}.mp4")
            fps = self.env.metadata.get("render_fps", 30)
            self.writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
            self._write(frame)
        self.episodes_started += 1
        return obs, info

    def step(self, action):
        result = self.env.step(action)
        if self.writer is not None:
            self._write(self.env.render())
        return result

    def _write(self, frame: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    def close(self):
        self._close_writer()
        super().close()


def make_env(env_id: str, seed: int, video_folder: str | None = None) -> gym.Env:
    """The environment as gymnasium makes it, with episode statistics in `info["episode"]`."""
    if video_folder is not None:
        try:
            import pygame  # noqa: F401  (classic-control rendering needs it)
        except ImportError:
            raise ValueError(
                "--capture-video needs pygame to render classic-control envs: pip install pygame"
            ) from None
    try:
        env = gym.make(env_id, render_mode="rgb_array" if video_folder else None)
    except gym.error.Error as e:
        raise ValueError(f"unknown --env-id {env_id!r}: {str(e).splitlines()[0]}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"--env-id {env_id!r} has {type(env.action_space).__name__} actions; DQN needs Discrete ones")
    if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
        raise ValueError(f"--env-id {env_id!r} observations are not a flat Box, which this MLP needs")
    if video_folder is not None:
        env = RecordEpisodes(env, video_folder)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env.action_space.seed(seed)
    return env


# ---------------------------------------------------------------------------------------------------
# Agent


class QNetwork(nn.Module):
    """An MLP with two 256-unit hidden layers, one Q-value per action."""

    def __init__(self, obs_dim: int, n_actions: int):
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(obs_dim, 256),
            nn.ReLU(),
            nn.Linear(256, 256),
            nn.ReLU(),
            nn.Linear(256, n_actions),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.network(obs)


def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    """Epsilon goes linearly from start_e to end_e over `duration` steps, then stays at end_e."""
    if t >= duration:
        return end_e
    return start_e + (end_e - start_e) * t / duration


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


# ---------------------------------------------------------------------------------------------------
# Replay buffer


class Batch(NamedTuple):
    obs: torch.Tensor  # float32 (B, obs_dim)
    actions: torch.Tensor  # int64 (B,)
    rewards: torch.Tensor  # float32 (B,)
    next_obs: torch.Tensor  # float32 (B, obs_dim)
    terminated: torch.Tensor  # float32 (B,): 1 where the episode ended for real (no bootstrap)


class ReplayBuffer:
    """A circular replay memory of (obs, action, reward, next_obs, terminated), one array per field."""

    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")

    def __init__(self, capacity: int, obs_dim: int):
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.pos = 0  # the slot written next
        self.size = 0

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i], self.terminated[i] = (
            obs,
            action,
            reward,
            next_obs,
            terminated,
        )
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def state_dict(self) -> dict:  # the written slots and where writing goes on, for checkpoints
        arrays = {name: torch.from_numpy(getattr(self, name)[: self.size]) for name in self.FIELDS}
        return {**arrays, "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        for name in self.FIELDS:
            getattr(self, name)[: state["size"]] = state[name].numpy()
        self.pos, self.size = state["pos"], state["size"]

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device) -> Batch:
        i = rng.integers(0, self.size, batch_size)
        fields = (self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i], self.terminated[i])
        return Batch(*(torch.from_numpy(field).to(device) for field in fields))


# ---------------------------------------------------------------------------------------------------
# Evaluation


def evaluate(q_network: QNetwork, env: gym.Env, n_episodes: int, seed: int, device: torch.device) -> list[float]:
    """Play n_episodes greedily and return their returns."""
    obs, _ = env.reset(seed=seed)
    returns = []
    while len(returns) < n_episodes:
        with torch.inference_mode():
            action = int(q_network(torch.as_tensor(obs, device=device)[None]).argmax(1).item())
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            returns.append(float(info["episode"]["r"]))
            obs, _ = env.reset()
    return returns


class BestNetwork:
    """The best network of the greedy checks so far, as SB3's EvalCallback keeps its best model."""

    def __init__(self):
        self.mean_return, self.step, self.weights = -np.inf, None, None

    def offer(self, mean_return: float, step: int, q_network: QNetwork) -> None:
        if mean_return >= self.mean_return:  # ties go to the later, longer-trained network
            self.mean_return, self.step, self.weights = mean_return, step, copy.deepcopy(q_network.state_dict())

    def state_dict(self) -> dict:  # for checkpoints
        return {"mean_return": self.mean_return, "step": self.step, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.mean_return, self.step, self.weights = state["mean_return"], state["step"], state["weights"]


def evaluate_and_log(
    q_network: QNetwork, args: Args, run_name: str, device: torch.device, writer: SummaryWriter
) -> None:
    """Play --eval-episodes greedy episodes with q_network, log them as `eval/episodic_return` and print them."""
    eval_env = make_env(args.env_id, args.seed + 1, f"videos/{run_name}-eval" if args.capture_video else None)
    returns = evaluate(q_network.eval(), eval_env, args.eval_episodes, args.seed + 1, device)
    eval_env.close()
    for episode, episodic_return in enumerate(returns):
        writer.add_scalar("eval/episodic_return", episodic_return, episode)
    print(f"greedy evaluation over {len(returns)} episodes: mean {np.mean(returns):.1f}, returns {returns}")


def pick_device(args: Args) -> torch.device:
    if args.cuda and not torch.cuda.is_available():
        print("note: no CUDA GPU found, running on the CPU (--no-cuda silences this)", file=sys.stderr)
    return torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")


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
        device = pick_device(args)
        # an --env-id that cannot work (or videos without pygame) fails here, with one line; the probe writes nothing
        probe = make_env(args.env_id, args.seed, f"videos/{run.name}" if args.capture_video else None)
        run.fits(probe.action_space.n)
        probe.close()
        writer = run.begin(device)  # the run's folder: made only now, so that a refused command leaves nothing
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    env = make_env(args.env_id, args.seed, f"videos/{run.name}" if args.capture_video else None)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(1)  # a network this small only loses to the overhead of more threads
    rng = np.random.default_rng(args.seed)

    obs_dim, n_actions = env.observation_space.shape[0], env.action_space.n
    q_network = QNetwork(obs_dim, n_actions).to(device)
    target_network = QNetwork(obs_dim, n_actions).to(device)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
    rb = ReplayBuffer(args.buffer_size, obs_dim)

    def final_evaluation() -> None:  # --eval-episodes episodes, logged and printed
        evaluate_and_log(q_network, args, run.name, device, writer)

    if args.eval_only or run.evaluation_left:  # play a saved agent (or evaluate a run stopped before it), no training
        return run.play(q_network, stop, final_evaluation, writer)

    check_env = make_env(args.env_id, args.seed + 2)  # for the greedy checks during training
    best = BestNetwork()
    recent_returns = deque(maxlen=20)
    parts = {"target_network": target_network, "optimizer": optimizer, "replay": rb, "best": best}
    start_step, learning_starts = run.step, run.learning_start(args.learning_starts)
    if args.resume:  # back to the checkpoint's step, exactly as the run was then
        obs = run.restore(q_network, parts, rng, recent_returns)
        restore_env_state(env, run.env_states, args.seed)
    else:
        obs, _ = env.reset(seed=args.seed)

    def save_checkpoint(step: int) -> None:
        with stop.saving():
            run.save_checkpoint(step, obs, rng, env_state(env), parts, recent_returns, q_network)

    start_time = time.time()
    last_print = start_time
    global_step = start_step
    print(f"run {run.name} on {device} from step {start_step:,}; logs in {run.folder}", flush=True)
    for global_step in range(start_step, args.total_timesteps):
        if stop.requested():  # Ctrl-C or SIGTERM: stop between two steps, where the run's state is whole
            break
        epsilon = linear_schedule(args.start_e, args.end_e, args.exploration_fraction * run.horizon, global_step)
        if rng.random() < epsilon:
            action = int(rng.integers(n_actions))
        else:
            with torch.inference_mode():
                action = int(q_network(torch.as_tensor(obs, device=device)[None]).argmax(1).item())

        next_obs, reward, terminated, truncated, info = env.step(action)
        if "episode" in info:
            episode_return = float(info["episode"]["r"])
            recent_returns.append(episode_return)
            writer.add_scalar("charts/episodic_return", episode_return, global_step)
            writer.add_scalar("charts/episodic_length", int(info["episode"]["l"]), global_step)

        rb.add(obs, action, reward, next_obs, terminated)  # a truncated next_obs is kept: it bootstraps
        obs = next_obs if not (terminated or truncated) else env.reset()[0]

        if global_step >= learning_starts:
            if global_step % args.train_frequency == 0:
                data = rb.sample(args.batch_size, rng, device)
                with torch.no_grad():
                    td_target = double_dqn_target(
                        q_network(data.next_obs),
                        target_network(data.next_obs),
                        data.rewards,
                        data.terminated,
                        args.gamma,
                    )
                q_taken = q_network(data.obs).gather(1, data.actions[:, None]).squeeze(1)
                loss = F.smooth_l1_loss(q_taken, td_target)

                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(q_network.parameters(), args.max_grad_norm)
                optimizer.step()

                if global_step % 100 == 0:
                    writer.add_scalar("losses/td_loss", loss.item(), global_step)
                    writer.add_scalar("losses/q_values", q_taken.mean().item(), global_step)
                    sps = int((global_step - start_step) / (time.time() - start_time))
                    writer.add_scalar("charts/SPS", sps, global_step)
                    writer.add_scalar("charts/epsilon", epsilon, global_step)

            if global_step % args.target_network_frequency == 0:
                with torch.no_grad():
                    for target_param, param in zip(target_network.parameters(), q_network.parameters()):
                        target_param.lerp_(param, args.tau)  # target <- target + tau * (online - target)

        if args.eval_frequency and global_step >= learning_starts and (global_step + 1) % args.eval_frequency == 0:
            check_return = float(np.mean(evaluate(q_network, check_env, 5, args.seed + global_step, device)))
            writer.add_scalar("eval/check_return", check_return, global_step)
            best.offer(check_return, global_step, q_network)

        if time.time() - last_print > 5:
            last_print = time.time()
            mean_return = f"{np.mean(recent_returns):.1f}" if recent_returns else "-"
            print(
                f"step {global_step:>7,}/{args.total_timesteps:,}  SPS {int((global_step - start_step) / (last_print - start_time)):>5}  "
                f"return (last {len(recent_returns)} episodes) {mean_return:>6}  epsilon {epsilon:.3f}",
                flush=True,
            )

        if run.checkpoint_due(global_step + 1):
            save_checkpoint(global_step + 1)
    else:  # the loop ran to its end
        global_step = args.total_timesteps
    run.loop_ended(global_step, stop, save_checkpoint)  # the last checkpoint, and what to do next
    env.close()
    check_env.close()
    elapsed = time.time() - start_time
    print(f"{global_step - start_step:,} steps in {elapsed:.1f} s ({(global_step - start_step) / elapsed:.0f} SPS)")
    if best.weights is not None:
        q_network.load_state_dict(best.weights)
        print(
            f"keeping the network of step {best.step:,}, the best of the greedy checks (mean {best.mean_return:.1f} over 5 episodes)"
        )

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


# What each wrapper carries from one step to the next (its other attributes are settings)
WRAPPER_STATE = {
    "RecordEpisodeStatistics": ("episode_returns", "episode_lengths", "episode_count"),
    "TimeLimit": ("_elapsed_steps",),
    "RecordEpisodes": ("episodes_started",),
}


def env_state(env: gym.Env) -> dict:
    """What the env's next steps depend on: the simulator's state (`state`, and CartPole's count of steps past a
    fall), its RNG and the action space's, and the wrappers' state (the episode in progress, the time limit)."""
    simulator = {
        name: getattr(env.unwrapped, name)
        for name in ("state", "steps_beyond_terminated")
        if hasattr(env.unwrapped, name)
    }
    state = {
        "simulator": {
            name: torch.from_numpy(np.array(value)) if name == "state" else value for name, value in simulator.items()
        },
        "np_random": env.unwrapped.np_random.bit_generator.state,
        "action_space": env.action_space.np_random.bit_generator.state,
    }
    for wrapper in wrappers(env):
        state |= {
            f"{type(wrapper).__name__}.{a}": getattr(wrapper, a) for a in WRAPPER_STATE.get(type(wrapper).__name__, ())
        }
    return state


def restore_env_state(env: gym.Env, state: dict, seed: int) -> None:
    """Put a new env into a saved state. A reset comes first (its wrappers need one), with the videos paused: that
    episode is undone at once."""
    recorders = [wrapper for wrapper in wrappers(env) if isinstance(wrapper, RecordEpisodes)]
    for recorder in recorders:
        recorder.paused = True
        # the episodes so far (the reset counts the one in progress), for a checkpoint that kept no count of its own
        recorder.episodes_started = state["RecordEpisodeStatistics.episode_count"]
    env.reset(seed=seed)
    for recorder in recorders:
        recorder.paused = False
    for name, value in state["simulator"].items():
        setattr(env.unwrapped, name, value.numpy().copy() if name == "state" else value)
    env.unwrapped.np_random.bit_generator.state = state["np_random"]
    env.action_space.np_random.bit_generator.state = state["action_space"]
    for wrapper in wrappers(env):
        for attribute in WRAPPER_STATE.get(type(wrapper).__name__, ()):
            if (key := f"{type(wrapper).__name__}.{attribute}") in state:  # a run may add or drop videos on resume
                setattr(wrapper, attribute, state[key])


def wrappers(env: gym.Env) -> list[gym.Wrapper]:
    """env's wrappers, outermost first."""
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


if __name__ == "__main__":
    try:
        sys.exit(main(tyro.cli(Args), flags_given(sys.argv[1:])))
    except KeyboardInterrupt:  # before main() takes over the signals: just stop
        sys.exit(130)
