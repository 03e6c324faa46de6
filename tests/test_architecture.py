"""The package's layout holds: no import circle, floors that mean something, and no component name
outside the component's own module (the central files name no study)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
from helpers import compose_cfg

PACKAGE = Path(__file__).parents[1] / "rnn_sparsity"
CONF = PACKAGE / "conf"
FLOOR = ("rnn_sparsity.maths", "rnn_sparsity.contracts", "rnn_sparsity.components", "rnn_sparsity.blas",
         "rnn_sparsity.pruning")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The package modules a file imports, at any depth of its code (lazy imports inside functions too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # `from . import x` names a module
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_the_import_graph_has_no_circle():
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(GRAPH[node]):
            assert state.get(target) != "open", "import circle: " + " -> ".join([*path, node, target])
            if target not in state:
                visit(target, [*path, node])
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [])


@pytest.mark.parametrize("lower,upper", [("rnn_sparsity.analysis", "rnn_sparsity.tasks"),
                                         ("rnn_sparsity.models", "rnn_sparsity.analysis"),
                                         ("rnn_sparsity.regularizers", "rnn_sparsity.analysis")])
def test_no_upward_arrow(lower, upper):
    arrows = [(a, b) for a, targets in GRAPH.items() if a.startswith(lower) for b in targets if b.startswith(upper)]
    assert not arrows


COMPONENT_GROUPS = ("rnn_sparsity.models", "rnn_sparsity.tasks", "rnn_sparsity.regularizers")


@pytest.mark.parametrize("group,other", [(a, b) for a in COMPONENT_GROUPS for b in COMPONENT_GROUPS if a != b])
def test_a_component_group_imports_no_other(group, other):
    """Models, tasks and regularizers meet through contracts.py only: what two of them share is on the
    ground floor (a teacher's forward map in maths.py, a connectivity task's output layout in contracts.py)."""
    arrows = [(a, b) for a, targets in GRAPH.items() if a.startswith(group) for b in targets if b.startswith(other)]
    assert not arrows, f"{group} imports {other}: {arrows}"


def test_the_walk_sees_imports_inside_functions():
    """A task's figures are imported lazily, inside run_figures: the graph holds that arrow too, so the
    rules above cover lazy imports."""
    assert "rnn_sparsity.plots.rebound" in GRAPH["rnn_sparsity.tasks.mlp_teacher"]


def test_the_ground_floor_imports_only_the_ground_floor():
    for module in FLOOR:
        assert GRAPH[module] <= set(FLOOR), f"{module} imports {GRAPH[module] - set(FLOOR)}"


@functools.cache
def component_names() -> tuple[tuple[str, str, str], ...]:
    """(group, option name, the module of its component class) of every task, model, regularizer and pruner option."""
    out = []
    for group in ("task", "model", "regularizer", "pruner"):
        for path in sorted((CONF / group).glob("*.yaml")):
            extra = {"flax": ["model.module._target_=flax.linen.Dense"]}.get(path.stem, [])
            node = compose_cfg(f"{group}={path.stem}", *extra, tiny=False)[group]
            out.append((group, node.name, node._target_.rpartition(".")[0]))
    return tuple(out)


# task.student_init: copy | random; the lottery's pruner.criterion: magnitude | random, pruner.rewind: init | step | none
VALUES_NAMED_ALIKE = {"random": ("tasks/mlp_teacher.py", "pruners/lottery.py"), "magnitude": ("pruners/lottery.py",),
                      "none": ("pruners/lottery.py",)}


@pytest.mark.parametrize("group,name,owner", component_names())
def test_a_component_name_appears_only_in_its_own_module(group, name, owner):
    """A name two groups share (`none`: no regularizer, no pruner) may appear in each owner's module; a
    word that is also another key's value (task.student_init: random) where that key is read."""
    owners = {PACKAGE.parent / (module.replace(".", "/") + ".py") for _, other, module in component_names() if other == name}
    owners |= {PACKAGE / path for path in VALUES_NAMED_ALIKE.get(name, ())}
    hits = [path for path in PACKAGE.rglob("*.py") if f'"{name}"' in path.read_text()]
    assert set(hits) <= owners, f'"{name}" ({group}) appears in {sorted(map(str, set(hits) - owners))}'


def test_the_central_files_name_no_study():
    names = {name for _, name, _ in component_names()}
    for central in ("config.py", "experiment.py", "aggregate.py", "train.py", "components.py", "contracts.py"):
        text = (PACKAGE / central).read_text()
        quoted = {name for name in names if f'"{name}"' in text or f"'{name}'" in text}
        assert not quoted, f"{central} names {quoted}"
