"""Markers by where a test lives, so that `-m "not live"` is every test that needs no broker; and how
pytest-xdist may spread the tests over its processes.

- `live`: the test needs a broker process (Tansu) or starts one. Every test under tests/integration/ is
  live, marked here: a new file there needs no marker of its own. A pure test belongs in tests/unit,
  tests/contract or tests/e2e.
- `integration`: the old name of `live`, still accepted (a test marked with it is live wherever it is).
- `slow`: takes over ~20 s on a 2-core machine; marked by hand in the test's module.
"""

from __future__ import annotations

from pathlib import Path

import pytest

LIVE_DIR = Path(__file__).resolve().parent / "integration"

# `pytester` for tests/unit/test_markers.py, which runs these hooks on a test tree of its own.
pytest_plugins = ["pytester"]


def pytest_itemcollected(item: pytest.Item) -> None:
    """The live marker while the test is collected: before any hook reads markers (pytest's -m
    selection), whatever order those hooks run in."""
    if item.path.is_relative_to(LIVE_DIR) or item.get_closest_marker("integration") is not None:
        item.add_marker(pytest.mark.live)


def scope(nodeid: str) -> str:
    """The unit pytest-xdist's `--dist loadscope` (.ci/run) sends to one process: a module, or a class
    in it. Its tests run there in order, and a module fixture (a live worker) starts once."""
    return nodeid.rsplit("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The units with a slow test first (a stable sort keeps every other order, within a unit too), so
    that the long runs start at once on different processes instead of one of them ending the suite
    alone (.ci/run passes --no-loadscope-reorder, which keeps this order)."""
    slow = {scope(item.nodeid) for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: scope(item.nodeid) not in slow)
