"""The package's layers, read from its imports: no cycles, nothing imports upward (docs/architecture.md).

Imports inside functions count (they run); imports under `if TYPE_CHECKING:` count for cycles only (a type-only
circle still ties two modules a reader must read together).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "albert"

# Lowest first: each folder of src/albert is a group, and a layer is the groups that may sit side by side. A module
# may import its own group and lower layers; never upward, never a sibling group of its layer (train, serving and
# convert do not know each other; nor do tokenization and modeling).
LAYERS: list[list[str]] = [
    ["errors"],  # errors.py and version.py: the package's own base
    ["io"],
    ["tokenization", "modeling"],
    ["runtime"],
    ["data", "tasks"],
    ["inference"],
    ["train", "serving", "convert"],
    ["cli"],  # cli.py, commands.py, __main__.py, __init__.py, _moved.py
]
_ROOT_GROUPS = {"version": "errors", "errors": "errors", "cli": "cli", "__main__": "cli", "__init__": "cli",
                "_moved": "cli", "commands": "cli"}


def _place(module: str) -> tuple[int, str]:
    group = _ROOT_GROUPS.get(module) if "." not in module else module.split(".")[0]
    for level, groups in enumerate(LAYERS):
        if group in groups:
            return level, group
    raise AssertionError(f"albert.{module} has no place in LAYERS (tests/test_architecture.py): put it in a folder "
                         "that has one, or give its folder a layer")


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            continue  # package markers hold no code
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str, type_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if not type_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    found: set[str] = set()
    package = module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(["albert", *([package] if package else []), base]).strip(".")
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("albert."):
                found.add(name.removeprefix("albert."))
            elif name == "albert":
                found.add("__init__")
    return found


def _graph(type_only: bool = False) -> dict[str, set[str]]:
    """Module → the modules it imports; `type_only` counts imports under `if TYPE_CHECKING:` too."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        if module == "__init__":  # the lazy facade (PEP 562) names modules in strings only
            graph[module] = set()
            continue
        targets = set()
        for name in _imports(path, module, type_only):
            while name and name not in modules:  # `from albert.x import y` names module x (y is an attribute)
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def test_every_module_has_a_layer_and_imports_only_downward() -> None:
    wrong = []
    for module, targets in _graph().items():
        level, group = _place(module)
        for target in targets:
            t_level, t_group = _place(target)
            if t_level > level or (t_level == level and t_group != group):
                wrong.append(f"albert.{module} ({group}) imports albert.{target} ({t_group})")
    assert not wrong, "imports that run upward or sideways:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles_not_even_for_types() -> None:
    graph = _graph(type_only=True)
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_registry_matches_heads_pipelines_and_cli() -> None:
    """A task lives in the registry; the heads, pipelines, CLI commands and server routes are derived from it."""
    from albert.cli import PRECISIONS, build_parser
    from albert.inference.pipelines import PIPELINES
    from albert.modeling.heads import MODEL_CLASSES
    from albert.runtime.policy import PRECISIONS as RUNTIME_PRECISIONS
    from albert.tasks.registry import HEADS, KINDS, TASKS, get_task, task_of_architecture

    assert set(HEADS) == set(MODEL_CLASSES)
    assert set(PIPELINES) == set(TASKS)
    assert PRECISIONS == RUNTIME_PRECISIONS
    for task in TASKS.values():
        assert set(task.heads) <= set(HEADS) and set(task.also_answers) <= set(HEADS)
        assert get_task(task.name) is task and all(get_task(a) is task for a in task.aliases)
    for kind in KINDS.values():
        assert kind.task in TASKS and kind.head in TASKS[kind.task].heads
    for arch in HEADS:
        assert task_of_architecture(arch) is not None, arch
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {t.command for t in TASKS.values()} <= set(commands)


@pytest.mark.parametrize("command,settings", [("pretrain", "albert.train.settings:PretrainSettings"),
                                              ("finetune", "albert.train.finetune_settings:FinetuneSettings"),
                                              ("distill", "albert.train.distill_settings:DistillSettings")])
def test_every_setting_is_a_flag_with_its_help(command: str, settings: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The training commands' flags are made from their settings' dataclasses (one way, as the YAML keys): every
    setting has a line of help beside it and is a flag in `--help`, a group's as --group.name."""
    import importlib

    from albert.cli import main
    from albert.train.settings import field_help

    module, name = settings.split(":")
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "peak learning rate" in text and "(default " in text
    for f in dataclasses.fields(cls):
        assert field_help(cls, f.name), f"{cls.__name__}.{f.name} has no line of help beside it"
        group = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(group):  # a group of settings: each of its own, as --group.name
            for g in dataclasses.fields(group):
                assert field_help(type(group), g.name) and f"--{f.name}.{g.name}" in text, (f.name, g.name)
        else:
            assert f"--{f.name} " in text, f.name


def _public_names() -> dict[str, list[str]]:
    """Each public top-level function, class and CONSTANT of the package → the modules that define it."""
    found: dict[str, list[str]] = {}
    for module, path in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
            for name in names:
                if not name.startswith("_"):
                    found.setdefault(name, []).append(module)
    return found


def test_modules_and_public_names_are_each_defined_once() -> None:
    """No two modules share a name (`metrics` in two folders reads as one), and no public name is defined twice."""
    stems: dict[str, list[str]] = {}
    for module in _modules():
        stems.setdefault(module.rpartition(".")[2], []).append(module)
    assert not {k: v for k, v in stems.items() if len(v) > 1 and k != "__init__"}
    assert not {k: v for k, v in _public_names().items() if len(v) > 1}


def test_modules_and_functions_a_reader_holds_in_mind() -> None:
    """No module over 500 lines, no function over 60."""
    long_modules, long_functions = [], []
    for module, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 500:
            long_modules.append(f"albert.{module}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long_functions.append(f"albert.{module}.{node.name}: {lines} lines")
    assert not long_modules + long_functions


def test_the_public_api_and_every_command_s_help() -> None:
    """Every name in albert.__all__ imports; every command and subcommand answers --help in-process, exit 0."""
    import contextlib
    import io

    import albert
    from albert.cli import build_parser, main

    for name in albert.__all__:
        assert getattr(albert, name) is not None, name
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    invocations = []
    for command, parser in commands.items():
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        invocations += [[command, sub] for a in subs for sub in a.choices] or [[command]]
    for args in invocations:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
            main([*args, "--help"])
        assert done.value.code == 0 and "usage: albert" in out.getvalue(), args
