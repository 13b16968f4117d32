"""The math and the pieces of each script, against hand-computed cases."""

import numpy as np
import pytest
import torch

import double_dqn_atari
import dqn_atari
import dqn_cartpole
import dueling_dqn_atari
import tabular_q_frozenlake as frozenlake


def test_linear_schedule():
    assert dqn_cartpole.linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert dqn_cartpole.linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert dqn_cartpole.linear_schedule(1.0, 0.1, 100, 100) == 0.1
    assert dqn_cartpole.linear_schedule(1.0, 0.1, 100, 10_000) == 0.1
    assert dqn_cartpole.linear_schedule(1.0, 0.1, 0, 0) == 0.1  # no exploration phase at all


def test_dqn_target_bootstraps_truncations_but_not_terminations():
    next_q = torch.tensor([[1.0, 3.0], [2.0, -1.0], [0.5, 0.25]])
    rewards = torch.tensor([1.0, 0.0, -1.0])
    terminated = torch.tensor([0.0, 1.0, 0.0])  # row 2 ended by a time limit: it still bootstraps
    target = dqn_atari.dqn_target(next_q, rewards, terminated, gamma=0.9)
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.9 * 3.0, 0.0, -1.0 + 0.9 * 0.5]))


def test_double_dqn_target_lets_the_online_network_pick_and_the_target_network_score():
    next_q_online = torch.tensor([[1.0, 2.0], [5.0, 0.0], [0.0, 1.0]])
    next_q_target = torch.tensor([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]])
    rewards = torch.tensor([1.0, 2.0, 3.0])
    terminated = torch.tensor([0.0, 0.0, 1.0])
    target = dqn_cartpole.double_dqn_target(next_q_online, next_q_target, rewards, terminated, gamma=0.5)
    # row 0: online picks action 1, target scores it 20; row 1: online picks 0 -> 30 (not the max, 40); row 2: terminal
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.5 * 20.0, 2.0 + 0.5 * 30.0, 3.0]))


def test_atari_double_dqn_target_on_terminal_and_truncated_transitions():
    next_q_online = torch.tensor([[0.0, 9.0, 1.0], [4.0, 1.0, 2.0], [0.0, 0.0, 7.0], [3.0, 0.0, 0.0]])
    next_q_target = torch.tensor([[2.0, -1.0, 5.0], [1.0, 8.0, 0.0], [6.0, 6.0, 2.0], [-4.0, 9.0, 9.0]])
    rewards = torch.tensor([1.0, 0.0, -1.0, 1.0])
    # row 2 ended by a life loss or game over: no bootstrap; row 3 was cut by the time limit (truncated,
    # so not terminated): it bootstraps like any other step
    terminated = torch.tensor([0.0, 0.0, 1.0, 0.0])
    target = double_dqn_atari.double_dqn_target(next_q_online, next_q_target, rewards, terminated, gamma=0.99)
    # online picks: 1, 0, (2), 0; target values: -1, 1, (ignored), -4. DQN would have used 5, 8, -, 9.
    torch.testing.assert_close(target, torch.tensor([1.0 - 0.99, 0.99, -1.0, 1.0 - 0.99 * 4.0]))


def test_dueling_aggregation_subtracts_the_mean_advantage():
    value = torch.tensor([[1.0], [-2.0]])
    advantage = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 0.0, 4.0]])  # means 3 and 1
    q = dueling_dqn_atari.dueling_q_values(value, advantage)
    torch.testing.assert_close(q, torch.tensor([[-1.0, 0.0, 1.0, 4.0], [-3.0, -3.0, -3.0, 1.0]]))
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), value)  # V is the mean of Q over actions
    # identifiability: a constant added to every advantage of a state leaves Q unchanged
    shifted = advantage + torch.tensor([[10.0], [-7.5]])
    torch.testing.assert_close(dueling_dqn_atari.dueling_q_values(value, shifted), q)


def test_dueling_network_shape_and_the_scaled_torso_gradient():
    torch.manual_seed(0)
    network = dueling_dqn_atari.QNetwork(n_actions=6)
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    assert network(obs).shape == (3, 6)

    def gradients(loss):  # of the last conv layer (torso) and the value stream's hidden layer
        network.zero_grad()
        loss.backward()
        return network.torso[4].weight.grad.clone(), network.value[0].weight.grad.clone()

    torso_scaled, value_scaled = gradients(network(obs).sum())
    features = network.torso(obs.float() / 255.0)  # the same forward pass without the rescaling
    torso_plain, value_plain = gradients(
        dueling_dqn_atari.dueling_q_values(network.value(features), network.advantage(features)).sum()
    )
    torch.testing.assert_close(torso_scaled, torso_plain / 2**0.5)  # the torso learns at 1/sqrt(2) ...
    torch.testing.assert_close(value_scaled, value_plain)  # ... the streams at full rate
    assert dueling_dqn_atari.TORSO_GRADIENT_SCALE == pytest.approx(0.7071, abs=1e-4)


def test_scale_gradient_keeps_the_value():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = dueling_dqn_atari.scale_gradient(x, 0.25)
    torch.testing.assert_close(y, x.detach())
    (y * torch.tensor([4.0, 8.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([1.0, 2.0]))


def test_cartpole_replay_buffer_wraps_around():
    rb = dqn_cartpole.ReplayBuffer(capacity=3, obs_dim=2)
    for step in range(5):
        rb.add(np.full(2, step), step % 2, float(step), np.full(2, step + 1), step == 4)
    assert rb.size == 3 and sorted(rb.rewards) == [2.0, 3.0, 4.0]
    batch = rb.sample(64, np.random.default_rng(0), torch.device("cpu"))
    torch.testing.assert_close(batch.next_obs[:, 0], batch.obs[:, 0] + 1)
    torch.testing.assert_close(batch.terminated, (batch.rewards == 4.0).float())


def test_atari_network_takes_uint8_stacks():
    q_network = dqn_atari.QNetwork(n_actions=6)
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    assert q_network(obs).shape == (5, 6)


def test_atari_buffer_allocates_about_one_frame_per_slot():
    # every array and tensor the buffer holds, whatever its name: a new per-slot field, or a second frame per
    # slot (56,448 bytes for obs + next_obs stacks), shows up here
    rb = dqn_atari.FrameReplayBuffer(1000, (84, 84), 4, torch.device("cpu"), n_streams=4)
    held = [v for v in vars(rb).values() if isinstance(v, (np.ndarray, torch.Tensor))]
    per_slot = sum(v.nbytes for v in held) / rb.capacity
    assert 84 * 84 <= per_slot <= 84 * 84 + 100, per_slot  # one frame, plus a few bytes of bookkeeping (7,067 B)


def test_video_schedule_is_gymnasiums():
    recorded = [game for game in range(3001) if dqn_atari.RecordGames.is_recorded(game)]
    assert recorded == [0, 1, 8, 27, 64, 125, 216, 343, 512, 729, 1000, 2000, 3000]


def small_mdp():
    # state 0: action 0 reaches the goal (reward 1) with probability 0.5, else stays; action 1 falls in a hole
    P = {
        0: {0: [(0.5, 1, 1.0, True), (0.5, 0, 0.0, False)], 1: [(1.0, 2, 0.0, True)]},
        1: {0: [(1.0, 1, 0.0, True)], 1: [(1.0, 1, 0.0, True)]},
        2: {0: [(1.0, 2, 0.0, True)], 1: [(1.0, 2, 0.0, True)]},
    }
    return frozenlake.model_arrays(P, 3, 2)


def test_value_iteration_and_exact_success_on_a_hand_mdp():
    R, C = small_mdp()
    Q = frozenlake.value_iteration(R, C, gamma=0.9)
    # V(0) = 0.5 + 0.9 * 0.5 * V(0)  =>  V(0) = 0.5 / 0.55
    assert Q[0, 0] == pytest.approx(0.5 / 0.55)
    assert Q[0, 1] == pytest.approx(0.0)
    start = np.array([1.0, 0.0, 0.0])
    assert frozenlake.success_probability(np.array([0, 0, 0]), R, C, horizon=3, start=start) == pytest.approx(
        1 - 0.5**3
    )
    assert frozenlake.success_probability(np.array([1, 0, 0]), R, C, horizon=3, start=start) == 0.0
    assert frozenlake.best_success_probability(R, C, horizon=3, start=start) == pytest.approx(1 - 0.5**3)


def test_exact_success_probability_matches_play_in_the_real_env():
    args = frozenlake.Args(map_name="4x4", is_slippery=True)
    env = frozenlake.make_env(args, seed=0)
    n_states, n_actions = env.observation_space.n, env.action_space.n
    R, C = frozenlake.model_arrays(env.unwrapped.P, n_states, n_actions)
    policy = frozenlake.value_iteration(R, C, 0.99).argmax(axis=1)
    exact = frozenlake.success_probability(
        policy, R, C, env.spec.max_episode_steps, env.unwrapped.initial_state_distrib
    )
    n = 5000
    measured = frozenlake.evaluate(policy, env, n, seed=0)
    # a binomial proportion over 5,000 episodes has a standard error under 0.0071: allow 4 of them
    assert abs(measured - exact) < 4 * np.sqrt(exact * (1 - exact) / n), (measured, exact)
    assert 0.7 < exact < 0.8  # the known optimum of slippery 4x4 within 100 steps is about 0.74
