"""The markers mean what CONTRIBUTING.md says: `-m "not live"` is exactly the tests outside
tests/integration, and a test marked with the old `integration` name is live wherever it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The hooks of tests/conftest.py, in a test tree of pytester's.
CONFTEST = "from tests.conftest import pytest_collection_modifyitems, pytest_itemcollected  # noqa: F401"


def collected(marks: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marks],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_live_is_every_test_file_under_integration_and_nothing_else() -> None:
    live = collected("live")
    files = {node.split("::")[0] for node in live}
    under = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "integration").glob("test_*.py")}
    assert files == under
    pure = collected("not live")
    assert pure and not [node for node in pure if node.startswith("tests/integration/")]


def test_the_old_integration_marker_is_live(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "markers =\n    live: x\n    integration: x\n"
    )
    pytester.makepyfile(
        test_old="""
        import pytest
        pytestmark = [pytest.mark.integration]
        def test_marked(): pass
        """,
        test_plain="def test_unmarked(): pass",
    )
    live = pytester.runpytest("-m", "live", "--collect-only", "-q")
    assert [line for line in live.outlines if "::" in line] == ["test_old.py::test_marked"]
    pure = pytester.runpytest("-m", "not live", "--collect-only", "-q")
    assert [line for line in pure.outlines if "::" in line] == ["test_plain.py::test_unmarked"]


def test_units_with_a_slow_test_go_first_and_keep_their_order(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers =\n    slow: x\n")
    pytester.makepyfile(
        test_a_quick="def test_one(): pass\ndef test_two(): pass",
        test_b_shared="""
        import pytest
        @pytest.fixture(scope="module")
        def worker(): return 1
        def test_first(worker): pass
        @pytest.mark.slow
        def test_second(worker): pass
        """,
        test_c_classes="""
        import pytest
        class TestQuick:
            def test_quick(self): pass
        class TestSlow:
            @pytest.mark.slow
            def test_long(self): pass
        """,
    )
    _, calls = pytester.inline_genitems()
    items = calls.getcall("pytest_collection_modifyitems").items  # the list the hooks sorted
    # A unit is a module or a class (xdist's loadscope): the slow ones first, each in its own order.
    assert [item.nodeid for item in items] == [
        "test_b_shared.py::test_first",
        "test_b_shared.py::test_second",
        "test_c_classes.py::TestSlow::test_long",
        "test_a_quick.py::test_one",
        "test_a_quick.py::test_two",
        "test_c_classes.py::TestQuick::test_quick",
    ]
