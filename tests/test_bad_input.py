"""Bad input ends with one `error:` line on stderr and exit code 2, never a traceback."""

import pytest

CASES = [
    ("dqn_cartpole.py", ["--env-id", "NoSuchEnv-v0"], "unknown --env-id"),
    ("dqn_cartpole.py", ["--env-id", "Pendulum-v1"], "Discrete"),
    ("dqn_cartpole.py", ["--env-id", "MountainCarContinuous-v0"], "Discrete"),
    ("dqn_cartpole.py", ["--buffer-size", 10, "--batch-size", 64], "--buffer-size"),
    ("dqn_cartpole.py", ["--total-timesteps", 0], "--total-timesteps"),
    ("dqn_cartpole.py", ["--total-timesteps", -5], "--total-timesteps"),
    ("dqn_cartpole.py", ["--learning-starts", -1], "--learning-starts"),
    ("tabular_q_frozenlake.py", ["--env-id", "NoSuchEnv-v0"], "unknown --env-id"),
    ("tabular_q_frozenlake.py", ["--env-id", "CartPole-v1"], "transition model"),
    ("tabular_q_frozenlake.py", ["--total-timesteps", -1], "--total-timesteps"),
    ("tabular_q_frozenlake.py", ["--learning-rate", 0], "--learning-rate"),
    ("dqn_atari.py", ["--env-id", "NoSuchEnv-v0"], "unknown --env-id"),
    ("dqn_atari.py", ["--env-id", "CartPole-v1"], "not an Atari environment"),
    ("dqn_atari.py", ["--env-id", "Breakout-v4"], "skips frames itself"),
    ("dqn_atari.py", ["--env-id", "BreakoutDeterministic-v4"], "NoFrameskip"),
    ("dqn_atari.py", ["--buffer-size", 16, "--batch-size", 32], "--buffer-size"),
    ("dqn_atari.py", ["--total-timesteps", 0], "--total-timesteps"),
    ("dqn_atari.py", ["--buffer-size", 4, "--batch-size", 2], "--buffer-size"),
    ("dqn_atari.py", ["--buffer-device", "cuda", "--no-cuda"], "--buffer-device"),
    ("dqn_atari.py", ["--num-envs", 0], "--num-envs"),
    ("dqn_atari.py", ["--num-envs", 4, "--buffer-size", 16, "--batch-size", 8], "at least 5 per env (20)"),
    ("double_dqn_atari.py", ["--env-id", "CartPole-v1"], "not an Atari environment"),
    ("double_dqn_atari.py", ["--buffer-size", 16, "--batch-size", 32], "--buffer-size"),
    ("dueling_dqn_atari.py", ["--env-id", "Breakout-v4"], "NoFrameskip"),
    ("dqn_atari.py", ["--repeat-action-probability", "1.5"], "--repeat-action-probability must be in [0, 1]"),
    ("dueling_dqn_atari.py", ["--total-timesteps", -3], "--total-timesteps"),
    ("per_dqn_atari.py", ["--env-id", "Pendulum-v1"], "not an Atari environment"),
    ("per_dqn_atari.py", ["--alpha", -0.5], "--alpha"),
    ("per_dqn_atari.py", ["--beta-start", 1.5], "--beta-start"),
    ("per_dqn_atari.py", ["--priority-epsilon", 0], "--priority-epsilon"),
    ("bootstrapped_dqn_atari.py", ["--env-id", "NoSuchEnv-v0"], "unknown --env-id"),
    ("bootstrapped_dqn_atari.py", ["--n-heads", 0], "--n-heads"),
    ("bootstrapped_dqn_atari.py", ["--mask-prob", 0], "--mask-prob"),
    ("bootstrapped_dqn_atari.py", ["--mask-prob", 1.5], "--mask-prob"),
    ("rainbow_atari.py", ["--n-step", 0], "--n-step must be positive"),
    ("rainbow_atari.py", ["--v-min", 10, "--v-max", -10], "--v-min must be below --v-max"),
    ("rainbow_atari.py", ["--v-min", 0, "--v-max", 1e-45], "the atoms apart in float32"),
    ("rainbow_atari.py", ["--v-max", "inf"], "--v-min and --v-max must be finite float32 numbers"),
    ("rainbow_atari.py", ["--v-max", 1e39], "--v-min and --v-max must be finite float32 numbers"),
    ("rainbow_atari.py", ["--n-atoms", 1], "--n-atoms must be in [2, 1001]"),
    ("rainbow_atari.py", ["--noisy-std", -0.1], "--noisy-std"),
    ("rainbow_atari.py", ["--noisy-std", "nan"], "--noisy-std must be finite"),
    ("rainbow_atari.py", ["--adam-epsilon", "nan"], "--adam-epsilon must be positive and finite"),
    ("rainbow_atari.py", ["--learning-starts", 5, "--num-envs", 2], "--learning-starts must be at least"),
    ("rainbow_atari.py", ["--buffer-size", 12, "--batch-size", 4, "--num-envs", 2], "at least 7 per env (14)"),
    *[
        (script, ["--gamma", 1.5], "--gamma")
        for script in [
            "dqn_cartpole.py",
            "dqn_atari.py",
            "double_dqn_atari.py",
            "dueling_dqn_atari.py",
            "per_dqn_atari.py",
            "bootstrapped_dqn_atari.py",
            "rainbow_atari.py",
        ]
    ],
    ("dqn_atari.py", ["--checkpoint-frequency", -1], "--checkpoint-frequency"),
    # what a new user tried (the trust pass): a name that would nest folders, gymnasium's refused seeds, a v5 id
    # without its namespace, an Atari game given to CartPole
    ("dqn_atari.py", ["--exp-name", "mytest/huber"], "--exp-name 'mytest/huber' cannot name a folder"),
    ("dqn_cartpole.py", ["--exp-name", "a/b"], "cannot name a folder"),
    ("dqn_atari.py", ["--seed", -1], "--seed must not be negative"),
    ("dqn_cartpole.py", ["--seed", -1], "--seed must not be negative"),
    ("dqn_atari.py", ["--env-id", "Breakout-v5"], "did you mean ALE/Breakout-v5?"),
    ("dqn_cartpole.py", ["--env-id", "BreakoutNoFrameskip-v4"], "an Atari game: dqn_atari.py plays those"),
    ("dqn_atari.py", ["--eval-only"], "--eval-only and --load-model go together"),
]


@pytest.mark.parametrize("script,flags,message", CASES, ids=[f"{s}:{' '.join(map(str, f))}" for s, f, _ in CASES])
def test_bad_input_is_one_clear_line(script, flags, message, run_script):
    result = run_script(script, *flags, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert message in error_lines[0]
    assert "no CUDA GPU" not in result.stderr  # the note comes once every check has passed, never before an error


def test_cuda_without_a_gpu_falls_back_to_the_cpu_and_says_so(run_script):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_script(
        "dqn_cartpole.py",
        "--cuda",
        "--total-timesteps",
        50,
        "--learning-starts",
        10,
        "--batch-size",
        4,
        "--eval-episodes",
        0,
    )
    assert result.returncode == 0, result.stderr
    assert "no CUDA GPU found, running on the CPU" in result.stderr


@pytest.mark.parametrize("script", ["dqn_cartpole.py", "dqn_atari.py", "tabular_q_frozenlake.py"])
def test_runs_existing_as_a_file_is_one_clear_line(script, run_script, tmp_path):
    (tmp_path / "runs").write_text("a file where the run folders would go")
    device = [] if script == "tabular_q_frozenlake.py" else ["--no-cuda"]  # the Q-table has no device
    result = run_script(script, *device, "--total-timesteps", 50, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [error_line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Not a directory" in error_line or "File exists" in error_line, error_line
