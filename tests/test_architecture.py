"""The package's layers, read from its imports: no cycles, nothing imports upward (docs/architecture.md).

Imports inside functions count (they run); imports under `if TYPE_CHECKING:` do not (they never run).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "albert"

# Lowest first. A module may import modules of lower layers, and of its own layer's group; never upward, and
# never a sibling group of the same layer (train and inference do not know each other).
LAYERS: list[dict[str, list[str]]] = [
    {"errors": ["errors"]},
    {"base": ["version", "config", "hub", "outputs", "data.reader", "tasks.registry", "tasks.metrics", "tokenizer_json",
              "tasks.batching"]},
    {"model": ["model", "early_exit"]},
    {"kernels": ["kernels"]},
    {"checkpoint": ["checkpoint", "tokenizer", "vocabulary"]},
    {"heads": ["heads"]},
    {"runtime": ["runtime", "tf_import", "bert_import"]},
    {"data": ["data.shards", "data.pretraining"], "tasks": ["tasks.base", "tasks.readers", "tasks.sequence",
                                                            "tasks.tokens", "tasks.qa", "tasks.choice",
                                                            "tasks.fill_mask"]},
    {"train": ["train.*"], "inference": ["inference.*", "export"]},
    {"cli": ["cli", "__main__", "__init__"]},
]


def _place(module: str) -> tuple[int, str]:
    for level, groups in enumerate(LAYERS):
        for group, members in groups.items():
            if any(module == m or (m.endswith(".*") and module.startswith(m[:-1])) for m in members):
                return level, group
    raise AssertionError(f"albert.{module} has no place in LAYERS (tests/test_architecture.py): give it one")


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            continue  # package markers hold no code
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
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


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        if module == "__init__":  # the lazy facade (PEP 562) names modules in strings only
            graph[module] = set()
            continue
        targets = set()
        for name in _imports(path, module):
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


def test_no_import_cycles() -> None:
    graph = _graph()
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
    from albert.heads import MODEL_CLASSES
    from albert.inference.pipelines import PIPELINES
    from albert.runtime import PRECISIONS as RUNTIME_PRECISIONS
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


def test_settings_help_lists_every_setting() -> None:
    from albert.train.distill import DistillSettings
    from albert.train.finetune import FinetuneSettings
    from albert.train.settings import PretrainSettings, field_help, settings_help

    for cls in (PretrainSettings, FinetuneSettings, DistillSettings):
        text = settings_help(cls)
        for f in dataclasses.fields(cls):
            assert field_help(cls, f.name), f"{cls.__name__}.{f.name} has no line of help beside it"
            assert f"--{f.name} " in text


@pytest.mark.parametrize("command", ["pretrain", "finetune", "distill"])
def test_help_of_the_training_commands_lists_settings_with_defaults(command: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from albert.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "--learning_rate" in out and "(default " in out and "peak learning rate" in out
