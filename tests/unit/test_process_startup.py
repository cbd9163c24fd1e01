"""What a process of the command line loads and how its collector is set, each in a fresh interpreter
(both are process-wide, so the test process itself stays untouched)."""

from __future__ import annotations

import subprocess
import sys


def run_python(program: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_command_line_loads_faust_and_aiohttp_only_for_the_worker() -> None:
    loaded = run_python(
        "import sys, workers.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'aiohttp'}))"
    )
    assert loaded == "[]"


def test_long_runs_freeze_what_start_up_made_and_collect_the_young_generation_less_often() -> None:
    program = (
        "import gc; from workers.config.gc_tuning import THRESHOLDS, tune_for_long_runs; "
        "before = gc.get_freeze_count(); tune_for_long_runs(); "
        "print(before == 0, gc.get_freeze_count() > 1000, gc.get_threshold() == THRESHOLDS, "
        "THRESHOLDS[0] > 700)"
    )
    assert run_python(program) == "True True True True"
