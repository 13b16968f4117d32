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
    rb = module.FrameReplayBuffer(module.FRAME_STACK + 1, (84, 84), env.action_space.n, torch.device("cpu"))  # the smallest --buffer-size
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for _ in range(200):  # after every add, mid-episode and at episode starts alike, something is sampleable
        action = int(rng.integers(env.action_space.n))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rb.add(obs, action, reward, next_obs, terminated, truncated)
        assert rb.num_transitions() >= 1
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
    env.close()
