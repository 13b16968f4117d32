"""bootstrapped_dqn_atari.py: masked per-head losses, the 1/K torso gradient, voting and the acting head."""

import numpy as np
import pytest
import torch

import bootstrapped_dqn_atari as boot

N_HEADS = 3


@pytest.fixture
def network_and_batch():
    torch.manual_seed(0)
    network = boot.QNetwork(n_actions=4, n_heads=N_HEADS)
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    actions = torch.tensor([0, 3, 1, 2, 3])
    td_target = torch.randn(5, N_HEADS)
    return network, obs, actions, td_target


def loss_and_head_gradients(network, obs, actions, td_target, masks):
    """The masked loss, and for each head the gradients of its own parameters (hidden rows, output layer)."""
    network.zero_grad()
    q_taken = network(obs).gather(2, actions[:, None, None].expand(-1, N_HEADS, 1)).squeeze(2)
    loss = boot.masked_head_losses(q_taken, td_target, masks).sum()  # what the loop backpropagates
    loss.backward()

    def rows(grad, k):  # head k's 512 hidden units
        return grad[k * 512 : (k + 1) * 512]

    return loss, [
        [
            rows(network.hidden.weight.grad, k),
            rows(network.hidden.bias.grad, k),
            network.out_weight.grad[k],
            network.out_bias.grad[k],
        ]
        for k in range(N_HEADS)
    ]


def test_network_gives_every_head_its_q_values(network_and_batch):
    network, obs, _, _ = network_and_batch
    assert network(obs).shape == (5, N_HEADS, 4)


def test_one_heads_q_values_are_that_head_of_the_full_forward(network_and_batch):
    network, obs, _, _ = network_and_batch
    with torch.no_grad():
        every_head = network(obs)
        for k in range(N_HEADS):
            torch.testing.assert_close(network.head_q_values(obs, [k] * len(obs)), every_head[:, k])
        heads = [2, 0, 1, 1, 2]  # one head per row, as in several envs
        torch.testing.assert_close(network.head_q_values(obs, heads), every_head[torch.arange(len(obs)), heads])


def test_a_head_gets_no_gradient_from_transitions_its_mask_excludes(network_and_batch):
    network, obs, actions, td_target = network_and_batch
    masks = torch.ones(5, N_HEADS)
    masks[1:, 0] = 0.0  # head 0 learns from transition 0 only
    masks[:, 2] = 0.0  # head 2 from nothing
    _, grads = loss_and_head_gradients(network, obs, actions, td_target, masks)
    for grad in grads[2]:
        assert torch.count_nonzero(grad) == 0
    # head 0's gradient is that of transition 0 alone: changing what the excluded transitions hold changes nothing
    other_targets = td_target.clone()
    other_targets[1:] += 100.0
    _, grads_other = loss_and_head_gradients(network, obs, actions, other_targets, masks)
    for grad, grad_other in zip(grads[0], grads_other[0]):
        assert torch.count_nonzero(grad) > 0
        torch.testing.assert_close(grad, grad_other)
    _, grads_alone = loss_and_head_gradients(network, obs[:1], actions[:1], td_target[:1], masks[:1])
    for grad, grad_alone in zip(grads[0], grads_alone[0]):
        torch.testing.assert_close(grad, grad_alone)
    # while head 1, which includes them, sees the change
    assert not torch.allclose(grads[1][2], grads_other[1][2])


def test_each_head_averages_over_its_own_transitions():
    q_taken = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    td_target = torch.zeros(3, 2)
    masks = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # head 0: (1 + 9) / 2 over transitions 0 and 1; head 1: (0 + 4) / 2 over transitions 1 and 2
    torch.testing.assert_close(boot.masked_head_losses(q_taken, td_target, masks), torch.tensor([5.0, 2.0]))


def test_torso_gradient_is_the_sum_of_the_heads_contributions_over_k(network_and_batch, monkeypatch):
    network, obs, actions, td_target = network_and_batch
    masks = torch.bernoulli(torch.full((5, N_HEADS), 0.6), generator=torch.Generator().manual_seed(1))
    masks[0] = 1.0  # every head includes something
    loss_and_head_gradients(network, obs, actions, td_target, masks)
    torso_gradient = [p.grad.clone() for p in network.torso.parameters()]

    # each head's own contribution, through a torso that does not rescale
    monkeypatch.setattr(boot, "scale_gradient", lambda x, scale: x)
    contributions = []
    for k in range(N_HEADS):
        only_k = torch.zeros_like(masks)
        only_k[:, k] = masks[:, k]
        loss_and_head_gradients(network, obs, actions, td_target, only_k)
        contributions.append([p.grad.clone() for p in network.torso.parameters()])
    for i, grad in enumerate(torso_gradient):
        torch.testing.assert_close(grad, sum(c[i] for c in contributions) / N_HEADS)


def test_scale_gradient_keeps_the_value():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = boot.scale_gradient(x, 0.1)
    torch.testing.assert_close(y, x.detach())
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.1, 0.1]))


def test_vote_picks_the_majority_and_breaks_ties_by_summed_q():
    q = torch.tensor(
        [
            # 3 heads, 3 actions. Row 0: greedy actions 2, 2, 0 -> action 2 by majority (though action 0 sums higher)
            [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [9.0, 0.0, 0.0]],
            # row 1: greedy actions 0, 1, 2 -> a three-way tie; summed Q 1.0, 1.5, 1.2 -> action 1
            [[0.5, 0.0, 0.0], [0.5, 1.5, 0.0], [0.0, 0.0, 1.2]],
        ]
    )
    actions, agreement = boot.vote(q)
    assert actions.tolist() == [2, 1]
    torch.testing.assert_close(agreement, torch.tensor([2 / 3, 1 / 3]))


def test_the_acting_head_changes_only_when_a_whole_game_ends():
    # Breakout has 5 lives: each lost life ends a learning episode (terminated) but not the game;
    # short games (a time limit) add truncations
    env = boot.make_env(boot.Args(), 0, max_episode_steps=2000)
    rng = np.random.default_rng(0)
    acting = boot.HeadPerGame(10, 1, rng)
    heads_per_game, life_losses = [{acting.heads[0]}], 0
    obs, _ = env.reset(seed=0)
    for _ in range(3000):
        obs, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        game_over = "episode" in info
        acting.after_games([0] if game_over else [])
        if game_over:
            heads_per_game.append(set())
        heads_per_game[-1].add(acting.heads[0])
        life_losses += terminated and not game_over
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    assert life_losses > 10 and len(heads_per_game) > 5
    assert all(len(heads) == 1 for heads in heads_per_game)  # one head per game, through its lost lives
    assert len(set.union(*heads_per_game)) > 1  # and games do get different heads


def test_masks_are_stored_with_their_transitions():
    rb = boot.MaskedFrameReplayBuffer(16, (84, 84), 4, torch.device("cpu"), n_streams=1, n_heads=N_HEADS)
    frames = np.zeros((1, 4, 84, 84), dtype=np.uint8)
    masks = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=bool)
    for step, mask in enumerate(masks):
        done = np.array([step == 3])
        rb.add(frames + step, [step], [float(step)], frames + step + 1, done, np.array([False]), mask[None])
    batch, batch_masks = rb.sample(64, np.random.default_rng(0), torch.device("cpu"))
    for row in range(64):
        step = int(batch.actions[row])
        assert batch.rewards[row].item() == step and batch.next_obs[row, -1, 0, 0].item() == step + 1
        np.testing.assert_array_equal(batch_masks[row].numpy(), masks[step].astype(np.float32))
