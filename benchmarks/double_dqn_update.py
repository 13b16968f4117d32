"""Why double_dqn_atari.py runs a separate no-grad forward pass for the online network's next-state Q-values.

    python benchmarks/double_dqn_update.py

Times one gradient update (batch 32, Breakout's 4 actions, random frames) three ways: DQN's (target network
only), Double DQN's as the script does it (one more forward pass, without autograd), and Double DQN's with the
online network run once over observations and next observations together (64 stacks), the next half detached.
The batched form saves a call but makes autograd compute weight gradients over all 64 stacks.
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import double_dqn_atari as double  # noqa: E402
from results_csv import write_csv  # noqa: E402  (benchmarks/results_csv.py)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "double_dqn_update.csv")
    )
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)

    q_network = double.QNetwork(4).to(memory_format=torch.channels_last)
    target_network = double.QNetwork(4).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-4, fused=True)
    obs, next_obs = (torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8) for _ in range(2))
    actions, rewards, terminated = torch.randint(0, 4, (32,)), torch.zeros(32), torch.zeros(32)

    def step(q_taken, td_target):
        loss = F.mse_loss(q_taken, td_target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def dqn():
        with torch.no_grad():
            td_target = rewards + 0.99 * target_network(next_obs).max(dim=1).values * (1.0 - terminated)
        step(q_network(obs).gather(1, actions[:, None]).squeeze(1), td_target)

    def double_separate():
        with torch.no_grad():
            td_target = double.double_dqn_target(
                q_network(next_obs), target_network(next_obs), rewards, terminated, 0.99
            )
        step(q_network(obs).gather(1, actions[:, None]).squeeze(1), td_target)

    def double_batched():
        q_both = q_network(torch.cat([obs, next_obs]))
        with torch.no_grad():
            td_target = double.double_dqn_target(
                q_both[32:].detach(), target_network(next_obs), rewards, terminated, 0.99
            )
        step(q_both[:32].gather(1, actions[:, None]).squeeze(1), td_target)

    variants = {
        "DQN": dqn,
        "Double DQN, separate no-grad forward (the script)": double_separate,
        "Double DQN, batched with the online forward": double_batched,
    }
    times = {name: [] for name in variants}
    for _ in range(opts.rounds):
        for name, update in variants.items():
            update()
            start = time.perf_counter()
            for _ in range(opts.updates):
                update()
            times[name].append((time.perf_counter() - start) / opts.updates * 1e3)
    for name, runs in times.items():
        print(
            f"{name:<52} {statistics.median(runs):6.1f} ms per update  (rounds: {' '.join(f'{r:.1f}' for r in runs)})"
        )
    write_csv(
        opts.out,
        [
            {
                "update": name,
                "median_ms": round(statistics.median(runs), 2),
                "rounds_ms": " ".join(f"{r:.2f}" for r in runs),
                "threads": opts.threads,
            }
            for name, runs in times.items()
        ],
    )
    print(f"command: python benchmarks/double_dqn_update.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
