"""Markers by where a test lives, so that `-m "not live"` is every test that needs no broker.

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


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection reads the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(LIVE_DIR) or item.get_closest_marker("integration") is not None:
            item.add_marker(pytest.mark.live)


# `pytester` for tests/unit/test_markers.py, which runs this hook on a test tree of its own.
pytest_plugins = ["pytester"]
