"""benchmarks/grid.py and benchmarks/report.py: a 2-script x 2-seed grid of tiny Breakout runs on a local Ray
instance, with a failing game beside it; a second invocation that skips the finished runs; benchmarks/same_start.py
and benchmarks/evaluate_final.py on them; the report made from those runs; rliable's IQM against a hand computation."""

import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_protocol import offline_run

from conftest import ROOT, TINY_ATARI

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import report  # noqa: E402  (benchmarks/report.py)

from results_csv import read_curve, write_curve  # noqa: E402  (benchmarks/results_csv.py)

# two or three whole games of random play each; no evaluation games, to stay short; tracked by W&B, offline
TINY = [*TINY_ATARI, "--total-timesteps", "500", "--eval-episodes", "0", "--track"]
SCRIPTS = ["dqn_atari.py", "double_dqn_atari.py"]
GOOD, BAD = "BreakoutNoFrameskip-v4", "NoSuchGameNoFrameskip-v4"


def grid(out, env_ids, *extra):
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "grid.py"), "--scripts", *SCRIPTS]
    # a fresh local Ray instance, whatever cluster this machine may also run
    command += [
        "--env-ids",
        *env_ids,
        "--seeds",
        "1",
        "2",
        "--out",
        str(out),
        "--address",
        "local",
        *extra,
        "--",
        *TINY,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    """The grid run once: Breakout's four runs and the missing game's four failures."""
    out = tmp_path_factory.mktemp("grid")
    return out, grid(out, [GOOD, BAD])


def test_a_failing_run_is_reported_and_the_others_finish(finished_grid):
    out, result = finished_grid
    assert result.returncode == 1, result.stdout + result.stderr
    for script in SCRIPTS:
        for seed in (1, 2):
            name = f"{script[:-3]} {BAD} seed {seed}"
            assert f"FAILED {name} (exit 2)" in result.stdout  # reported with its stderr's tail...
            assert not os.path.exists(out / f"{BAD}__{script[:-3]}__{seed}" / "run.json")
    assert f"error: unknown --env-id '{BAD}'" in result.stdout
    assert "4 run(s) failed" in result.stderr
    for script in SCRIPTS:  # ...while the good runs went on to the end
        for seed in (1, 2):
            folder = out / f"{GOOD}__{script[:-3]}__{seed}"
            record = json.loads((folder / "run.json").read_text())
            assert record["returncode"] == 0 and record["seed"] == seed and record["script"] == script
            assert record["command"][:5] == [script, "--env-id", GOOD, "--seed", str(seed)]
            assert record["steps_per_second"] > 0
            games, evaluation = read_curve(folder / "curve.csv")
            assert len(games) >= 1 and evaluation == []
            [checkpoint] = folder.glob("runs/*/checkpoint.pt")  # a finished run keeps no buffer-sized checkpoint
            assert "replay" not in torch.load(checkpoint, weights_only=True)["loop"]
            assert all(0 < step <= 500 for step, _ in games)


def test_tracked_runs_go_to_one_wandb_group_named_as_the_grid(finished_grid):
    out, _ = finished_grid
    for script in SCRIPTS:
        for seed in (1, 2):
            [folder] = glob.glob(str(out / f"{GOOD}__{script[:-3]}__{seed}" / "wandb" / "offline-run-*"))
            run = offline_run(folder)
            assert run["group"] == out.name and run["config"]["seed"] == seed, run


def test_no_more_runs_at_once_than_cpus(finished_grid):
    """Ray gives a task's CPU back while the task blocks in ray.get; a run that asked for the stop flag that way
    let a queued run start beside it."""
    out, result = finished_grid
    cpus = float(result.stdout.split(" CPUs, ")[0].rsplit(" ", 1)[1])
    spans = [json.loads(path.read_text()) for path in out.glob("*/run.json")]
    assert len(spans) == 4
    at_once = max(sum(other["began"] <= span["began"] < other["ended"] for other in spans) for span in spans)
    assert at_once <= cpus, (at_once, cpus)


def test_a_second_invocation_skips_finished_runs(finished_grid):
    out, _ = finished_grid
    records = sorted(out.glob("*/run.json"))
    before = [path.stat().st_mtime_ns for path in records]
    again = grid(out, [GOOD])
    assert again.returncode == 0, again.stderr
    assert "4 runs: 4 finished before, 0 to run" in again.stdout
    assert [path.stat().st_mtime_ns for path in sorted(out.glob("*/run.json"))] == before


def same_start(folder, until):
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "same_start.py"), str(folder), "--until", str(until)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_same_start_reruns_a_finished_run_and_tells_a_changed_one(finished_grid, tmp_path):
    out, _ = finished_grid
    folder = out / f"{GOOD}__double_dqn_atari__2"
    result = same_start(folder, 450)  # past learning starts (100): the updates' math is in the games too
    assert result.returncode == 0, result.stdout + result.stderr
    assert "`double_dqn_atari.py --env-id BreakoutNoFrameskip-v4 --seed 2 --no-cuda" in result.stdout
    assert "--track" not in result.stdout  # the grid's runs were tracked; a check sends nothing to W&B
    games = [game for game in read_curve(folder / "curve.csv")[0] if game[0] <= 450]
    assert f"{len(games)} in the run, {len(games)} in the rerun" in result.stdout and "same:" in result.stdout

    changed = tmp_path / folder.name  # the same record, one game's return changed
    changed.mkdir()
    (changed / "run.json").write_text((folder / "run.json").read_text())
    lines = (folder / "curve.csv").read_text().splitlines()
    kind, step, value = lines[2].split(",")
    lines[2] = f"{kind},{step},{float(value) + 1}"
    (changed / "curve.csv").write_text("\n".join(lines) + "\n")
    result = same_start(changed, 450)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"DIFFERENT from game 2: it ended at step {int(step):,}" in result.stdout


def test_evaluate_final_plays_a_runs_last_network(finished_grid, tmp_path):
    out, _ = finished_grid
    one = tmp_path / "one"  # one run, to stay short
    one.mkdir()
    (one / f"{GOOD}__dqn_atari__2").symlink_to(out / f"{GOOD}__dqn_atari__2")
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "evaluate_final.py"), str(one), "--episodes", "1"]
    result = subprocess.run([*command, "--out", str(tmp_path / "final.csv")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "final.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["name"], row["seed"], row["games"], row["env_id"]) == ("dqn_atari", "2", "1", GOOD)
    assert float(row["mean"]) >= 0
    # the run was tracked, and its checkpoint keeps --track; playing it for the CSV starts no W&B run
    played = out / f"{GOOD}__dqn_atari__2" / "runs" / "*"
    assert not glob.glob(str(played / "wandb")) and not glob.glob(str(played / "runs" / "*-play" / "wandb-run-id"))


def test_report_draws_the_runs_and_tabulates_them(finished_grid, tmp_path):
    out, _ = finished_grid
    halves = [tmp_path / "seed1", tmp_path / "seed2"]  # the grid in two folders, as two grids (or games) would be
    for seed, half in enumerate(halves, 1):
        half.mkdir()
        for run in out.glob(f"*__{seed}"):
            (half / run.name).symlink_to(run)
    report_py = [sys.executable, os.path.join(ROOT, "benchmarks", "report.py")]
    result = subprocess.run(
        [*report_py, *map(str, halves), "--out", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    twice = subprocess.run(
        [*report_py, str(out), str(halves[0]), "--out", str(tmp_path / "x")], capture_output=True, timeout=300
    )
    assert twice.returncode == 2 and b"seed 1 on Breakout is in both" in twice.stderr
    for picture in ("Breakout.png", "aggregate.png"):
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "report.md").read_text()
    for script in SCRIPTS:  # each row: the mean and sample std over both seeds of the last 20 games, by hand
        games = [read_curve(out / f"{GOOD}__{script[:-3]}__{s}" / "curve.csv")[0][-20:] for s in (1, 2)]
        scores = [np.mean([r for _, r in run_games]) for run_games in games]
        counts = sorted(len(run_games) for run_games in games)  # tiny runs finish fewer than 20: the cell says so
        fewer = (
            ""
            if counts[0] == 20
            else f" (of {counts[0] if counts[0] == counts[1] else f'{counts[0]}-{counts[1]}'} games)"
        )
        expected = f"{np.mean(scores):.1f} ± {np.std(scores, ddof=1):.1f}{fewer}"
        normalized = [(score - 1.7) / (30.5 - 1.7) for score in scores]  # Breakout: random 1.7, human 30.5
        row = f"| {script[:-3]} | Breakout | 2 | {expected} | - | {np.mean(normalized):.3f} ± {np.std(normalized, ddof=1):.3f} |"
        assert row in table
        assert f"| {script[:-3]} | 2 runs x 1 game | Breakout |" in table
    assert BAD not in table  # failed runs have no run.json, so no place in the report


def test_rliable_iqm_matches_a_hand_computation():
    # 4 runs x 2 games: IQM drops the lowest and the highest quarter of all 8 scores and averages the middle 4
    scores = np.array([[0.9, 0.1], [0.3, 2.0], [0.5, 0.7], [0.2, 0.4]])
    middle = np.sort(scores.ravel())[2:6]  # 0.3, 0.4, 0.5, 0.7
    points, intervals = report.aggregate({"a": scores}, reps=500)
    assert points["a"][0] == pytest.approx(np.mean(middle)) == pytest.approx(0.475)
    assert points["a"][1] == pytest.approx(scores.mean())
    (iqm_low, mean_low), (iqm_high, mean_high) = intervals["a"]
    assert iqm_low < 0.475 < iqm_high and mean_low < scores.mean() < mean_high
    assert scores.min() <= iqm_low and iqm_high <= scores.max()


def test_human_normalized_and_the_curve_smoothing():
    assert report.human_normalized(14.6, "Pong") == pytest.approx(1.0)
    assert report.human_normalized(-20.7, "Pong") == pytest.approx(0.0)
    steps, returns = np.arange(1, 31) * 10, np.arange(30, dtype=float)  # game i ends at step 10 (i + 1)
    run = report.Run("a", "PongNoFrameskip-v4", 1, steps, returns, [])
    means = report.recent_mean(run, np.array([5, 10, 55, 300, 301]))
    assert np.isnan(means[0]) and means[1] == 0 and means[2] == pytest.approx(np.mean(range(5)))
    assert means[3] == pytest.approx(np.mean(range(10, 30))) and np.isnan(means[4])
    assert run.game == "Pong" and report.Run("a", "ALE/Pong-v5", 1, steps, returns, []).game == "Pong"


def test_the_curve_over_seeds_stops_where_a_seed_has_no_game_to_average():
    early = report.Run("a", "PongNoFrameskip-v4", 1, np.array([10, 20, 30]), np.array([0.0, 0.0, 3.0]), [])
    late = report.Run("a", "PongNoFrameskip-v4", 2, np.array([5, 20, 40]), np.array([6.0, 6.0, 9.0]), [])
    mean, low, high = report.over_seeds([early, late], np.array([5, 20, 30, 35, 40]))
    assert np.isnan(mean[0]) and np.isnan(low[0]) and np.isnan(high[0])  # seed 1 has no game yet
    assert (mean[1], low[1], high[1]) == (3.0, 0.0, 6.0) and (mean[2], low[2], high[2]) == (3.5, 1.0, 6.0)
    assert np.isnan(mean[3:]).all() and np.isnan(high[3:]).all()  # past seed 1's last game: not seed 2 alone


def test_where_names_ran_different_games_they_also_compare_on_the_games_all_ran():
    def run(name, env_id, seed, score):
        return report.Run(name, env_id, seed, np.array([10]), np.array([score]), [score])

    runs = [run("dqn", "PongNoFrameskip-v4", seed, -20.7 + 35.3 * seed / 4) for seed in (1, 2)]  # Pong 0.25, 0.5
    runs += [run(name, "BreakoutNoFrameskip-v4", seed, 1.7 + 28.8 * seed) for name in ("dqn", "v") for seed in (1, 2)]
    (_, matrices, games_of, *_, picture), (title, common, common_games, points, _, common_picture) = (
        report.aggregate_sections(report.grouped(runs), reps=50)
    )
    assert games_of == {"dqn": ["Breakout", "Pong"], "v": ["Breakout"]} and matrices["dqn"].shape == (2, 2)
    assert (picture, common_picture) == ("aggregate.png", "aggregate_common.png") and title.endswith(": Breakout")
    assert common_games == {"dqn": ["Breakout"], "v": ["Breakout"]}
    assert common["dqn"] == pytest.approx(np.array([[1.0], [2.0]])) and points["dqn"][1] == pytest.approx(1.5)
    assert len(report.aggregate_sections(report.grouped(runs[2:]), reps=50)) == 1  # the same games: one aggregate


def write_run(folder, name, env_id, seed, games, evaluation):
    """A run folder as report.py --export writes it: run.json and curve.csv."""
    run = folder / f"{env_id.replace('/', '-')}__{name}__{seed}"
    run.mkdir(parents=True)
    record = {"script": "dqn_atari.py", "name": name, "env_id": env_id, "seed": seed, "wall_s": 60.0}
    (run / "run.json").write_text(json.dumps(record))
    write_curve(str(run / "curve.csv"), games, evaluation)


def test_a_report_on_a_game_outside_the_first_seven_with_v5_and_v4_ids(tmp_path):
    """MsPacman, from DQN Zoo's 57 games; ALE/MsPacman-v5 and MsPacmanNoFrameskip-v4 are the same game. Runs of 12
    games say that their "last 20 games" average 12; 2 runs per name make the intervals rough, and say so."""
    assert len(report.REFERENCE_SCORES) == 57
    random, human = report.REFERENCE_SCORES["MsPacman"]
    games = [(100 * (k + 1), random + 10.0 * k) for k in range(12)]
    for seed in (1, 2):
        write_run(tmp_path / "runs", "dqn_v4", "MsPacmanNoFrameskip-v4", seed, games, [human])
        write_run(tmp_path / "runs", "dqn_v5", "ALE/MsPacman-v5", seed, games, [random])
    published = tmp_path / "published.csv"  # a paper's table (v4's protocol), with a game these runs did not play
    published.write_text(
        '\ufeffgame, env_id, score, source\nMsPacman, MsPacmanNoFrameskip-v4, 500.0,"a paper, table 2"\n'
        'Pong,PongNoFrameskip-v4,1.0,"a paper, table 2"\n'
    )
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "report.py"), str(tmp_path / "runs"), "--reps", "100"]
    command += ["--published", str(published)]
    result = subprocess.run([*command, "--out", str(tmp_path / "report")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert text.index("## Against the published scores") < text.index("## Final scores")
    assert "| dqn_v4 | MsPacman | 2 | 6951.6 ± 0.0 | 6951.6, 6951.6 | 500.0 | 2 of 2 |" in text
    assert "| dqn_v5 | MsPacman |" not in text.split("## Final scores")[0]  # v5's sticky actions: not the paper's
    assert "Source: a paper, table 2." in text and "| Pong |" not in text
    assert "| dqn_v4 | MsPacman | 2 | 362.3 ± 0.0 (of 12 games) | 6951.6 ± 0.0 | 1.000 ± 0.000 |" in text
    assert "| dqn_v5 | MsPacman | 2 | 362.3 ± 0.0 (of 12 games) | 307.3 ± 0.0 | 0.000 ± 0.000 |" in text
    assert "| dqn_v4 | 2 runs x 1 game | MsPacman | 1.000 [1.000, 1.000] |" in text
    assert "**Rough: these intervals rank nothing.** dqn_v4, dqn_v5 rest on fewer than 5 runs" in text
    assert "![MsPacman](MsPacman.png)" in text and (tmp_path / "report" / "MsPacman.png").is_file()
    assert (tmp_path / "report" / "aggregate.png").is_file()
    # a subset of a benchmark whose aggregate is defined over all its games (Atari 100k's 26): no aggregate; a rerun
    # into the same folder takes away the earlier report's aggregate pictures
    (tmp_path / "report" / "aggregate_common.png").write_bytes(b"an earlier report's")
    result = subprocess.run(
        [*command, "--no-aggregate", "--out", str(tmp_path / "report")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for picture in ("aggregate.png", "aggregate_common.png"):
        assert f"removed {tmp_path / 'report' / picture}: an earlier report's" in result.stdout
    alone = (tmp_path / "report" / "report.md").read_text()
    assert "## Aggregate" not in alone and "IQM" not in alone
    assert not list((tmp_path / "report").glob("aggregate*")) and (tmp_path / "report" / "MsPacman.png").is_file()
    assert alone.split("## Learning curves")[0] == text.split("## Aggregate")[0]  # the rest as it was
    # the same name on both ids would pool two protocols into one row: refused, with what to do
    write_run(tmp_path / "mixed", "dqn", "MsPacmanNoFrameskip-v4", 1, games, [human])
    write_run(tmp_path / "mixed", "dqn", "ALE/MsPacman-v5", 2, games, [random])
    with pytest.raises(ValueError, match=r"dqn has runs of MsPacman under two ids .* give each its own name"):
        report.load_runs([str(tmp_path / "mixed")])
    write_run(tmp_path / "mixed", "dqn", "ALE/MsPacman-v5", 1, games, [random])  # the same seed on both ids, too
    with pytest.raises(ValueError, match=r"dqn has runs of MsPacman under two ids .* give each its own name"):
        report.load_runs([str(tmp_path / "mixed")])
    # the intervals repeat: rliable draws from numpy's global RNG, which aggregate() seeds
    matrices = {"a": np.random.default_rng(0).random((3, 2))}
    assert str(report.aggregate(matrices, reps=200)) == str(report.aggregate(matrices, reps=200))


def test_a_published_table_is_read_strictly_and_says_when_no_game_is_in_common(tmp_path):
    table = tmp_path / "published.csv"
    table.write_text("game,der_100k,source\nPong,1.0,x\n")
    with pytest.raises(ValueError, match="has no score column"):
        report.read_published(str(table))
    table.write_text("game,score,source\nPong,,x\n")
    with pytest.raises(ValueError, match="Pong's score '' is not a number"):
        report.read_published(str(table))
    write_run(tmp_path / "runs", "dqn", "BreakoutNoFrameskip-v4", 1, [(100, 2.0), (200, 4.0)], [])
    groups = report.grouped(report.load_runs([str(tmp_path / "runs")]))
    table.write_text("game,score,source\nPong,1.0,x\n")
    text = report.published_table(groups, report.read_published(str(table)), str(table))
    assert f"No run played a game (and id) of {table}: Pong." in text
    table.write_text("game,score,source\nBreakout,3.5,y\n")  # no env id: any; one run, scored by its last games
    text = report.published_table(groups, report.read_published(str(table)), str(table))
    assert "| dqn | Breakout | 1 | 3.0 | 3.0 | 3.5 | 0 of 1 |" in text and "Source: y." in text


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("n_names", [1, 2, 7])
def test_the_aggregate_figure_keeps_its_labels_apart(n_names):
    """The x-axis label lies below the tick labels, the names' labels (with their runs x games) apart from each
    other, and the title above the panels, for 1, 2 and 7 names."""
    rng = np.random.default_rng(0)
    matrices = {f"name_{k}": rng.random((3 if k % 2 else 5, 2)) for k in range(n_names)}
    points, intervals = report.aggregate(matrices, reps=50)
    fig = report.aggregate_figure(points, intervals, matrices)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.get_axes()
    assert [ax.get_xlabel() for ax in axes] == ["Human-normalized score"] * 2
    names = [label.get_text() for label in axes[0].get_yticklabels()]
    assert sorted(names) == sorted(f"{name}\n({report.runs_and_games(m)})" for name, m in matrices.items())
    for ax in axes:
        label = ax.xaxis.label.get_window_extent(renderer)
        for tick in ax.get_xticklabels():
            if tick.get_text():
                assert not overlaps(label, tick.get_window_extent(renderer)), (n_names, tick.get_text())
    name_boxes = [label.get_window_extent(renderer) for label in axes[0].get_yticklabels()]
    assert not any(overlaps(a, b) for i, a in enumerate(name_boxes) for b in name_boxes[i + 1 :])
    title = fig._suptitle.get_window_extent(renderer)
    for ax in axes:
        assert not overlaps(title, ax.get_window_extent(renderer))
        assert not overlaps(title, ax.title.get_window_extent(renderer))
    assert ("rough" in fig._suptitle.get_text()) == any(m.shape[0] < 5 for m in matrices.values())
    import matplotlib.pyplot as plt

    plt.close(fig)
