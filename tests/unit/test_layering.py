"""The rooms of the package and who may use whom, read from the imports of the source (lazy imports
inside functions included): the README's layout table draws the same picture."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "workers", "schemas")

# room -> the rooms it may import besides itself. `workers` is the top: the CLI, the shared console
# helpers and the AsyncAPI generator.
ALLOWED = {
    "domain": set(),
    "schemas": set(),
    "workers.config": {"domain"},
    "workers.engine": {"domain", "schemas"},
    "workers.replay": {"domain", "workers.engine"},
    "workers.kafka": {"domain", "workers.config", "workers.engine"},
    "workers.ops": {
        "domain",
        "workers.config",
        "workers.engine",
        "workers.kafka",
        "workers.replay",
        "workers",
    },
    "workers.local": {"domain", "workers.config", "workers.engine", "workers.kafka", "workers.replay"},
    "workers": {
        "domain",
        "schemas",
        "workers.config",
        "workers.engine",
        "workers.kafka",
        "workers.local",
        "workers.ops",
        "workers.replay",
    },
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The project modules `path` imports (`from a.b import c` is a.b.c when c is a module)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:
                    yield full
                elif node.module in known:
                    yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "workers" or len(parts) == 2:
        return parts[0]
    return ".".join(parts[:2])


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: set(imports(path, known)) - {module} for module, path in known.items()}


def test_every_room_imports_only_the_rooms_below_it() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if room(target) != room(module) and room(target) not in ALLOWED[room(module)]
    ]
    assert not wrong


def test_every_module_is_in_a_known_room() -> None:
    assert {room(module) for module in graph()} <= set(ALLOWED)


def test_no_import_circle() -> None:
    edges = graph()
    circles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            circles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for target in sorted(edges.get(module, ())):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])
    assert not circles


def test_the_runtime_imports_no_operator_verb_and_no_offline_runner() -> None:
    runtime = [module for module in graph() if room(module) == "workers.kafka"]
    assert runtime
    for module in runtime:
        assert not {room(target) for target in graph()[module]} & {"workers.ops", "workers.replay", "workers"}
