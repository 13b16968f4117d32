"""Turn a grid's runs into learning curves per game, a table of final scores, and aggregate scores from rliable.

    python benchmarks/report.py grid_runs --out grid_runs/report
    python benchmarks/report.py grid_runs --export benchmarks/results/grid_breakout_300k   # the small files to commit
    python benchmarks/report.py benchmarks/results/breakout_300k benchmarks/results/pong_500k --out both_games

Each DIR holds run folders as benchmarks/grid.py writes them, `{env_id}__{name}__{seed}/`: `run.json`, which a run gets
once it has finished (folders without one are left out), and `curve.csv`, one row per whole game (or, where a folder
has no `curve.csv`, the TensorBoard events under its `runs/`). `--export` copies only those two files of each run,
which is what benchmarks/results/ keeps, and the report reads such a copy the same way.

Into `--out` it writes:
- `{game}.png`: the return of whole games against steps, where the value at a step is the mean of the last 20 games
  that a run had finished by then; one color per name, the line the mean over seeds, the band from the lowest to
  the highest seed, both drawn only at the steps where every seed has a value;
- `aggregate.png`: the IQM and the mean of human-normalized scores over runs x games, each with its 95% stratified
  bootstrap interval, computed and drawn by rliable (Agarwal et al., 2021, "Deep RL at the Edge of the Statistical
  Precipice"), each name labelled with the runs x games behind it; where the names ran different games (DQN on two,
  its variants on one), `aggregate_common.png` is the same over the games every name ran, the one set on which they
  compare. Where a name has fewer than 5 runs, the figure and the report say that its intervals are rough and rank
  nothing: with 3 runs a 95% bootstrap interval held the true mean in 65-74% of simulated cases
  (benchmarks/interval_coverage.py, benchmarks/results/interval_coverage.csv);
- `report.md`: the tables behind them, and the pictures (`--no-aggregate` leaves the aggregates out, and an
  aggregate picture of an earlier report in `--out` that this one does not draw is removed, saying so); with
  `--published CSV`, first each name's scores beside a paper's on the games both have. Per name and game: the last
  20 training games (or as many as a run finished, which the cell then says) and the evaluation games (mean ± std
  over seeds, and the number of seeds), the human-normalized score, the learning curves, the mean return in each
  `--bin` steps, and the wall time and steps per second of the runs. It is also printed.

A run's score is the mean of its evaluation games (`--eval-episodes` at `--eval-epsilon`, 0.05 by default) where it
played any, else the mean of its last 20 training games. Human-normalized: (score - random) / (human - random), with
the random and human scores of the 57 games in DQN Zoo's `dqn_zoo/atari_data.py` (github.com/google-deepmind/dqn_zoo):
a later set than the Nature paper's own (human Breakout 30.5 and Pong 14.6 here, 31.8 and 9.3 in Mnih et al., 2015),
games started by up to 30 no-ops.
A game's `ALE/{Game}-v5` and `{Game}NoFrameskip-v4` ids are the same game (their protocols differ: compare names,
not ids).
"""

import argparse
import csv
import glob
import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

from results_csv import read_curve, read_events, write_curve  # benchmarks/results_csv.py

# game: (random, human) for the 57 games of Atari-57, the data of DQN Zoo's dqn_zoo/atari_data.py
# (github.com/google-deepmind/dqn_zoo, Apache 2.0), under the ALE's game names: ALE/MsPacman-v5 and
# MsPacmanNoFrameskip-v4 are both MsPacman
REFERENCE_SCORES = {
    "Alien": (227.8, 7127.7),
    "Amidar": (5.8, 1719.5),
    "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3),
    "Asteroids": (719.1, 47388.7),
    "Atlantis": (12850.0, 29028.1),
    "BankHeist": (14.2, 753.1),
    "BattleZone": (2360.0, 37187.5),
    "BeamRider": (363.9, 16926.5),
    "Berzerk": (123.7, 2630.4),
    "Bowling": (23.1, 160.7),
    "Boxing": (0.1, 12.1),
    "Breakout": (1.7, 30.5),
    "Centipede": (2090.9, 12017.0),
    "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4),
    "Defender": (2874.5, 18688.9),
    "DemonAttack": (152.1, 1971.0),
    "DoubleDunk": (-18.6, -16.4),
    "Enduro": (0.0, 860.5),
    "FishingDerby": (-91.7, -38.7),
    "Freeway": (0.0, 29.6),
    "Frostbite": (65.2, 4334.7),
    "Gopher": (257.6, 2412.5),
    "Gravitar": (173.0, 3351.4),
    "Hero": (1027.0, 30826.4),
    "IceHockey": (-11.2, 0.9),
    "Jamesbond": (29.0, 302.8),
    "Kangaroo": (52.0, 3035.0),
    "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3),
    "MontezumaRevenge": (0.0, 4753.3),
    "MsPacman": (307.3, 6951.6),
    "NameThisGame": (2292.3, 8049.0),
    "Phoenix": (761.4, 7242.6),
    "Pitfall": (-229.4, 6463.7),
    "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3),
    "Qbert": (163.9, 13455.0),
    "Riverraid": (1338.5, 17118.0),
    "RoadRunner": (11.5, 7845.0),
    "Robotank": (2.2, 11.9),
    "Seaquest": (68.4, 42054.7),
    "Skiing": (-17098.1, -4336.9),
    "Solaris": (1236.3, 12326.7),
    "SpaceInvaders": (148.0, 1668.7),
    "StarGunner": (664.0, 10250.0),
    "Surround": (-10.0, 6.5),
    "Tennis": (-23.8, -8.3),
    "TimePilot": (3568.0, 5229.2),
    "Tutankham": (11.4, 167.6),
    "UpNDown": (533.4, 11693.2),
    "Venture": (0.0, 1187.5),
    "VideoPinball": (16256.9, 17667.9),
    "WizardOfWor": (563.5, 4756.5),
    "YarsRevenge": (3092.9, 54576.9),
    "Zaxxon": (32.5, 9173.3),
}
LAST_GAMES = 20
ROUGH_BELOW = 5  # runs per name: an interval on fewer is rough (see benchmarks/interval_coverage.py) and ranks nothing
# names in this order (a variant after its parent), then any others alphabetically
ORDER = [
    "dqn_atari",
    "double_dqn_atari",
    "dueling_dqn_atari",
    "per_dqn_atari",
    "bootstrapped_dqn_atari",
    "rainbow_atari",
]


@dataclass
class Run:
    """One finished run: its whole training games (the step each ended at, its return) and its evaluation games."""

    name: str
    env_id: str
    seed: int
    steps: np.ndarray
    returns: np.ndarray
    evaluation: list[float]
    record: dict = field(default_factory=dict)

    @property
    def game(self) -> str:
        """BreakoutNoFrameskip-v4 and ALE/Breakout-v5 are both Breakout."""
        return self.env_id.split("/")[-1].split("-v")[0].removesuffix("NoFrameskip").removesuffix("Deterministic")

    def last_games(self) -> float:
        return float(np.mean(self.returns[-LAST_GAMES:])) if len(self.returns) else float("nan")

    def score(self) -> float:
        return float(np.mean(self.evaluation)) if self.evaluation else self.last_games()


def curve_of(run_folder: str) -> tuple[list[tuple[int, float]], list[float]]:
    """A run folder's games: from its curve.csv, or else from the TensorBoard events under its runs/."""
    if os.path.isfile(os.path.join(run_folder, "curve.csv")):
        return read_curve(os.path.join(run_folder, "curve.csv"))
    (events,) = glob.glob(os.path.join(run_folder, "runs", "*", ""))
    return read_events(events)


def load_runs(folders: list[str]) -> list[Run]:
    """The finished runs of every folder; a run (game, name and seed) found in two folders is an error."""
    runs, seen = [], {}
    for record_path in sorted(path for folder in folders for path in glob.glob(os.path.join(folder, "*", "run.json"))):
        run_folder = os.path.dirname(record_path)
        with open(record_path) as f:
            record = json.load(f)
        games, evaluation = curve_of(run_folder)
        name = record.get("name", record["script"].removesuffix(".py"))
        steps = np.array([step for step, _ in games], dtype=np.int64)
        returns = np.array([value for _, value in games], dtype=np.float64)
        run = Run(name, record["env_id"], record["seed"], steps, returns, evaluation, record)
        key = (run.game, run.name, run.seed)
        if key in seen and seen[key][1] != run.env_id:
            raise ValueError(two_ids(run.name, run.game, run.env_id, seen[key][1]))
        if key in seen:
            raise ValueError(f"{run.name} seed {run.seed} on {run.game} is in both {seen[key][0]} and {run_folder}")
        seen[key] = (run_folder, run.env_id)
        runs.append(run)
    for run in runs:  # ALE/Breakout-v5 and BreakoutNoFrameskip-v4 are one game, under two protocols: never one row
        other = next((o for o in runs if (o.game, o.name) == (run.game, run.name) and o.env_id != run.env_id), None)
        if other is not None:
            raise ValueError(two_ids(run.name, run.game, run.env_id, other.env_id))
    return runs


def two_ids(name: str, game: str, env_id: str, other_id: str) -> str:
    return (
        f"{name} has runs of {game} under two ids ({env_id}, {other_id}), whose protocols differ: give each its own "
        "name (benchmarks/grid.py --tag)"
    )


def export(runs_folder: str, to: str) -> None:
    """Copy each finished run's run.json and curve.csv (made from its events if it has none) to `to`."""
    for record_path in sorted(glob.glob(os.path.join(runs_folder, "*", "run.json"))):
        run_folder = os.path.dirname(record_path)
        target = os.path.join(to, os.path.basename(run_folder))
        os.makedirs(target, exist_ok=True)
        shutil.copy(record_path, target)
        write_curve(os.path.join(target, "curve.csv"), *curve_of(run_folder))
        print(f"exported {target}")


def grouped(runs: list[Run]) -> dict[str, dict[str, list[Run]]]:
    """game -> name -> its runs, in seed order."""
    groups: dict[str, dict[str, list[Run]]] = {}

    def order(run: Run) -> tuple:
        script = run.record.get("script", "").removesuffix(".py")
        return run.game, ORDER.index(script) if script in ORDER else len(ORDER), run.name, run.seed

    for run in sorted(runs, key=order):
        groups.setdefault(run.game, {}).setdefault(run.name, []).append(run)
    return groups


def recent_mean(run: Run, at_steps: np.ndarray) -> np.ndarray:
    """At each step, the mean return of the last 20 games the run had finished by then (nan before its first game
    and after its last)."""
    ended = np.searchsorted(run.steps, at_steps, side="right")  # games finished by each step
    first = np.maximum(ended - LAST_GAMES, 0)
    cumulative = np.concatenate([[0.0], np.cumsum(run.returns)])
    with np.errstate(invalid="ignore"):
        means = (cumulative[ended] - cumulative[first]) / (ended - first)
    means[at_steps > (run.steps[-1] if len(run.steps) else -1)] = np.nan
    return means


def over_seeds(runs: list[Run], at_steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean, lowest and highest of the seeds' recent_mean at each step, left blank (nan) where any seed has no value:
    past one seed's last game, a mean of the others would jump."""
    curves = np.array([recent_mean(run, at_steps) for run in runs])
    return curves.mean(0), curves.min(0), curves.max(0)


def plot_game(game: str, by_name: dict[str, list[Run]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = max((int(run.steps[-1]) for runs in by_name.values() for run in runs if len(run.steps)), default=1)
    at_steps = np.linspace(0, end, 300)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, runs in by_name.items():
        mean, low, high = over_seeds(runs, at_steps)
        (line,) = ax.plot(at_steps, mean, label=f"{name} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
        if len(runs) > 1:
            ax.fill_between(at_steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"return, mean of the last {LAST_GAMES} games")
    ax.set_title(f"{game}: mean over seeds, band from the lowest to the highest seed")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def human_normalized(score: float, game: str) -> float:
    random, human = REFERENCE_SCORES[game]
    return (score - random) / (human - random)


def normalized_matrices(
    groups: dict[str, dict[str, list[Run]]], only: set | None = None
) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """name -> human-normalized scores, runs x games, over the games with reference scores that the name ran (of
    `only`, if given); where a name has more seeds on one game than another, the seeds that ran every game. Also
    name -> those games."""
    games_of: dict[str, list[str]] = {}
    for game, by_name in groups.items():
        if game in REFERENCE_SCORES and (only is None or game in only):
            for name in by_name:
                games_of.setdefault(name, []).append(game)
    matrices = {}
    for name, games in games_of.items():
        seeds = set.intersection(*({run.seed for run in groups[game][name]} for game in games))
        columns = []
        for game in games:
            scores = {run.seed: human_normalized(run.score(), game) for run in groups[game][name]}
            columns.append([scores[seed] for seed in sorted(seeds)])
        matrices[name] = np.array(columns).T
    return matrices, games_of


def aggregate(matrices: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> tuple[dict, dict]:
    """IQM and mean over runs x games, with 95% stratified-bootstrap intervals: rliable's point estimates and
    intervals, name -> [IQM, mean] and name -> [[IQM low, mean low], [IQM high, mean high]]."""
    from rliable import library as rly
    from rliable import metrics

    def iqm_and_mean(scores):
        return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores)])

    # rliable 1.2 draws its resamples from numpy's global RNG (np.random.choice in StratifiedBootstrap.update_indices),
    # whatever random_state says: seeding it is what makes a report the same every time
    np.random.seed(seed)
    with warnings.catch_warnings():  # rliable 1.2 hands arch a RandomState, which arch 7 says it will stop taking
        warnings.simplefilter("ignore", FutureWarning)
        return rly.get_interval_estimates(matrices, iqm_and_mean, reps=reps, random_state=np.random.RandomState(seed))


def runs_and_games(matrix: np.ndarray) -> str:
    runs, games = matrix.shape
    return f"{runs} run{'s' if runs > 1 else ''} x {games} game{'s' if games > 1 else ''}"


def rough(matrices: dict[str, np.ndarray]) -> list[str]:
    """The names whose intervals rest on fewer than ROUGH_BELOW runs."""
    return [name for name, matrix in matrices.items() if matrix.shape[0] < ROUGH_BELOW]


def aggregate_figure(points: dict, intervals: dict, matrices: dict[str, np.ndarray]):
    """rliable's interval plot, each name labelled with the runs x games behind its intervals. rliable sizes the
    figure by its rows and puts its x-axis label at a fixed height, which for one or two names lies on the tick
    labels: here each panel labels its own axis, and the rows are tall enough for the labels of a few names."""
    import matplotlib

    matplotlib.use("Agg")
    from rliable import plot_utils

    labels = {name: f"{name}\n({runs_and_games(matrices[name])})" for name in points}
    fig, axes = plot_utils.plot_interval_estimates(
        {labels[name]: value for name, value in points.items()},
        {labels[name]: value for name, value in intervals.items()},
        metric_names=["IQM", "Mean"],
        algorithms=list(labels.values()),
        xlabel="",
        row_height=max(0.85, 2.0 / len(points)),
        subfigure_width=3.6,
    )
    for ax in axes:
        ax.set_xlabel("Human-normalized score", fontsize="large")
    title = "95% stratified-bootstrap intervals"
    if rough(matrices):
        title += f"\nrough: on fewer than {ROUGH_BELOW} runs per name these intervals rank nothing (at 3 runs, a 95% interval held\nthe true mean in 65-74% of simulated cases: benchmarks/interval_coverage.py)"
    fig.suptitle(title, fontsize="medium", y=1.04, va="bottom")
    return fig


def plot_aggregate(points: dict, intervals: dict, matrices: dict[str, np.ndarray], path: str) -> None:
    import matplotlib.pyplot as plt

    fig = aggregate_figure(points, intervals, matrices)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def mean_std(values: list[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def aggregate_sections(groups: dict, reps: int) -> list[tuple]:
    """The aggregates to report, each (title, matrices, games_of, points, intervals, picture): over every game each
    name ran; and, where names ran different games, over the games they all ran, the one fair comparison."""
    matrices, games_of = normalized_matrices(groups)
    if not matrices:
        return []
    sections = [("over every game each name ran", matrices, games_of, *aggregate(matrices, reps), "aggregate.png")]
    common = set.intersection(*(set(games) for games in games_of.values()))
    if common and any(set(games) != common for games in games_of.values()):
        matrices, games_of = normalized_matrices(groups, only=common)
        title = f"over the games every name ran: {', '.join(sorted(common))}"
        sections.append((title, matrices, games_of, *aggregate(matrices, reps), "aggregate_common.png"))
    return sections


def tables(groups: dict, sections: list[tuple], bin_size: int) -> str:
    lines = ["## Final scores", ""]
    lines += [
        "Mean ± standard deviation over seeds. Last 20 games: the last 20 training games of each run (where a run "
        "finished fewer, the cell says how many it averages); evaluation: each run's evaluation games; "
        "human-normalized: the score (evaluation where a run has one, else the last 20 games) against DQN Zoo's "
        "random and human scores.",
        "",
        "| name | game | seeds | last 20 games | evaluation | human-normalized |",
        "|---|---|---|---|---|---|",
    ]
    for game, by_name in groups.items():
        for name, runs in by_name.items():
            evaluations = [float(np.mean(run.evaluation)) for run in runs if run.evaluation]
            normalized = [human_normalized(run.score(), game) for run in runs] if game in REFERENCE_SCORES else []
            counts = sorted({min(len(run.returns), LAST_GAMES) for run in runs})
            games = str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]}-{counts[-1]}"
            fewer = "" if counts[0] == LAST_GAMES else f" (of {games} games)"
            lines.append(
                f"| {name} | {game} | {len(runs)} | {mean_std([run.last_games() for run in runs])}{fewer} | "
                f"{mean_std(evaluations) if evaluations else '-'} | {mean_std(normalized, 3) if normalized else '-'} |"
            )
    for title, matrices, games_of, points, intervals, picture in sections:
        lines += ["", f"## Aggregate human-normalized scores {title} (rliable, 95% stratified-bootstrap intervals)"]
        lines += [
            "",
            f"![{title}]({picture})",
            "",
            "| name | runs x games | games | IQM | mean |",
            "|---|---|---|---|---|",
        ]
        for name, (iqm, mean) in points.items():
            (iqm_low, mean_low), (iqm_high, mean_high) = intervals[name]  # rows: the lows, the highs
            lines.append(
                f"| {name} | {runs_and_games(matrices[name])} | {', '.join(games_of[name])} | "
                f"{iqm:.3f} [{iqm_low:.3f}, {iqm_high:.3f}] | {mean:.3f} [{mean_low:.3f}, {mean_high:.3f}] |"
            )
        if rough(matrices):
            lines += [
                "",
                f"**Rough: these intervals rank nothing.** {', '.join(rough(matrices))} rest{'s' if len(rough(matrices)) == 1 else ''} on "
                f"fewer than {ROUGH_BELOW} runs per game. With so few runs a bootstrap interval holds the true value "
                "less often than it says: in benchmarks/interval_coverage.py a 95% interval of the mean of 3 normal runs held "
                "the true mean 65-74% of the time with each of rliable's percentile, basic and BCa intervals (81-83% at 5 "
                "runs, about 91% at 10; one game, the mean), and below 4 runs the IQM of one game is just the mean. Overlapping or not, these intervals do not order the names.",
            ]
    lines += ["", "## Learning curves", ""]
    lines += [
        f"![{game}]({game}.png)\n\n{game}: the return of whole games against steps, the mean of the last "
        f"{LAST_GAMES} games each run had finished (fewer at the start); the line is the mean over seeds, the band the "
        "lowest to the highest seed.\n"
        for game in groups
    ]
    for game, by_name in groups.items():
        end = max(int(run.steps[-1]) for runs in by_name.values() for run in runs if len(run.steps))
        starts = range(0, end + 1, bin_size)
        lines += ["", f"## {game}: mean return of the games that ended in each {bin_size // 1000}k steps", ""]
        lines += ["| name | " + " | ".join(f"{s // 1000}-{(s + bin_size) // 1000}k" for s in starts) + " |"]
        lines += ["|---|" + "---|" * len(starts)]
        for name, runs in by_name.items():
            cells = []
            for start in starts:
                in_bin = [run.returns[(run.steps >= start) & (run.steps < start + bin_size)] for run in runs]
                seeds = [returns.mean() for returns in in_bin if len(returns)]  # each seed's bin mean, then over seeds
                cells.append(f"{np.mean(seeds):.1f}" if seeds else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Time", "", "| name | game | seeds | wall time per run (min) | steps per second |"]
    lines += ["|---|---|---|---|---|"]
    for game, by_name in groups.items():
        for name, runs in by_name.items():
            walls = [run.record["wall_s"] / 60 for run in runs if run.record.get("wall_s")]
            speeds = [run.record["steps_per_second"] for run in runs if run.record.get("steps_per_second")]
            lines.append(
                f"| {name} | {game} | {len(runs)} | {mean_std(walls) if walls else '-'} | "
                f"{mean_std(speeds) if speeds else '-'} |"
            )
    return "\n".join(lines) + "\n"


def read_published(path: str) -> dict[str, dict]:
    """A paper's per-game table: a CSV with `game` (the ALE's name: Breakout), `score` and `source` columns, and
    optionally `env_id` (then only runs of that id are set beside it). game -> its row."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = [{key.strip(): (value or "").strip() for key, value in row.items()} for row in csv.DictReader(f)]
    missing = {"game", "score", "source"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path} has no {', '.join(sorted(missing))} column (it needs game, score and source)")
    for row in rows:
        try:
            row["score"] = float(row["score"])
        except ValueError:
            raise ValueError(f"{path}: {row['game']}'s score {row['score']!r} is not a number") from None
    return {row["game"]: row for row in rows}


def published_table(groups: dict, published: dict[str, dict], path: str) -> str:
    """Each name's scores beside a published table's, on the games (and ids, where the table gives them) both have."""
    lines = ["## Against the published scores", ""]
    lines += [
        f"Published: {path}. Ours: each run's score (its evaluation games' mean, else its last 20 games), mean ± std "
        "over runs, and each run's in seed order; only runs of the table's env id, where it gives one (protocols "
        "differ between ids).",
        "",
        "| name | game | runs | ours | each run | published | runs above it |",
        "|---|---|---|---|---|---|---|",
    ]
    sources = []
    for game, by_name in groups.items():
        row = published.get(game)
        for name, runs in by_name.items() if row else []:
            runs = [run for run in runs if row.get("env_id") in (None, "", run.env_id)]
            if not runs:
                continue
            scores = [run.score() for run in runs]
            lines.append(
                f"| {name} | {game} | {len(runs)} | {mean_std(scores)} | {', '.join(f'{s:.1f}' for s in scores)} | "
                f"{row['score']:.1f} | {sum(s > row['score'] for s in scores)} of {len(scores)} |"
            )
            sources += [] if row["source"] in sources else [row["source"]]
    if not sources:
        return f"## Against the published scores\n\nNo run played a game (and id) of {path}: {', '.join(published)}.\n"
    return "\n".join([*lines, "", f"Source: {'; '.join(sources)}."]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="folders of run folders (benchmarks/grid.py's --out)")
    parser.add_argument("--out", help="where the PNGs and report.md go (default: DIR/report, for one DIR)")
    parser.add_argument("--export", metavar="TO", help="only copy each run's run.json and curve.csv to TO")
    parser.add_argument("--names", nargs="+", metavar="NAME", help="report only these names (default: all)")
    parser.add_argument(
        "--bin", type=int, default=25_000, help="steps per bin of the return table (default: %(default)s)"
    )
    parser.add_argument(
        "--reps", type=int, default=2000, help="bootstrap resamples for the intervals (default: %(default)s)"
    )
    parser.add_argument(
        "--published",
        metavar="CSV",
        help="a paper's per-game scores (game, score, source; env_id optional) to set ours beside",
    )
    parser.add_argument(
        "--no-aggregate",
        action="store_true",
        help="leave out the aggregates over games: a benchmark that defines its aggregate over a set of games "
        "(Atari 100k: 26) has none over a subset of them. An earlier report's aggregate pictures in --out are "
        "removed",
    )
    opts = parser.parse_args()
    if opts.export:
        for folder in opts.dirs:
            export(folder, opts.export)
        return 0
    if len(opts.dirs) > 1 and not opts.out:
        print("error: with more than one DIR, say where the report goes with --out", file=sys.stderr)
        return 2
    try:
        runs = load_runs(opts.dirs)
        published = read_published(opts.published) if opts.published else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    runs = [run for run in runs if opts.names is None or run.name in opts.names]
    if not runs:
        print(f"error: no finished runs (folders with a run.json) in {', '.join(opts.dirs)}", file=sys.stderr)
        return 2
    out = opts.out or os.path.join(opts.dirs[0], "report")
    os.makedirs(out, exist_ok=True)
    groups = grouped(runs)
    for game, by_name in groups.items():
        plot_game(game, by_name, os.path.join(out, f"{game}.png"))
    sections = [] if opts.no_aggregate else aggregate_sections(groups, opts.reps)
    earlier_report = os.path.isfile(os.path.join(out, "report.md"))
    for picture in sorted({"aggregate.png", "aggregate_common.png"} - {section[-1] for section in sections}):
        if earlier_report and os.path.isfile(os.path.join(out, picture)):  # this report would seem to show it
            os.remove(os.path.join(out, picture))
            print(f"removed {os.path.join(out, picture)}: an earlier report's, not this one's")
    for _, matrices, _, points, intervals, picture in sections:
        plot_aggregate(points, intervals, matrices, os.path.join(out, picture))
    report = tables(groups, sections, opts.bin)
    if published is not None:
        report = published_table(groups, published, opts.published) + "\n" + report
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(f"# {len(runs)} runs from {', '.join(opts.dirs)}\n\n{report}")
    print(report)
    print(f"wrote {out}: {', '.join(sorted(os.listdir(out)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
