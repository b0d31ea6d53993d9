"""The house rules of the package layout: imports point one way (no cycle, function-level
imports included) and the command line starts without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "comptk"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """comptk modules that ``path`` imports anywhere (module level or inside functions), except
    under ``if TYPE_CHECKING:`` (annotations only, never executed)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle_and_accepts_a_chain():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert len(graph) > 40  # the walk found the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_data_layer_knows_nothing_of_training_or_generated_data():
    graph = import_graph()
    for name, deps in graph.items():
        if name == "comptk.data" or name.startswith("comptk.data."):
            bad = {d for d in deps if d.startswith(("comptk.train", "comptk.datasets", "comptk.ensemble",
                                                    "comptk.tune", "comptk.inspect", "comptk.experiments"))}
            assert not bad, f"{name} imports {bad}"


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("comptk")):
                offenders += [f"{_module_name(path)}: {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offenders


HEAVY = ("torch", "timm", "albumentations", "optuna")


def _run_cli(args: list[str], env: dict[str, str] | None = None) -> tuple[str, str]:
    """(stdout, the heavy modules imported) of `comptk ARGS` in a fresh interpreter."""
    import os

    code = ("import sys\nfrom comptk.cli import main\n"
            f"try:\n    main({args!r}, prog_name='comptk')\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent, env={**os.environ, **(env or {})})
    heavy = [line for line in out.stderr.splitlines() if line.startswith("HEAVY:")]
    assert heavy, out.stderr
    return out.stdout, heavy[-1].removeprefix("HEAVY:")


def test_the_command_line_starts_without_torch():
    code = ("import sys; import comptk, comptk.cli; "
            "from click.testing import CliRunner; "
            "assert CliRunner().invoke(comptk.cli.main, ['--help']).exit_code == 0; "
            "heavy = [m for m in ('torch', 'timm', 'albumentations', 'optuna') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _complete(words: str) -> dict[str, str]:
    return {"_COMPTK_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}


CHEAP = {  # args, environment, what stdout must hold
    "help": (["--help"], None, "Commands:"),
    "version": (["--version"], None, "comptk, version"),
    "train help": (["train", "--help"], None, "--folds-subset"),
    "completion script": ([], {"_COMPTK_COMPLETE": "bash_source"}, "_comptk_completion"),
    "complete a command": ([], _complete("comptk tr"), "plain,train"),
    "complete an option": ([], _complete("comptk train --folds-s"), "plain,--folds-subset"),
    "complete a competition": ([], _complete("comptk train dig"), "plain,digits"),
}


@pytest.mark.parametrize("case", CHEAP)
def test_help_version_and_shell_completion_load_no_training_stack(case):
    args, env, expected = CHEAP[case]
    stdout, heavy = _run_cli(args, env)
    assert expected in stdout
    assert heavy == ""
