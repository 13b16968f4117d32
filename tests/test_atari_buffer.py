"""The frame-once replay buffer of the Atari scripts returns exactly what the agent observed."""

import importlib

import numpy as np
import pytest
import torch

ATARI_SCRIPTS = ["dqn_atari"]


def play_and_record(module, capacity, n_steps, max_episode_steps, seed=0, rb=None, after_each_step=None):
    """Random play in the real wrapped Breakout; returns the buffer and the transition recorded for each slot.

    rb: a buffer to fill (default: a new FrameReplayBuffer of `capacity`); after_each_step(rb, rng) runs after every add.
    """
    env = module.make_env("BreakoutNoFrameskip-v4", seed, max_episode_steps=max_episode_steps)
    if rb is None:
        rb = module.FrameReplayBuffer(capacity, (84, 84), env.action_space.n, torch.device("cpu"))
    rng = np.random.default_rng(seed)
    recorded = {}  # slot -> (obs, action, reward, next_obs, terminated) as the agent saw them
    counts = {"terminated": 0, "truncated": 0, "games": 0}
    obs, _ = env.reset(seed=seed)
    for _ in range(n_steps):
        action = int(rng.integers(env.action_space.n))
        next_obs, reward, terminated, truncated, info = env.step(action)
        slot = rb.add(obs, action, reward, next_obs, terminated, truncated)
        recorded[slot] = (obs.copy(), action, float(reward), next_obs.copy(), bool(terminated))
        counts["terminated"] += terminated
        counts["truncated"] += truncated
        counts["games"] += "episode" in info
        if after_each_step is not None:
            after_each_step(rb, rng)
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
    env.close()
    return rb, recorded, counts


@pytest.mark.parametrize("script", ATARI_SCRIPTS)
def test_every_stored_transition_is_what_the_agent_saw(script):
    module = importlib.import_module(script)
    # 160 emulator frames = 40 agent steps per game at most: many truncations; random play also loses lives.
    # 1,500 steps through 300 slots wraps the circular storage several times.
    rb, recorded, counts = play_and_record(module, capacity=300, n_steps=1500, max_episode_steps=160)
    assert counts["terminated"] > 5 and counts["truncated"] > 5 and counts["games"] > 5, counts

    valid = np.flatnonzero(rb._is_valid(np.arange(rb.size)))
    # every slot but an episode's final observation, the newest, and up to 3 whose history was overwritten
    n_episodes_held = int((rb.episode_step[: rb.size] == 0).sum())
    assert len(valid) >= rb.size - n_episodes_held - 4
    batch = rb.get(valid, torch.device("cpu"))
    for row, slot in enumerate(valid):
        obs, action, reward, next_obs, terminated = recorded[slot]
        np.testing.assert_array_equal(batch.obs[row].numpy(), obs, err_msg=f"obs of slot {slot}")
        np.testing.assert_array_equal(batch.next_obs[row].numpy(), next_obs, err_msg=f"next_obs of slot {slot}")
        assert batch.actions[row].item() == action
        assert batch.rewards[row].item() == reward
        assert batch.terminated[row].item() == float(terminated)


@pytest.mark.parametrize("script", ATARI_SCRIPTS)
def test_sample_draws_only_stored_transitions(script):
    module = importlib.import_module(script)
    rb, recorded, _ = play_and_record(module, capacity=120, n_steps=400, max_episode_steps=200)
    by_obs = {(o.tobytes(), a, n.tobytes()): t for o, a, _, n, t in recorded.values()}
    batch = rb.sample(256, np.random.default_rng(1), torch.device("cpu"))
    for row in range(256):
        key = (batch.obs[row].numpy().tobytes(), batch.actions[row].item(), batch.next_obs[row].numpy().tobytes())
        assert key in by_obs, f"sampled row {row} is no transition the agent made"
        assert batch.terminated[row].item() == float(by_obs[key])


@pytest.mark.parametrize("script", ATARI_SCRIPTS)
def test_smallest_allowed_buffer_always_has_a_transition_to_sample(script):
    module = importlib.import_module(script)
    env = module.make_env("BreakoutNoFrameskip-v4", 0, max_episode_steps=100)
    rb = module.FrameReplayBuffer(
        module.FRAME_STACK + 1, (84, 84), env.action_space.n, torch.device("cpu")
    )  # the smallest --buffer-size
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for _ in range(200):  # after every add, mid-episode and at episode starts alike, something is sampleable
        action = int(rng.integers(env.action_space.n))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rb.add(obs, action, reward, next_obs, terminated, truncated)
        assert rb._is_valid(np.arange(rb.size)).any()
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
    env.close()


def test_a_truncated_transition_keeps_its_final_observation_where_sb3s_memory_optimized_buffer_loses_it():
    """CleanRL's dqn_atari.py uses SB3's ReplayBuffer with optimize_memory_usage=True, which stores a transition's
    next observation in the slot of the next transition's observation. After a truncation (stored as not done, so
    it bootstraps), the next episode's first observation overwrites it: the transition then bootstraps from the
    wrong state. The frame-once buffer keeps the final observation in a slot of its own."""
    import gymnasium as gym
    from stable_baselines3.common.buffers import ReplayBuffer

    import dqn_atari

    def stack(*frames):  # a (4, 84, 84) observation from 4 frame values, oldest first
        return np.stack([np.full((84, 84), v, dtype=np.uint8) for v in frames])

    first, final = stack(1, 1, 1, 1), stack(1, 1, 1, 2)  # an episode of one step, cut by the time limit
    reset, after_reset = stack(9, 9, 9, 9), stack(9, 9, 9, 8)  # the next episode's first step

    sb3 = ReplayBuffer(
        10,
        gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
        gym.spaces.Discrete(4),
        "cpu",
        optimize_memory_usage=True,
        handle_timeout_termination=False,
    )
    sb3.add(
        first, final, np.array([0]), np.array([0.0]), np.array([False]), [{}]
    )  # done = terminated, as CleanRL passes it
    sb3.add(reset, after_reset, np.array([1]), np.array([0.0]), np.array([False]), [{}])
    sb3_next_obs = sb3._get_samples(np.array([0])).next_observations[0].numpy()
    np.testing.assert_array_equal(
        sb3_next_obs, reset
    )  # SB3 bootstraps the truncated step from the next episode's start

    ours = dqn_atari.FrameReplayBuffer(10, (84, 84), 4, torch.device("cpu"))
    slot = ours.add(first, 0, 0.0, final, terminated=False, truncated=True)
    ours.add(reset, 1, 0.0, after_reset, terminated=False, truncated=False)
    batch = ours.get(np.array([slot]), torch.device("cpu"))
    np.testing.assert_array_equal(batch.next_obs[0].numpy(), final)  # ours bootstraps from the state it reached
    assert batch.terminated[0].item() == 0.0


@pytest.mark.parametrize("max_episode_steps", [106, 127, 225, 246])
def test_every_game_is_reported_even_when_it_ends_inside_a_reset(max_episode_steps):
    """A time limit (in emulator frames) that lands on EpisodicLifeEnv's no-op step or FireResetEnv's FIRE step ends
    the game inside reset(), where SB3's wrappers drop its info; every finished game must still reach the loop."""
    import dqn_atari

    env = dqn_atari.make_env("BreakoutNoFrameskip-v4", 0, max_episode_steps=max_episode_steps)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    reported, ended_in_reset = [], 0
    for _ in range(800):
        _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        if "episode" in info:
            reported.append(float(info["episode"]["r"]))
        if terminated or truncated:
            env.reset()
            ended_in_reset += len(env.pending)  # games the SB3 wrappers would have dropped
    assert ended_in_reset >= 1  # the case this is about happened
    finished = env.stats.episode_count - len(env.pending)
    assert len(reported) == finished and reported == list(env.stats.return_queue)[-finished:][: len(reported)]
