"""rainbow_atari.py: n-step returns from the frame-once memory, the C51 projection and target, the noisy layers."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import rainbow_atari as rainbow
from conftest import ROOT, TINY_ATARI

CPU = torch.device("cpu")


def play(n_streams: int, steps: int, stream_capacity: int, n_step: int, gamma: float, seed: int):
    """Random games in n_streams streams, stored in a rainbow buffer. Each observation's newest frame holds its own
    id, so that a stack names the observation it is. Returns the buffer and, per stream, every transition in the
    order played: (obs id, reward, next obs id, terminated, truncated)."""
    rng = np.random.default_rng(seed)
    rb = rainbow.PrioritizedFrameReplayBuffer(
        stream_capacity * n_streams, (1, 1), 4, CPU, n_streams, alpha=0.5, priority_epsilon=1e-6, n_step=n_step,
        gamma=gamma,
    )  # fmt: skip
    ids = [iter(range(k * 80, (k + 1) * 80)) for k in range(n_streams)]  # distinct ids in every stream, below 256
    current = np.array([next(ids[k]) for k in range(n_streams)])
    played = [[] for _ in range(n_streams)]
    for _ in range(steps):
        rewards = rng.integers(-3, 4, n_streams).astype(np.float32)
        ended = rng.random(n_streams) < 0.15
        terminated, truncated = ended & (rng.random(n_streams) < 0.5), ended.copy()
        truncated &= ~terminated
        reached = np.array([next(ids[k]) for k in range(n_streams)])
        stack = lambda frame_ids: np.broadcast_to(frame_ids[:, None, None, None], (n_streams, 4, 1, 1)).astype(np.uint8)  # noqa: E731
        rb.add(stack(current), current % 4, rewards, stack(reached), terminated, truncated)  # action: the id mod 4
        for k in range(n_streams):
            played[k].append((current[k], rewards[k], reached[k], terminated[k], truncated[k]))
        # an ended episode starts again from a new first observation
        current = np.where(ended, [next(ids[k]) if ended[k] else 0 for k in range(n_streams)], reached)
    return rb, played


def n_step_by_hand(transitions: list, t: int, n_step: int, gamma: float):
    """The n-step transition from transitions[t], summed one reward at a time: (return, next obs id, terminated,
    discount), or None while its n steps are not all played yet."""
    total = 0.0
    for m in range(n_step):
        if t + m == len(transitions):
            return None  # the episode goes on past what was played
        obs, reward, reached, terminated, truncated = transitions[t + m]
        total += gamma**m * reward
        if terminated or truncated or m == n_step - 1:
            return total, reached, terminated, gamma ** (m + 1)


@pytest.mark.parametrize("n_step", [1, 3, 5])
def test_n_step_transitions_match_a_hand_computation(n_step):
    """Across terminations (no bootstrap), truncations (a bootstrap from the final observation, discounted by gamma^k),
    the ring's wrap (60 steps in 16-slot streams) and 3 streams side by side: every transition the tree can draw is
    exactly the hand-computed one, and every transition whose n steps are played and whose frames are still stored
    can be drawn."""
    gamma, stream_capacity, n_streams = 0.9, 16, 3
    rb, played = play(n_streams, 60, stream_capacity, n_step, gamma, seed=n_step)
    drawable = np.flatnonzero(rb.tree.leaves(np.arange(rb.capacity)) > 0)
    batch = rb.get(drawable, CPU)
    by_hand = {}
    for k in range(n_streams):
        for t, transition in enumerate(played[k]):
            by_hand[int(transition[0])] = n_step_by_hand(played[k], t, n_step, gamma)
    for j, slot in enumerate(drawable):
        obs_id = int(batch.obs[j, -1, 0, 0])
        expected = by_hand[obs_id]
        assert expected is not None, f"slot {slot} (obs {obs_id}) is drawable before its n steps are played"
        returns, reached, terminated, discount = expected
        assert batch.actions[j].item() == obs_id % 4, obs_id  # the first transition's action
        assert batch.returns[j].item() == pytest.approx(returns, rel=1e-6), obs_id
        assert int(batch.next_obs[j, -1, 0, 0]) == reached, obs_id
        assert batch.terminated[j].item() == float(terminated), obs_id
        assert batch.discounts[j].item() == pytest.approx(discount, rel=1e-6), obs_id
    # every complete transition whose stack's frames are all still among its stream's last 16 slots is drawable
    drawn = {int(batch.obs[j, -1, 0, 0]) for j in range(len(drawable))}
    for k in range(n_streams):
        slots_written, stack_start = 0, {}
        for t, (obs, _, reached, terminated, truncated) in enumerate(played[k]):
            if t == 0 or played[k][t - 1][3] or played[k][t - 1][4]:
                slots_written, episode_step = slots_written + 1, 0  # an episode's first observation: a slot of its own
            stack_start[int(obs)] = slots_written - 1 - min(episode_step, 3)  # a stack reaches 3 frames back
            slots_written, episode_step = slots_written + 1, episode_step + 1
        stored = [obs for obs, start in stack_start.items() if start >= slots_written - stream_capacity]
        complete = [obs for obs in stored if by_hand[obs] is not None]
        assert sorted(obs for obs in drawn if obs // 80 == k) == sorted(complete), f"stream {k}"


def test_a_transition_becomes_drawable_when_its_n_step_return_is_known():
    rb = rainbow.PrioritizedFrameReplayBuffer(
        40, (1, 1), 4, CPU, 1, alpha=0.5, priority_epsilon=1e-6, n_step=3, gamma=0.5
    )
    stack = np.zeros((1, 4, 1, 1), np.uint8)
    drawable = []
    for step, ends in enumerate([False, False, False, False, True]):
        rb.add(stack, [0], np.array([1.0], np.float32), stack, np.array([ends]), np.array([False]))
        drawable.append(list(np.flatnonzero(rb.tree.leaves(np.arange(8)) > 0)))
    # slot 0 after its third transition, slot 1 after its own third; then the termination completes slots 2, 3, 4
    assert drawable == [[], [], [0], [0, 1], [0, 1, 2, 3, 4]]


def test_projection_matches_a_hand_computed_example():
    support = torch.tensor([-1.0, 0.0, 1.0])
    probs = torch.tensor([[0.2, 0.3, 0.5]] * 4)
    values = torch.tensor(
        [
            [0.0, 0.5, 1.0],  # 0.5 halfway between atoms 0 and 1
            [1.1, 2.0, 2.9],  # above v_max: all at the top atom
            [-3.0, -2.0, -1.5],  # below v_min: all at the bottom atom
            [-1.0, 0.25, 0.0],  # exactly on atoms, and a quarter of the way
        ]
    )
    expected = torch.tensor(
        [
            [0.0, 0.2 + 0.3 * 0.5, 0.3 * 0.5 + 0.5],
            [0.0, 0.0, 1.0],
            [1.0, 0.0, 0.0],
            [0.2, 0.3 * 0.75 + 0.5, 0.3 * 0.25],
        ]
    )
    projected = rainbow.project_onto_support(values, probs, support)
    torch.testing.assert_close(projected, expected)
    torch.testing.assert_close(projected.sum(dim=1), torch.ones(4))  # no mass lost


def test_target_uses_the_online_choice_the_return_and_the_discount_and_stops_at_a_termination():
    support = torch.tensor([-1.0, 0.0, 1.0])
    next_q_online = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # the online network picks action 1
    # the target network would pick action 0 (mean 1 > 0.3): Double DQN takes the online network's pick instead
    next_probs_target = torch.tensor([[[0.0, 0.0, 1.0], [0.2, 0.3, 0.5]]] * 3)
    returns, discounts = torch.tensor([0.5, 0.25, 2.0]), torch.tensor([0.5, 0.5, 0.9])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    data = rainbow.NStepBatch(None, None, returns, None, terminated, discounts)
    target = rainbow.distributional_double_target(next_q_online, next_probs_target, data, support)
    expected = torch.tensor(
        [
            [0.0, 0.2 + 0.3 * 0.5, 0.3 * 0.5 + 0.5],  # atoms moved to 0.5 + 0.5 z: 0, 0.5, 1
            [0.0, 0.75, 0.25],  # terminated: everything at the return, 0.25
            [0.0, 0.0, 1.0],  # 2 + 0.9 z lies above v_max for every atom
        ]
    )
    torch.testing.assert_close(target, expected)


def test_noisy_layers_draw_new_noise_at_every_training_pass_and_none_in_eval_mode():
    torch.manual_seed(0)
    layer = rainbow.NoisyLinear(5, 3, std_init=0.5)
    x = torch.randn(2, 5)
    first, second = layer(x), layer(x)
    assert not torch.allclose(first, second)  # fresh noise at each forward pass in training mode
    layer.eval()
    mean = torch.nn.functional.linear(x, layer.weight_mu, layer.bias_mu)
    torch.testing.assert_close(layer(x), mean)
    torch.testing.assert_close(layer(x), mean)
    layer.train()
    # the factorised form: the noisy weights are mu + sigma * outer(f(e_out), f(e_in)), with f(e) = sgn(e) sqrt(|e|)
    torch.manual_seed(1)
    out = layer(x)
    torch.manual_seed(1)
    noise = torch.randn(5 + 3)
    f = noise.sign() * noise.abs().sqrt()
    noise_in, noise_out = f[:5], f[5:]
    weight = layer.weight_mu + layer.weight_sigma * torch.outer(noise_out, noise_in)
    torch.testing.assert_close(out, x @ weight.T + layer.bias_mu + layer.bias_sigma * noise_out)


def test_the_network_is_deterministic_under_a_seed_and_noisy_within_a_run():
    args = rainbow.Args(n_atoms=11, network="data-efficient")

    def q_values(seed):
        torch.manual_seed(seed)
        network = rainbow.QNetwork(4, args)
        obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
        return network(obs), network(obs), network.eval()(obs), network.eval()(obs)

    first, second = q_values(7), q_values(7)
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # the same seed, the same noise
    noisy_a, noisy_b, mean_a, mean_b = first
    assert noisy_a.shape == (3, 4) and not torch.equal(noisy_a, noisy_b)  # each acting step draws anew
    assert torch.equal(mean_a, mean_b)  # the evaluation acts on the mean weights
    torch.manual_seed(7)
    network, obs = rainbow.QNetwork(4, args), torch.zeros(1, 4, 84, 84, dtype=torch.uint8)
    torch.manual_seed(8)
    other_noise = network(obs)
    torch.manual_seed(9)
    assert not torch.equal(other_noise, network(obs))  # the same weights, other noise: the generator draws it


# Runs rainbow_atari.py as `python rainbow_atari.py FLAGS` would, counting the noise draws of its main process.
COUNTING_NOISE = """
import atexit, os, runpy, sys, torch
randn, draws, pid = torch.randn, [], os.getpid()
def counted(*args, **kwargs):
    if os.getpid() == pid:
        draws.append(args)
    return randn(*args, **kwargs)
torch.randn = counted
atexit.register(lambda: os.getpid() == pid and print(f"noise draws: {len(draws)}", file=sys.stderr))
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def test_noise_is_drawn_for_each_action_and_three_times_per_update(tmp_path):
    """NoisyNet-DQN (Fortunato et al. 2018, Algorithm 1): new noise for every action; in each update, independent
    noise for the online network, the target network and the Double-DQN action choice. The evaluation draws none."""
    flags = [*TINY_ATARI, "--total-timesteps", "200", "--eval-episodes", "1", "--network", "data-efficient"]
    command = [sys.executable, "-c", COUNTING_NOISE, os.path.join(ROOT, "rainbow_atari.py"), *flags]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    updates = len(range(100, 200, 4))  # from --learning-starts 100, one every --train-frequency 4 steps
    noisy_layers = 4  # value and advantage streams, two layers each
    assert f"noise draws: {noisy_layers * (200 + 3 * updates)}" in result.stderr, result.stderr


def test_a_refill_after_a_resume_without_memory_starts_from_the_observation_in_progress():
    """A resumed run without its replay memory refills it from each env's observation in progress (start_streams):
    its 4 frames become the first slots, and the n-step transitions that follow rebuild the same stacks."""
    rb = rainbow.PrioritizedFrameReplayBuffer(
        40, (1, 1), 4, CPU, 1, alpha=0.5, priority_epsilon=1e-6, n_step=2, gamma=0.5
    )
    frames = lambda *ids: np.array(ids, np.uint8).reshape(1, 4, 1, 1)  # noqa: E731
    rb.start_streams(frames(10, 11, 12, 13), step=500)
    obs = frames(10, 11, 12, 13)
    for t, reward in enumerate([1.0, 2.0, 4.0]):
        next_obs = frames(*obs[0, 1:, 0, 0], 14 + t)
        rb.add(obs, [t], np.array([reward], np.float32), next_obs, np.array([False]), np.array([False]))
        obs = next_obs
    drawable = np.flatnonzero(rb.tree.leaves(np.arange(40)) > 0)
    assert list(drawable) == [3, 4]  # the refill's frames start no transition; the newest waits for its second step
    batch = rb.get(drawable, CPU)
    assert batch.obs[0].flatten().tolist() == [10, 11, 12, 13] and batch.next_obs[0].flatten().tolist() == [
        12,
        13,
        14,
        15,
    ]
    assert batch.returns.tolist() == [1.0 + 0.5 * 2.0, 2.0 + 0.5 * 4.0] and batch.actions.tolist() == [0, 1]
    assert rb.began == 500
