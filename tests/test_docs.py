"""Docs that cannot rot silently: every relative link in README.md and docs/ resolves, and every code name a script's
page puts in backticks exists in that script.

A script's page is docs/{script}.md. In its backticks, a code name is an identifier, maybe dotted, maybe with "()":
`make_env()`, `FrameReplayBuffer`, `FrameReplayBuffer.sample()`, `Args.learning_starts`, `gym.vector.AsyncVectorEnv`.
Its first part must be defined or imported in the script (a dotted name on an imported module is not checked further);
a class's attribute must be defined in the class (a method, a field, or self.attribute). Flags (`--bf16`), files
(`dqn_atari.py`), scalars (`charts/SPS`) and code with spaces or operators are not names, and are not checked.
"""

import ast
import glob
import os
import re

import pytest

from conftest import ROOT

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\(\))?$")
FILE_ENDINGS = ("py", "md", "csv", "png", "txt", "json", "pt", "npy", "mp4", "sh", "toml", "ini", "yml", "yaml", "log")
PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def dead_links(path: str, text: str) -> list[str]:
    """The relative links of a markdown file (at path, with this text) whose target does not exist."""
    dead = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):  # a web address, or an anchor on this page
            continue
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target.split("#")[0]))
        if not os.path.exists(resolved):
            dead.append(target)
    return dead


def names_in(source: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """A script's names: those defined at the top level or imported anywhere, each class's attributes, and the
    imported ones (modules and their members, whose dotted names are not checked further)."""
    tree = ast.parse(source)
    defined, classes, imported = set(), {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            imported |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
        if isinstance(node, ast.ClassDef):
            attributes = set()
            for item in ast.walk(node):
                if isinstance(item, ast.FunctionDef):
                    attributes.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    attributes.add(item.target.id)
                elif isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name) and item.value.id == "self":
                    attributes.add(item.attr)
                elif isinstance(item, ast.Assign):
                    attributes |= {target.id for target in item.targets if isinstance(target, ast.Name)}
            classes[node.name] = attributes
    return defined | imported, classes, imported


def unknown_names(text: str, source: str) -> list[str]:
    """The code names in a page's backticks that its script does not have."""
    names, classes, imported = names_in(source)
    unknown = []
    for code in CODE.findall(text):
        if not NAME.match(code) or code.rsplit(".", 1)[-1] in FILE_ENDINGS:
            continue
        first, *rest = code.removesuffix("()").split(".")
        if first not in names:
            unknown.append(code)
        elif rest and first in classes and rest[0] not in classes[first] and first not in imported:
            unknown.append(code)
    return unknown


@pytest.mark.parametrize("path", [os.path.join(ROOT, "README.md"), *PAGES], ids=os.path.basename)
def test_every_relative_link_resolves(path):
    with open(path) as f:
        assert dead_links(path, f.read()) == []


SCRIPT_PAGES = [page for page in PAGES if os.path.isfile(os.path.join(ROOT, os.path.basename(page)[:-3] + ".py"))]


@pytest.mark.parametrize("page", SCRIPT_PAGES, ids=os.path.basename)
def test_every_code_name_on_a_script_page_is_in_the_script(page):
    with open(page) as f, open(os.path.join(ROOT, os.path.basename(page)[:-3] + ".py")) as script:
        assert unknown_names(f.read(), script.read()) == []


def test_every_script_has_a_page_and_the_readme_links_it():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    for script in sorted(glob.glob(os.path.join(ROOT, "*.py"))):
        page = f"docs/{os.path.basename(script)[:-3]}.md"
        assert os.path.isfile(os.path.join(ROOT, page)) and f"({page})" in readme, page


def test_the_checks_fail_on_a_renamed_function_and_a_dead_link():
    """Broken on purpose: the page names what the script no longer has, and links a file that is gone."""
    with open(os.path.join(ROOT, "docs", "dqn_atari.md")) as f:
        page = f.read()
    with open(os.path.join(ROOT, "dqn_atari.py")) as f:
        source = f.read()
    assert "`make_env()`" in page and "`FrameReplayBuffer.sample()`" in page
    renamed = source.replace("def make_env(", "def build_env(").replace("    def sample(", "    def draw(")
    assert set(unknown_names(page, renamed)) == {"make_env()", "FrameReplayBuffer.sample()"}
    assert unknown_names(page + "\nSee `QNetwork.no_such_method()`.", source) == ["QNetwork.no_such_method()"]
    path = os.path.join(ROOT, "docs", "dqn_atari.md")
    assert dead_links(path, page + "\n[gone](../benchmarks/results/no_such_file.csv)") == [
        "../benchmarks/results/no_such_file.csv"
    ]


@pytest.mark.parametrize("script", ["dqn_atari.py", "dqn_cartpole.py"])
def test_the_page_s_reading_guide_names_the_marker_s_line_and_main_s_length(script):
    """A page that says where the `# Run management` line is, and how long main() is, says it right."""
    with open(os.path.join(ROOT, "docs", script[:-3] + ".md")) as f:
        page = f.read()
    with open(os.path.join(ROOT, script)) as f:
        source = f.read()
    [marker] = [i + 1 for i, line in enumerate(source.splitlines()) if line.startswith("# Run management")]
    assert f"`# Run management` (line {marker})" in page
    [main] = [node for node in ast.parse(source).body if getattr(node, "name", None) == "main"]
    claims = re.findall(r"`main\(\)` is the loop, (\d+) lines", page)
    assert claims or script == "dqn_cartpole.py", "dqn_atari.md says how long main() is"
    for claimed in claims:
        assert int(claimed) == main.end_lineno - main.lineno + 1
