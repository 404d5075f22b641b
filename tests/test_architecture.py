"""The house drawn from the imports: no room imports a higher one, nothing imports in a circle,
and what a deployed process loads (predict, runtime, serve) needs neither Hydra nor Lightning.

Imports are read from the source (every ``import``, at module level or inside a function), so
the test holds for lazy imports too and needs nothing installed beyond the standard library.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "segnet"

# Which rooms each room may import (its own always). A room is a subpackage of segnet, or a
# module at the root of segnet (the facade is "segnet").
ALLOWED: dict[str, set[str]] = {
    "layers": set(),
    "models": {"layers"},
    "device": set(),
    "outputs": set(),
    "metrics": set(),
    "data": set(),
    "visualize": {"data"},
    "reports": {"data", "visualize", "metrics"},
    "runtime": {"models", "data", "device"},
    "predict": {"runtime", "data", "visualize"},
    "training": {"models", "data", "metrics", "predict", "outputs", "visualize", "reports"},
    "serve": {"predict", "data"},
    "segnet": {"predict"},
    "tasks": {
        "serve",
        "predict",
        "training",
        "runtime",
        "models",
        "data",
        "metrics",
        "visualize",
        "device",
        "outputs",
        "reports",
    },
}
ALLOWED["benchmarks"] = {*ALLOWED["tasks"], "tasks", "layers", "segnet"}
NO_TRAINING_STACK = ("predict", "runtime", "serve", "segnet")
TRAINING_STACK = ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "segnet"


def imports() -> dict[str, set[str]]:
    """segnet module -> every module it imports (``from a import b``: a, and a.b if that is a
    segnet module)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    found: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found[name].update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found[name].add(node.module)
                found[name].update(
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if f"{node.module}.{alias.name}" in modules
                )
    return found


def segnet_edges() -> dict[str, set[str]]:
    return {
        module: {t for t in targets if t.split(".")[0] == "segnet"}
        for module, targets in imports().items()
    }


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_room_is_known_and_imports_only_the_rooms_below_it():
    wrong = []
    for module, targets in segnet_edges().items():
        assert room(module) in ALLOWED, f"{module}: a new room; place it in ALLOWED"
        wrong += [
            f"{module} imports {target}"
            for target in targets
            if room(target) != room(module) and room(target) not in ALLOWED[room(module)]
        ]
    assert not wrong


def test_no_import_cycle_between_modules_or_between_rooms():
    # A package's __init__ is not an edge to its modules: "segnet.predict" -> its files is how
    # Python loads a package, not a dependency.
    edges = segnet_edges()
    modules = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in edges.items()}
    assert cycle(modules) is None
    rooms: dict[str, set[str]] = defaultdict(set)
    for module, targets in edges.items():
        rooms[room(module)].update(room(t) for t in targets if room(t) != room(module))
    assert cycle(rooms) is None


def test_a_deployed_process_imports_neither_hydra_nor_lightning():
    offending = [
        f"{module} imports {target}"
        for module, targets in imports().items()
        if room(module) in NO_TRAINING_STACK
        for target in targets
        if target.split(".")[0] in TRAINING_STACK
    ]
    assert not offending


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
