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
  Precipice"); where the names ran different games (DQN on two, its variants on one), `aggregate_common.png` is the
  same over the games every name ran, the one set on which they compare;
- `report.md`: the tables behind them. Per name and game: the last 20 training games and the evaluation games (mean
  ± std over seeds, and the number of seeds), the human-normalized score, the mean return in each `--bin` steps, and
  the wall time and steps per second of the runs. It is also printed.

A run's score is the mean of its evaluation games (`--eval-episodes` at `--eval-epsilon`, 0.05 by default) where it
played any, else the mean of its last 20 training games. Human-normalized: (score - random) / (human - random), with
the random and human scores of DQN Zoo's `dqn_zoo/atari_data.py` (github.com/google-deepmind/dqn_zoo), which are
those of the DQN papers (Mnih et al., 2015; van Hasselt et al., 2016), games started by up to 30 no-ops.
"""

import argparse
import glob
import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

from results_csv import read_curve, read_events, write_curve  # benchmarks/results_csv.py

# game: (random, human), from DQN Zoo's dqn_zoo/atari_data.py
REFERENCE_SCORES = {
    "BeamRider": (363.9, 16926.5),
    "Breakout": (1.7, 30.5),
    "Enduro": (0.0, 860.5),
    "Pong": (-20.7, 14.6),
    "Qbert": (163.9, 13455.0),
    "Seaquest": (68.4, 42054.7),
    "SpaceInvaders": (148.0, 1668.7),
}
LAST_GAMES = 20
# names in this order (a variant after its parent), then any others alphabetically
ORDER = ["dqn_atari", "double_dqn_atari", "dueling_dqn_atari", "per_dqn_atari", "bootstrapped_dqn_atari"]


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
        if key in seen:
            raise ValueError(f"{run.name} seed {run.seed} on {run.game} is in both {seen[key]} and {run_folder}")
        seen[key] = run_folder
        runs.append(run)
    return runs


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

    with warnings.catch_warnings():  # rliable 1.2 hands arch a RandomState, which arch 7 says it will stop taking
        warnings.simplefilter("ignore", FutureWarning)
        return rly.get_interval_estimates(matrices, iqm_and_mean, reps=reps, random_state=np.random.RandomState(seed))


def plot_aggregate(points: dict, intervals: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    fig, _ = plot_utils.plot_interval_estimates(
        points,
        intervals,
        metric_names=["IQM", "Mean"],
        algorithms=list(points),
        xlabel="Human-normalized score",
        xlabel_y_coordinate=-0.3,
    )
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
        "Mean ± standard deviation over seeds. Last 20 games: the last 20 training games of each run; evaluation: "
        "each run's evaluation games; human-normalized: the score (evaluation where a run has one, else the last "
        "20 games) against DQN Zoo's random and human scores.",
        "",
        "| name | game | seeds | last 20 games | evaluation | human-normalized |",
        "|---|---|---|---|---|---|",
    ]
    for game, by_name in groups.items():
        for name, runs in by_name.items():
            evaluations = [float(np.mean(run.evaluation)) for run in runs if run.evaluation]
            normalized = [human_normalized(run.score(), game) for run in runs] if game in REFERENCE_SCORES else []
            lines.append(
                f"| {name} | {game} | {len(runs)} | {mean_std([run.last_games() for run in runs])} | "
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
            runs_by_games = "x".join(map(str, matrices[name].shape))
            lines.append(
                f"| {name} | {runs_by_games} | {', '.join(games_of[name])} | {iqm:.3f} [{iqm_low:.3f}, {iqm_high:.3f}] "
                f"| {mean:.3f} [{mean_low:.3f}, {mean_high:.3f}] |"
            )
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="folders of run folders (benchmarks/grid.py's --out)")
    parser.add_argument("--out", help="where the PNGs and report.md go (default: DIR/report, for one DIR)")
    parser.add_argument("--export", metavar="TO", help="only copy each run's run.json and curve.csv to TO")
    parser.add_argument("--bin", type=int, default=25_000, help="steps per bin of the return table")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the intervals")
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
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not runs:
        print(f"error: no finished runs (folders with a run.json) in {', '.join(opts.dirs)}", file=sys.stderr)
        return 2
    out = opts.out or os.path.join(opts.dirs[0], "report")
    os.makedirs(out, exist_ok=True)
    groups = grouped(runs)
    for game, by_name in groups.items():
        plot_game(game, by_name, os.path.join(out, f"{game}.png"))
    sections = aggregate_sections(groups, opts.reps)
    for _, _, _, points, intervals, picture in sections:
        plot_aggregate(points, intervals, os.path.join(out, picture))
    report = tables(groups, sections, opts.bin)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(f"# {len(runs)} runs from {', '.join(opts.dirs)}\n\n{report}")
    print(report)
    print(f"wrote {out}: {', '.join(sorted(os.listdir(out)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
