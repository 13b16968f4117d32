"""DQN on CartPole-v1 (or any classic-control env with a Box observation and Discrete actions).

Parent: none. The smallest member of the family: the DQN of Mnih et al. 2015 with an MLP, tuned so that
`python dqn_cartpole.py` reaches a greedy 500 within 50,000 steps, in about a minute on a CPU (docs/dqn_cartpole.md
has the measured seeds and times).

Why the defaults differ from CleanRL's dqn.py (which needs about 250,000 steps to hold 500):
  - a 256x256 MLP and Adam at 2e-3 learn fast; learning starts after 1,000 steps, with one update every 4 steps,
    on batches of 64 (CleanRL: 10,000 steps, every 10, batch 128);
  - the target network is a running average of the online one (tau 0.02 after each update), not a copy every 500
    steps, so targets move smoothly;
  - Double-DQN targets remove the overestimation that makes CartPole's Q-values drift once the pole stays up;
  - epsilon falls from 1 to 0.02 over the first 5,000 steps (10% of the run): CartPole needs little random
    exploration, and the replay then fills sooner with the agent's own long episodes;
  - the Huber loss and gradient-norm clipping at 1 bound the step after a rare large TD error;
  - DQN on CartPole still forgets now and then, so every 5,000 steps 5 greedy episodes check the network, and the
    best one is kept for the end, as SB3's EvalCallback keeps its best model (--eval-frequency 0: the last).
The episode limit of 500 steps is a truncation: those transitions bootstrap, a fallen pole does not. Above the
`# Run management` line is the algorithm, top to bottom; below it, what a reader of the algorithm can skip.

Copyright (c) 2026 The DQN family authors. MIT License: keep this line in copies (full text: LICENSE).
"""

import copy
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter


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
    """the fraction of `total_timesteps` it takes to go from start_e to end_e"""
    learning_starts: int = 1_000
    """the step at which learning starts"""
    train_frequency: int = 4
    """the number of steps between gradient updates"""
    max_grad_norm: float = 1.0
    """the gradient-norm clipping threshold"""
    eval_frequency: int = 5_000
    """steps between greedy checks (5 episodes each); the best network is kept for the end (0: keep the last)"""
    eval_episodes: int = 10
    """greedy episodes played at the end to evaluate the agent (0 to skip)"""


def make_env(env_id: str, seed: int, video_folder: str | None = None) -> gym.Env:
    """The environment as gymnasium makes it, with episode statistics in `info["episode"]`."""
    env = gym.make(env_id, render_mode="rgb_array" if video_folder else None)
    if video_folder is not None:
        env = RecordEpisodes(env, video_folder)  # below: the videos
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env.action_space.seed(seed)
    return env


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


class Batch(NamedTuple):
    obs: torch.Tensor  # float32 (B, obs_dim)
    actions: torch.Tensor  # int64 (B,)
    rewards: torch.Tensor  # float32 (B,)
    next_obs: torch.Tensor  # float32 (B, obs_dim)
    terminated: torch.Tensor  # float32 (B,): 1 where the episode ended for real (no bootstrap)


class ReplayBuffer:
    """A circular replay memory of (obs, action, reward, next_obs, terminated), one array per field."""

    def __init__(self, capacity: int, obs_dim: int):
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.pos, self.size = 0, 0  # the slot written next, the slots written

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminated[i] = next_obs, terminated
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device) -> Batch:
        i = rng.integers(0, self.size, batch_size)
        fields = (self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i], self.terminated[i])
        return Batch(*(torch.from_numpy(field).to(device) for field in fields))


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
            if len(returns) < n_episodes:  # no episode begun after the last
                obs, _ = env.reset()
    return returns


class BestNetwork:
    """The best network of the greedy checks so far, as SB3's EvalCallback keeps its best model."""

    def __init__(self):
        self.mean_return, self.step, self.weights = -np.inf, None, None

    def offer(self, mean_return: float, step: int, q_network: QNetwork) -> None:
        if mean_return >= self.mean_return:  # ties go to the later, longer-trained network
            self.mean_return, self.step, self.weights = mean_return, step, copy.deepcopy(q_network.state_dict())


def evaluate_and_log(
    q_network: QNetwork, args: Args, device: torch.device, writer: SummaryWriter, video_folder: str | None
) -> None:
    """Play --eval-episodes greedy episodes with q_network, log them as `eval/episodic_return` and print them."""
    eval_env = make_env(args.env_id, args.seed + 1, video_folder)
    returns = evaluate(q_network.eval(), eval_env, args.eval_episodes, args.seed + 1, device)
    eval_env.close()
    for episode, episodic_return in enumerate(returns):
        writer.add_scalar("eval/episodic_return", episodic_return, episode)
    episodes = f"{len(returns)} episode{'s' if len(returns) != 1 else ''}"
    print(f"greedy evaluation over {episodes}: mean {np.mean(returns):.1f}, returns {returns}")


def main(args: Args, run) -> int:
    """Train (or, with --eval-only, play a saved agent); returns the exit code. `run` is the bookkeeping below the
    `# Run management` line: the run's folder and log, signals, the model's save, the status line."""
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    env = make_env(args.env_id, args.seed, run.video_folder)
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
    if run.plays:  # --eval-only: play a saved agent, no training
        return run.play(q_network, device)

    check_env = make_env(args.env_id, args.seed + 2)  # for the greedy checks during training
    best = BestNetwork()
    writer, recent_returns = run.writer, deque(maxlen=20)
    obs, _ = env.reset(seed=args.seed)
    start_time = time.time()
    for global_step in range(args.total_timesteps):
        if run.stopping():  # Ctrl-C, SIGTERM: stop between two steps
            break
        epsilon = linear_schedule(
            args.start_e, args.end_e, args.exploration_fraction * args.total_timesteps, global_step
        )
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

        if global_step >= args.learning_starts:
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
                    sps = int(global_step / (time.time() - start_time))
                    writer.add_scalar("charts/SPS", sps, global_step)
                    writer.add_scalar("charts/epsilon", epsilon, global_step)

            if global_step % args.target_network_frequency == 0:
                with torch.no_grad():
                    for target_param, param in zip(target_network.parameters(), q_network.parameters()):
                        target_param.lerp_(param, args.tau)  # target <- target + tau * (online - target)

        if args.eval_frequency and global_step >= args.learning_starts and (global_step + 1) % args.eval_frequency == 0:
            check_return = float(np.mean(evaluate(q_network, check_env, 5, args.seed + global_step, device)))
            writer.add_scalar("eval/check_return", check_return, global_step)
            best.offer(check_return, global_step, q_network)
        run.status(global_step, epsilon, recent_returns)  # a line every 5 s
    else:  # the loop ran to its end
        global_step = args.total_timesteps
    env.close()
    check_env.close()
    if best.weights is not None:  # the end saves and evaluates the best network of the greedy checks, not the last
        print(f"keeping the network of step {best.step:,}, the best of the greedy checks (mean {best.mean_return:.1f})")
    return run.end(global_step, q_network, device, best.weights)


# Run management: input checks, videos, signals, saving and playing the model, W&B, the status line. The algorithm
# is all above; main hands over to what is here in the lines that name `run`. A CartPole run takes a minute: it keeps
# no checkpoints (the Atari scripts' --resume does).

import contextlib
import importlib.util
import signal
import sys
import tempfile

import cv2
import tyro


@dataclass
class RunArgs(Args):
    """The algorithm's flags (Args), then the running flags: play, tracking, video."""

    save_model: bool = False
    """save the Q-network to `runs/{run_name}/{exp_name}.pt` at the end, or on Ctrl-C"""
    load_model: str | None = None
    """a model saved by --save-model, to play with --eval-only"""
    eval_only: bool = False
    """play --eval-episodes episodes with --load-model's agent, without training"""
    capture_video: bool = False
    """record episodes 0, 1, 8, 27, ... and the evaluation episodes as mp4 files in `videos/{run_name}`"""
    track: bool = False
    """mirror the run to Weights & Biases (needs wandb 0.19 or newer): its scalars, its flags, its videos"""
    wandb_project_name: str = "dqn-family"
    """the W&B project of --track"""
    wandb_entity: str | None = None
    """the W&B entity (team or user) of --track; None: yours"""


def check_args(args: RunArgs) -> None:
    """Raise ValueError naming the first argument that cannot work."""
    positive = ["total_timesteps", "buffer_size", "batch_size", "learning_rate", "max_grad_norm", "train_frequency"]
    for name in positive + ["target_network_frequency"]:
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("learning_starts", "eval_frequency", "eval_episodes"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    for name in ("gamma", "start_e", "end_e", "exploration_fraction", "tau"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    if args.seed < 0:  # gymnasium's seeds are not negative
        raise ValueError(f"--seed must not be negative, got {args.seed}")
    if "/" in args.exp_name or args.exp_name in ("", ".", ".."):  # it names the run's folder and its model file
        raise ValueError(f"--exp-name {args.exp_name!r} cannot name a folder: no '/', not empty")
    if args.buffer_size < args.batch_size:
        raise ValueError(f"--buffer-size ({args.buffer_size}) must be at least --batch-size ({args.batch_size})")
    if args.eval_only != (args.load_model is not None):
        raise ValueError("--eval-only and --load-model go together")
    if args.eval_only and args.eval_episodes == 0:
        raise ValueError("--eval-only needs --eval-episodes above 0")
    if args.track and importlib.util.find_spec("wandb") is None:
        raise ValueError("--track needs wandb: pip install 'wandb>=0.19'")
    if args.capture_video and importlib.util.find_spec("pygame") is None:
        raise ValueError("--capture-video needs pygame to render classic-control envs: pip install pygame")
    try:
        env = gym.make(args.env_id)
    except gym.error.Error as e:
        atari = "NoFrameskip" in args.env_id or args.env_id.startswith("ALE/")  # the Atari scripts' (ale_py) games
        why = "an Atari game: dqn_atari.py plays those" if atari else str(e).splitlines()[0]
        raise ValueError(f"unknown --env-id {args.env_id!r}: {why}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"--env-id {args.env_id!r} has {type(env.action_space).__name__} actions; DQN needs Discrete")
    if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
        raise ValueError(f"--env-id {args.env_id!r} observations are not a flat Box, which this MLP needs")


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


class GracefulStop:
    """The first Ctrl-C (SIGINT) or SIGTERM only sets `signum`: the loop finishes its step and stops, the model is
    saved if asked, and the script exits with 128 + signum. A second signal, or one once `deferring` is off (the
    final evaluation), exits at once. A crash prints its traceback and exits with 1."""

    def __init__(self):
        self.signum, self.deferring, self.leaving = None, True, None
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        if self.signum is not None or not self.deferring:
            if self.leaving:  # what the exit leaves undone
                print(self.leaving, file=sys.stderr)
            raise SystemExit(128 + signum)
        self.signum = signum


SCRIPT = os.path.basename(__file__)
RUN_FLAGS = {"cuda", "torch_deterministic", "eval_episodes", "load_model", "eval_only", "save_model", "capture_video"}
RUN_FLAGS |= {"track", "wandb_project_name", "wandb_entity"}  # the flags a saved agent's play may change


class Run:
    """A new run, in a folder of its own, runs/{run_name}; or, with --load-model FILE --eval-only, the play of a
    saved agent, with its flags, in runs/{run_name}-play. A refused command writes nothing."""

    def __init__(self, args: RunArgs, stop: GracefulStop):
        """The run's flags and folder; ValueError if they cannot work, before anything is written."""
        self.stop, self.saved, self.plays = stop, None, args.eval_only
        if args.load_model:
            self.saved = load_saved(args.load_model)
            saved = {name: value for name, value in self.saved["args"].items() if name in RunArgs.__dataclass_fields__}
            saved |= {name: getattr(args, name) for name in ("load_model", "eval_only")}
            args = tyro.cli(RunArgs, default=RunArgs(**saved), description=__doc__.splitlines()[0])
            for name in sorted(saved.keys() - RUN_FLAGS):  # the saved flags, under those this command line names
                if getattr(args, name) != saved[name]:
                    changed = f"{getattr(args, name)} would change the saved agent, which has {saved[name]}"
                    raise ValueError(f"--{name.replace('_', '-')} {changed}")
        check_args(args)
        self.args, self.n_actions = args, int(gym.make(args.env_id).action_space.n)
        if self.saved is not None and self.saved["n_actions"] != self.n_actions:
            raise ValueError(f"the saved agent has {self.saved['n_actions']} actions, {args.env_id} {self.n_actions}")
        name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
        self.folder = f"runs/{name}" + ("-play" if args.eval_only else "")
        for suffix in range(2, 100):  # a folder of its own, even beside one of the same name begun in the same second
            with contextlib.suppress(FileExistsError):
                os.makedirs(self.folder)
                break
            self.folder = f"runs/{name}" + ("-play" if args.eval_only else "") + f"-{suffix}"
        self.name, self.began = os.path.basename(self.folder), time.time()
        self.video_folder, self.last_print = f"videos/{self.name}" if args.capture_video else None, time.time()
        if args.track:  # before the writer, whose scalars W&B mirrors
            self._track()
        self.writer = SummaryWriter(self.folder)
        flags = {**vars(args), "device": "cuda" if args.cuda and torch.cuda.is_available() else "cpu"}
        table = "\n".join(f"|{key}|{value}|" for key, value in flags.items())
        self.writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)
        if args.cuda and not torch.cuda.is_available():  # once every check has passed
            print("note: no CUDA GPU found, running on the CPU (--no-cuda silences this)", file=sys.stderr)
        if not self.plays:
            print(f"run {self.name} on {flags['device']} from step 0; logs in {self.folder}", flush=True)
        else:  # where the play's output goes
            videos = f", videos in {self.video_folder}-eval" if self.video_folder else ""
            print(f"playing {args.load_model}: logs in {self.folder}{videos}", flush=True)

    def _track(self) -> None:
        """--track: a W&B run that mirrors this one (its scalars, flags and name). W&B failing to start refuses the
        command, and the run's folder goes."""
        import wandb  # only with --track: the scripts run without it

        try:
            where = {"project": self.args.wandb_project_name, "entity": self.args.wandb_entity, "name": self.name}
            # never wait forever for an upload at the end (wandb 0.27 and newer: older ones have no such setting)
            settings = wandb.Settings(
                **({"finish_timeout": 120} if "finish_timeout" in getattr(wandb.Settings, "model_fields", {}) else {})
            )
            wandb.init(**where, config=vars(self.args), sync_tensorboard=True, settings=settings)
        except Exception as e:  # wandb's errors, and what its service raises when it cannot start
            with contextlib.suppress(OSError):
                os.rmdir(self.folder)  # still empty: nothing of the run was written
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"--track: W&B did not start: {reason} (--no-track runs without it)") from None

    def stopping(self) -> bool:
        """Whether a signal asked the run to stop: asked between two steps."""
        return self.stop.signum is not None

    def status(self, step: int, epsilon: float, recent_returns) -> None:
        """A status line every 5 s."""
        if time.time() - self.last_print > 5:
            self.last_print, mean = time.time(), np.mean(recent_returns) if recent_returns else np.nan
            print(
                f"step {step:>7,}/{self.args.total_timesteps:,}  SPS {step / (time.time() - self.began):>5.0f}  "
                f"return (last {len(recent_returns)} episode{'s' if len(recent_returns) != 1 else ''}) {mean:>6.1f}  "
                f"epsilon {epsilon:.3f}",
                flush=True,
            )

    def end(self, step: int, q_network: nn.Module, device: torch.device, keep: dict | None) -> int:
        """After the loop: the speed, the model (`keep`, the best network, if given), and the evaluation of what was
        saved, loaded back. Returns the exit code."""
        print(f"{step:,} steps in {time.time() - self.began:.1f} s ({step / (time.time() - self.began):.0f} SPS)")
        if self.stop.signum:
            print(f"\ninterrupted at step {step:,}", file=sys.stderr)
        if step <= self.args.learning_starts:
            print(f"note: learning had not started by step {step:,} (--learning-starts): the network is untrained")
        q_network.load_state_dict(keep or q_network.state_dict())
        if self.args.save_model:
            path = f"{self.folder}/{self.args.exp_name}.pt"
            flags = {name: value for name, value in vars(self.args).items() if name not in ("load_model", "eval_only")}
            saved = {"script": SCRIPT, "env_id": self.args.env_id, "n_actions": self.n_actions, "args": flags}
            torch.save({**saved, "model": q_network.state_dict()}, path + ".tmp")
            os.replace(path + ".tmp", path)  # a kill leaves the old file or the new one, whole
            print(f"model saved to {path}")
            self.saved = load_saved(path)  # the evaluation plays it, loaded back
        return self.play(q_network, device)

    def play(self, q_network: nn.Module, device: torch.device) -> int:
        """The evaluation (at the end of training, or of a saved agent), then the writer and W&B close."""
        if self.saved is not None:
            q_network.load_state_dict(self.saved["model"])
        self.stop.deferring = False  # from here on, a signal stops at once
        if self.args.eval_episodes > 0 and not self.stop.signum:
            self.stop.leaving = "\nstopped during the evaluation, which did not finish"  # what a stop says
            evaluate_and_log(
                q_network, self.args, device, self.writer, self.video_folder and self.video_folder + "-eval"
            )
            self.stop.leaving = None
        self.writer.close()
        code = 128 + self.stop.signum if self.stop.signum else 0
        if self.args.track:  # the videos, then the end of the W&B run; a failure costs a warning
            import wandb

            try:
                for folder in (f"videos/{self.name}", f"videos/{self.name}-eval"):
                    videos = (
                        [os.path.join(folder, file) for file in os.listdir(folder)] if os.path.isdir(folder) else []
                    )
                    for path in sorted(p for p in videos if p.endswith(".mp4")):
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
    try:
        stop = GracefulStop()
        run = Run(tyro.cli(RunArgs, description=__doc__.splitlines()[0]), stop)
    except (ValueError, OSError) as e:  # a refused command: one line, and exit 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # before GracefulStop takes over the signals: just stop
        sys.exit(130)
    sys.exit(main(run.args, run))
