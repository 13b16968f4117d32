"""The single-file design: scripts import no local module, and the blocks they share stay identical copies."""

import ast
import difflib
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(os.path.basename(path) for path in glob.glob(os.path.join(ROOT, "*.py")))
ATARI_SCRIPTS = [script for script in SCRIPTS if script.endswith("_atari.py")]

# Blocks that every listed script must define, as identical copies, so that a fix is a copy.
# (A variant that changes one of these on purpose, e.g. its network, leaves it out of this list for itself.)
SHARED_BLOCKS = {
    "linear_schedule": SCRIPTS,
    "RecordEpisodes": ["dqn_cartpole.py", "tabular_q_frozenlake.py"],
    "FRAME_STACK": ATARI_SCRIPTS,
    "make_env": ATARI_SCRIPTS,
    "make_envs": ATARI_SCRIPTS,
    "games_ended": ATARI_SCRIPTS,
    "final_observations": ATARI_SCRIPTS,
    "Batch": ATARI_SCRIPTS,
    "FrameReplayBuffer": ATARI_SCRIPTS,
    "to_device": ATARI_SCRIPTS,
    "evaluate": [script for script in ATARI_SCRIPTS if script != "bootstrapped_dqn_atari.py"],  # it evaluates by vote
    "evaluate_and_log": [script for script in ATARI_SCRIPTS if script != "bootstrapped_dqn_atari.py"],
    "Args": ["dqn_atari.py", "double_dqn_atari.py", "dueling_dqn_atari.py"],
    "check_args": ["dqn_atari.py", "double_dqn_atari.py", "dueling_dqn_atari.py"],
    "QNetwork": ["dqn_atari.py", "double_dqn_atari.py", "per_dqn_atari.py"],
    "double_dqn_target": [
        "double_dqn_atari.py",
        "dueling_dqn_atari.py",
        "per_dqn_atari.py",
        "bootstrapped_dqn_atari.py",
        "dqn_cartpole.py",
    ],
    "scale_gradient": ["dueling_dqn_atari.py", "bootstrapped_dqn_atari.py", "rainbow_atari.py"],
    "TORSO_GRADIENT_SCALE": ["dueling_dqn_atari.py", "rainbow_atari.py"],
    "SumTree": ["per_dqn_atari.py", "rainbow_atari.py"],
    # the run management below the marker: one block in every Atari script (CartPole keeps a smaller one)
    **{
        name: ATARI_SCRIPTS
        for name in [
            "RunArgs",
            "emulator_wrappers",
            "LastAction",
            "RecordGames",
            "wrappers",
            "ReportGamesEndedInReset",
            "WRAPPER_STATE",
            "Resumable",
            "GracefulStop",
            "alarm",
            "kill_env_processes",
            "CHANGEABLE_FLAGS",
            "COMMAND_FLAGS",
            "SCRIPT",
            "CHECKPOINT_FORMAT",
            "write_atomically",
            "load_saved",
            "part_state",
            "load_part_state",
            "written_slots",
            "Run",
            "browser_playable",
        ]
    },
    **{name: [*ATARI_SCRIPTS, "dqn_cartpole.py"] for name in ["load_saved", "SCRIPT"]},
}
MARKER = "# Run management"


def parse(script):
    with open(os.path.join(ROOT, script)) as f:
        source = f.read()
    return source, ast.parse(source)


def test_scripts_import_no_local_module():
    local_modules = {script[:-3] for script in SCRIPTS}
    for script in SCRIPTS:
        _, tree = parse(script)
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["."]
            for name in names:
                assert name.split(".")[0] not in local_modules and name != ".", f"{script}:{node.lineno} imports {name}"


def block_source(script, name):
    """The source of the top-level function or class called `name`, or of every top-level statement that assigns or
    augments it (`X = ...`, then `X |= ...`), or None."""
    source, tree = parse(script)
    statements = []
    for node in tree.body:
        targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        if getattr(node, "name", None) == name:
            return ast.get_source_segment(source, node)
        if name in targets:
            statements.append(ast.get_source_segment(source, node))
    return "\n".join(statements) or None


def first_drift(copies: dict) -> str | None:
    """None when all copies are identical; else which copy drifted from the first, and its first differing line."""
    reference_script, reference = next(iter(copies.items()))
    for script, source in copies.items():
        diff = difflib.unified_diff(reference.splitlines(), source.splitlines(), lineterm="", n=0)
        changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("---", "+++")]
        if changed:
            return f"{script} drifted from {reference_script}; first differing line: {changed[0]!r}"
    return None


@pytest.mark.parametrize("name", sorted(SHARED_BLOCKS))
def test_shared_blocks_are_identical_copies(name):
    copies = {script: block_source(script, name) for script in SHARED_BLOCKS[name]}
    missing = [script for script, source in copies.items() if source is None]
    assert not missing, f"{name} is listed as shared by {', '.join(missing)}, which do(es) not define it"
    drift = first_drift(copies)
    assert drift is None, f"{name}: {drift}"


def test_drift_detector_names_the_first_differing_line():
    original = block_source("dqn_cartpole.py", "linear_schedule")
    assert first_drift({"a.py": original, "b.py": original}) is None
    drifted = original.replace("return end_e", "return 0.0")
    assert (
        first_drift({"a.py": original, "b.py": drifted})
        == "b.py drifted from a.py; first differing line: '-        return end_e'"
    )


def test_every_flag_has_a_one_line_docstring():
    """--help shows each field's docstring: one, on one line (a hard break would wrap it mid-sentence)."""
    for script in SCRIPTS:
        source, tree = parse(script)
        for args in [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name in ("Args", "RunArgs")]:
            body = args.body
            for i, node in enumerate(body):
                if isinstance(node, ast.AnnAssign):
                    following = body[i + 1] if i + 1 < len(body) else None
                    has_doc = (
                        isinstance(following, ast.Expr)
                        and isinstance(following.value, ast.Constant)
                        and isinstance(following.value.value, str)
                    )
                    assert has_doc, f"{script}: {args.name}.{node.target.id} has no docstring"
                    assert "\n" not in following.value.value, (
                        f"{script}: {args.name}.{node.target.id}'s docstring breaks"
                    )


def test_scripts_run_only_under_main():
    """Importing a script must not start training: tests import their classes and functions."""
    for script in SCRIPTS:
        _, tree = parse(script)
        for node in tree.body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                call = ast.unparse(node.value)
                assert call.startswith("gym.register_envs"), f"{script} runs {call} at import"


def test_every_variant_names_an_existing_parent():
    """A variant is its parent plus the algorithm: its docstring says which script that is."""
    for script in ATARI_SCRIPTS:
        _, tree = parse(script)
        match = re.search(r"^Parent: (\S+?)[.,]?( |$)", ast.get_docstring(tree), re.MULTILINE)
        assert match, f"{script}: no 'Parent: ...' line in its docstring"
        parent = match.group(1)
        if script == "dqn_atari.py":
            assert parent == "none"
        else:
            assert parent in SCRIPTS and parent != script, f"{script} names {parent!r} as its parent"


def test_atari_scripts_log_and_report_alike():
    """The logging of dqn_atari.py's loop (TensorBoard scalars and terminal lines) is in every Atari variant,
    line for line; a variant may log more, never less or differently."""

    def logging_lines(script):  # every print(...) and writer.add_...(...) call in main(), whole
        main = ast.parse(block_source(script, "main"))
        calls = [node for node in ast.walk(main) if isinstance(node, ast.Call)]
        return [
            ast.unparse(call)
            for call in calls
            if ast.unparse(call.func) == "print" or ast.unparse(call.func).startswith("writer.add_")
        ]

    reference = logging_lines("dqn_atari.py")
    assert len(reference) >= 6  # the status line and the speed at the end are Run's, a shared block

    for script in ATARI_SCRIPTS:
        lines = set(logging_lines(script))
        missing = [line for line in reference if line not in lines]
        assert not missing, f"{script} logs differently from dqn_atari.py; first missing line: {missing[0]!r}"


def parts(script):
    """The script's source lines above its `# Run management` line, and those below it."""
    lines = open(os.path.join(ROOT, script)).read().splitlines()
    [marker] = [i for i, line in enumerate(lines) if line.startswith(MARKER)]
    return lines[:marker], lines[marker:]


def defined_at_top_level(tree, lines_from):
    names = set()
    for node in tree.body:
        if node.lineno > lines_from:
            targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
            names |= {node.name} if hasattr(node, "name") else set(targets)
    return names


@pytest.mark.parametrize("script", ["dqn_cartpole.py", *ATARI_SCRIPTS])
def test_the_algorithm_reads_above_one_marker_and_names_little_of_what_is_below(script):
    """Above the `# Run management` line: the algorithm, answerable on its own; it names at most 3 of the names
    defined below (the wrappers make_env and make_envs put on for the run's bookkeeping)."""
    top, _ = parts(script)
    source, tree = parse(script)
    below = defined_at_top_level(tree, len(top) + 1)
    used = {node.id for node in ast.walk(ast.parse("\n".join(top))) if isinstance(node, ast.Name)}
    assert len(used & below) <= 3, sorted(used & below)


def test_dqn_atari_keeps_its_budgets():
    """dqn_atari.py: at most 500 lines above the marker; main at most 100 lines, at most 8 of which name `run`;
    dqn_cartpole.py: at most 300 above and 600 in all."""
    top, bottom = parts("dqn_atari.py")
    assert len(top) <= 500
    main = block_source("dqn_atari.py", "main").splitlines()
    assert len(main) <= 100
    assert len([line for line in main if re.search(r"\brun\.", line)]) <= 8
    top, bottom = parts("dqn_cartpole.py")
    assert len(top) <= 300 and len(top) + len(bottom) <= 600
