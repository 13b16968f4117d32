"""The frame-once replay buffer of the Atari scripts returns exactly what the agent observed."""

import functools
import importlib
from unittest import mock

import numpy as np
import pytest
import torch

ATARI_SCRIPTS = ["dqn_atari"]


def play_and_record(module, capacity, n_steps, max_episode_steps, n_envs=1, seed=0, rb=None, after_each_step=None):
    """Random play in n_envs real wrapped Breakouts through the script's make_envs, as the training loop plays; returns
    the buffer, the transition stored at each slot as the agent saw it, and counts.

    Each vector env's every step is checked against the same env played on its own (make_env, seed + k, the same
    actions, reset by hand): so the vector autoreset loses no final observation and no transition spans two episodes.
    rb: a buffer to fill (default: a new FrameReplayBuffer of `capacity`); after_each_step(rb, rng) runs after each add.
    """
    alone = [module.make_env(module.Args(), seed + k, max_episode_steps=max_episode_steps) for k in range(n_envs)]
    args = module.Args(env_id="BreakoutNoFrameskip-v4", seed=seed, num_envs=n_envs)
    limited = functools.partial(module.make_env, max_episode_steps=max_episode_steps)
    with mock.patch.object(module, "make_env", limited):  # the worker processes are forked with it
        envs = module.make_envs(args)
    n_actions = alone[0].action_space.n
    if rb is None:
        rb = module.FrameReplayBuffer(capacity, (84, 84), n_actions, torch.device("cpu"), n_envs)
    rng = np.random.default_rng(seed)
    recorded = {}  # slot -> (obs, action, reward, next_obs, terminated) as the agent saw them
    counts = {"terminated": 0, "truncated": 0, "games": 0}
    try:  # the worker processes end with the test, pass or fail
        obs, _ = envs.reset(seed=seed)
        expected_obs = np.stack([env.reset(seed=seed + k)[0] for k, env in enumerate(alone)])
        for _ in range(n_steps):
            np.testing.assert_array_equal(obs, expected_obs)
            actions = rng.integers(n_actions, size=n_envs)
            next_obs, rewards, terminated, truncated, infos = envs.step(actions)
            reached = module.final_observations(next_obs, infos)
            games = module.games_ended(infos)
            slots = rb.add(obs, actions, rewards, reached, terminated, truncated)
            for k, env in enumerate(alone):
                alone_next_obs, reward, alone_terminated, alone_truncated, info = env.step(int(actions[k]))
                np.testing.assert_array_equal(reached[k], alone_next_obs)
                assert (rewards[k], terminated[k], truncated[k]) == (reward, alone_terminated, alone_truncated)
                assert [r for j, r, _ in games if j == k] == (
                    [float(info["episode"]["r"])] if "episode" in info else []
                )
                recorded[slots[k]] = (
                    obs[k].copy(),
                    int(actions[k]),
                    float(reward),
                    alone_next_obs,
                    bool(alone_terminated),
                )
                expected_obs[k] = env.reset()[0] if alone_terminated or alone_truncated else alone_next_obs
            counts["terminated"] += int(terminated.sum())
            counts["truncated"] += int(truncated.sum())
            counts["games"] += len(games)
            if after_each_step is not None:
                after_each_step(rb, rng)
            obs = next_obs
    finally:
        envs.close()
    return rb, recorded, counts


@pytest.mark.parametrize("script", ATARI_SCRIPTS)
@pytest.mark.parametrize("n_envs", [1, 3])
def test_every_stored_transition_is_what_the_agent_saw(script, n_envs):
    module = importlib.import_module(script)
    # 160 emulator frames = 40 agent steps per game at most: many truncations; random play also loses lives.
    # 1,500 steps through 300 slots a stream wraps the circular storage several times.
    rb, recorded, counts = play_and_record(
        module, capacity=300 * n_envs, n_steps=1500 // n_envs, max_episode_steps=160, n_envs=n_envs
    )
    assert counts["terminated"] > 5 and counts["truncated"] > 5 and counts["games"] > 5, counts

    valid = np.flatnonzero(rb._is_valid(np.arange(rb.capacity)))
    # every slot but an episode's final observation, each stream's newest, and up to 3 whose history was overwritten
    n_episodes_held = int((rb.episode_step == 0).sum())
    assert len(valid) >= rb.capacity - n_episodes_held - 4 * n_envs
    batch = rb.get(valid, torch.device("cpu"))
    for row, slot in enumerate(valid):
        obs, action, reward, next_obs, terminated = recorded[slot]
        np.testing.assert_array_equal(batch.obs[row].numpy(), obs, err_msg=f"obs of slot {slot}")
        np.testing.assert_array_equal(batch.next_obs[row].numpy(), next_obs, err_msg=f"next_obs of slot {slot}")
        assert batch.actions[row].item() == action
        assert batch.rewards[row].item() == reward
        assert batch.terminated[row].item() == float(terminated)


@pytest.mark.parametrize("script", ATARI_SCRIPTS)
@pytest.mark.parametrize("n_envs", [1, 3])
def test_sample_draws_uniformly_from_the_stored_transitions_of_every_stream(script, n_envs):
    module = importlib.import_module(script)
    rb, recorded, _ = play_and_record(module, capacity=120 * n_envs, n_steps=80, max_episode_steps=200, n_envs=n_envs)
    by_obs = {(o.tobytes(), a, n.tobytes()): t for o, a, _, n, t in recorded.values()}
    batch = rb.sample(256, np.random.default_rng(1), torch.device("cpu"))
    for row in range(256):
        key = (batch.obs[row].numpy().tobytes(), batch.actions[row].item(), batch.next_obs[row].numpy().tobytes())
        assert key in by_obs, f"sampled row {row} is no transition the agent made"
        assert batch.terminated[row].item() == float(by_obs[key])
    # the draws cover every written slot of every stream and nothing else, each stream in proportion to its slots
    draws = rb._draw(100_000, np.random.default_rng(2))
    assert set(np.unique(draws)) == set(module.written_slots(rb, rb.size))
    shares = np.bincount(draws // rb.stream_capacity, minlength=n_envs) / len(draws)
    np.testing.assert_allclose(shares, rb.size / rb.size.sum(), atol=0.01)


@pytest.mark.parametrize("script", ATARI_SCRIPTS)
def test_smallest_allowed_buffer_always_has_a_transition_to_sample(script):
    module = importlib.import_module(script)
    n_envs = 2
    smallest = (module.FRAME_STACK + 1) * n_envs  # the smallest --buffer-size for 2 envs

    def check(rb, rng):  # after every add, mid-episode and at episode starts alike, something is sampleable
        assert rb._is_valid(module.written_slots(rb, rb.size)).any()
        rb.sample(4, rng, torch.device("cpu"))

    play_and_record(module, smallest, n_steps=100, max_episode_steps=100, n_envs=n_envs, after_each_step=check)


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

    ours = dqn_atari.FrameReplayBuffer(10, (84, 84), 4, torch.device("cpu"), n_streams=1)
    [slot] = ours.add(first[None], [0], [0.0], final[None], terminated=np.array([False]), truncated=np.array([True]))
    ours.add(reset[None], [1], [0.0], after_reset[None], terminated=np.array([False]), truncated=np.array([False]))
    batch = ours.get(np.array([slot]), torch.device("cpu"))
    np.testing.assert_array_equal(batch.next_obs[0].numpy(), final)  # ours bootstraps from the state it reached
    assert batch.terminated[0].item() == 0.0


@pytest.mark.parametrize("max_episode_steps", [106, 127, 225, 246])
def test_every_game_is_reported_even_when_it_ends_inside_a_reset(max_episode_steps):
    """A time limit (in emulator frames) that lands on EpisodicLifeEnv's no-op step or FireResetEnv's FIRE step ends
    the game inside reset(), where SB3's wrappers drop its info; every finished game must still reach the loop."""
    import dqn_atari

    env = dqn_atari.make_env(dqn_atari.Args(), 0, max_episode_steps=max_episode_steps)
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
