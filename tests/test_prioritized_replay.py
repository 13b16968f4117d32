"""per_dqn_atari.py: the sum tree, prioritized sampling and its importance-sampling weights."""

import numpy as np
import pytest
import torch
from test_atari_buffer import play_and_record

import per_dqn_atari as per


def test_sampling_frequencies_match_the_priorities():
    tree = per.SumTree(10)  # not a power of two: 6 unused leaves stay at 0
    priorities = np.array([1.0, 0.0, 2.0, 0.5, 4.0, 1.5, 0.25, 3.0, 0.0, 0.75])
    tree.update(np.arange(10), priorities)
    n_draws = 200_000
    rng = np.random.default_rng(0)
    slots = tree.find(rng.random(n_draws) * tree.total)
    counts = np.bincount(slots, minlength=tree.n_leaves)
    assert counts[10:].sum() == 0 and counts[1] == 0 and counts[8] == 0  # priority 0: never drawn
    expected = n_draws * priorities / priorities.sum()
    drawable = priorities > 0
    chi_square = (((counts[:10] - expected) ** 2)[drawable] / expected[drawable]).sum()
    # 8 drawable slots, 7 degrees of freedom: the chi-square statistic of a correct tree exceeds 24.3 with
    # probability 0.001 (and this seed is fixed). A leaf off by one slot or a walk that skews a level moves
    # whole shares of the mass, which at 200,000 draws puts the statistic in the thousands.
    assert chi_square < 24.3, (chi_square, counts[:10], expected)


def test_the_buffer_draws_in_proportion_to_priority_to_the_alpha():
    rb = per.PrioritizedFrameReplayBuffer(16, (84, 84), 4, torch.device("cpu"), 1, alpha=0.6, priority_epsilon=1e-6)
    frame_stack = np.zeros((1, 4, 84, 84), dtype=np.uint8)
    for step in range(5):  # one episode of 5 transitions: slots 0-4 start them, slot 5 holds the last observation
        rb.add(frame_stack, [0], [0.0], frame_stack, np.array([step == 4]), np.array([False]))
    td_errors = np.array([0.5, 2.0, 0.1, 1.0, 4.0])
    rb.update_priorities(np.arange(5), td_errors)
    expected = (np.abs(td_errors) + 1e-6) ** 0.6
    np.testing.assert_allclose(rb.tree.leaves(np.arange(6)), np.append(expected, 0.0))
    rng = np.random.default_rng(0)
    n_batches = 4000
    slots = np.concatenate([rb.sample(32, rng, torch.device("cpu"), beta=0.4)[1] for _ in range(n_batches)])
    frequencies = np.bincount(slots, minlength=6) / len(slots)
    # stratified draws vary less than independent ones: the binomial standard error (under 0.0014 here)
    # bounds their error, and 5 of them is far beyond chance
    np.testing.assert_allclose(frequencies, np.append(expected / expected.sum(), 0.0), atol=5 * 0.0014)


def test_tree_stays_consistent_after_many_updates_with_duplicates():
    rng = np.random.default_rng(0)
    tree = per.SumTree(1000)
    for _ in range(500):
        slots = rng.integers(0, 1000, 32)
        slots[:8] = slots[8:16]  # at least 8 slots given twice, with different values
        tree.update(slots, rng.random(32))
    internal = tree.nodes[1 : tree.n_leaves]
    np.testing.assert_array_equal(
        internal, tree.nodes[2 : 2 * tree.n_leaves : 2] + tree.nodes[3 : 2 * tree.n_leaves : 2]
    )
    leaves = tree.leaves(np.arange(1000))
    assert tree.total == pytest.approx(leaves.sum(), rel=1e-12)
    assert tree.nodes[tree.n_leaves + 1000 :].sum() == 0.0


def test_find_never_lands_on_a_slot_of_priority_zero():
    tree = per.SumTree(4)
    tree.update(np.arange(4), np.array([0.3, 0.0, 0.7, 0.0]))
    # masses at the edges, and past the total as rounding could make them
    masses = np.array([0.0, 0.3 - 1e-12, 0.3, 1.0 - 1e-12, 1.0, 1.0 + 1e-9])
    np.testing.assert_array_equal(tree.find(masses), [0, 0, 2, 2, 2, 2])


def test_a_duplicate_slot_ends_with_one_of_its_values():
    tree = per.SumTree(8)
    tree.update(np.array([3, 5, 3]), np.array([1.0, 2.0, 7.0]))
    assert tree.leaves(np.array([3]))[0] in (1.0, 7.0)
    assert tree.total == tree.leaves(np.arange(8)).sum()


def test_importance_sampling_weights_by_hand():
    rb = per.PrioritizedFrameReplayBuffer(8, (84, 84), 4, torch.device("cpu"), 1, alpha=0.5, priority_epsilon=0.5)
    frame_stack = np.zeros((1, 4, 84, 84), dtype=np.uint8)
    for step in range(4):
        rb.add(frame_stack, [0], [0.0], frame_stack, np.array([step == 3]), np.array([False]))
    rb.update_priorities(np.arange(4), np.array([0.5, -1.5, 3.5, 7.5]))  # priorities 1, 2, 4, 8
    leaf = {0: 1.0, 1: 2**0.5, 2: 2.0, 3: 8**0.5}  # priority ** 0.5
    total = sum(leaf.values())
    n = 4  # stored transitions
    rng = np.random.default_rng(3)
    for beta in (0.4, 0.7, 1.0):
        for _ in range(20):
            _, slots, weights = rb.sample(4, rng, torch.device("cpu"), beta)
            # w_i = (N * P(i))^-beta, divided by the largest w in the batch
            w = {s: (n * leaf[s] / total) ** -beta for s in slots}
            hand = [w[s] / max(w.values()) for s in slots]
            np.testing.assert_allclose(weights.numpy(), hand, rtol=1e-6)
    # a stratified batch of 4 takes one slot from each quarter of the mass 7.24: [0, 1.81) holds slots 0 and 1, ...
    # the last quarter [5.43, 7.24) lies inside slot 3 (from 4.41 on), so every batch ends with slot 3
    assert slots[-1] == 3


@pytest.mark.parametrize("n_envs", [1, 3])
def test_wrap_around_gives_each_slot_the_right_priority(n_envs):
    """Through truncations, life losses and several laps of a small buffer, a slot's leaf is non-zero exactly
    while it starts a sampleable transition; a new transition enters at the largest priority seen so far."""
    capacity = 60

    def check_then_learn_a_little(rb, rng):
        # in every stream, the slot just added, before the newest observation
        newest_transitions = rb.first_slot + (rb.pos - 2) % rb.stream_capacity
        np.testing.assert_allclose(rb.tree.leaves(newest_transitions), rb.max_priority**rb.alpha)
        stored = np.arange(rb.capacity)
        np.testing.assert_array_equal(rb.tree.leaves(stored) > 0, rb._is_valid(stored))
        # like the training loop: sample, then give the batch new priorities
        _, slots, _ = rb.sample(4, rng, torch.device("cpu"), beta=0.4)
        rb.update_priorities(slots, rng.exponential(size=4))

    rb = per.PrioritizedFrameReplayBuffer(
        capacity * n_envs, (84, 84), 4, torch.device("cpu"), n_envs, alpha=0.6, priority_epsilon=1e-6
    )
    rb, recorded, counts = play_and_record(
        per, capacity, 400 // n_envs, 120, n_envs, rb=rb, after_each_step=check_then_learn_a_little
    )
    assert counts["terminated"] > 3 and counts["truncated"] > 3, counts
    assert rb.tree.total == pytest.approx(rb.tree.leaves(np.arange(rb.capacity)).sum(), rel=1e-12)
    # and what it samples after all those laps is what the agent saw
    batch, slots, _ = rb.sample(64, np.random.default_rng(1), torch.device("cpu"), beta=1.0)
    for row, slot in enumerate(slots):
        obs, action, _, next_obs, _ = recorded[slot]
        np.testing.assert_array_equal(batch.obs[row].numpy(), obs)
        np.testing.assert_array_equal(batch.next_obs[row].numpy(), next_obs)
        assert batch.actions[row].item() == action
