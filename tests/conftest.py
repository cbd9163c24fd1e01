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
# Fixture scopes wider than a test but narrower than the session (which each xdist process has its own
# of): tests that share one must run in one process, in file order.
SHARED_SCOPES = {"module", "class", "package"}

# `pytester` for tests/unit/test_markers.py, which runs these hooks on a test tree of its own.
pytest_plugins = ["pytester"]


def _shares_a_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        str(getattr(fixturedef, "scope", "function")) in SHARED_SCOPES
        for fixturedefs in info.name2fixturedefs.values()
        for fixturedef in fixturedefs
    )


@pytest.hookimpl(tryfirst=True)  # before pytest's -m selection and xdist's grouping read the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(LIVE_DIR) or item.get_closest_marker("integration") is not None:
            item.add_marker(pytest.mark.live)
    # With `--dist loadgroup` (.ci/run) every test is a unit of work of its own, except the tests of a
    # module that share a module or class fixture (a live worker, a second broker): one group, so the
    # fixture starts once and its tests keep their order.
    units: dict[str, str] = {}
    for item in items:
        if item.get_closest_marker("xdist_group") is None and _shares_a_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
        group = item.get_closest_marker("xdist_group")
        units[item.nodeid] = str(group.args[0]) if group is not None and group.args else item.nodeid
    # The units with a slow test first (a stable sort keeps every other order), so that the long runs
    # start at once on different processes instead of one of them ending the suite alone.
    slow_units = {units[item.nodeid] for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: units[item.nodeid] not in slow_units)
