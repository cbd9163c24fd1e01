"""The chaos run's quick mode: two workers, SIGKILLed at random moments while a generated post-sales log
flows through the broker wave by wave; nothing lost, no effect doubled, credit notes and final stock
equal to replay's. The full run (10,000 messages, 20 kills) is `bench/chaos.py` with its defaults."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from workers.broker import LocalBroker

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from chaos import Options, run  # noqa: E402

pytestmark = pytest.mark.integration


def test_kill_9_at_random_moments_loses_nothing_and_doubles_nothing(
    broker: LocalBroker, tmp_path: Path
) -> None:
    messages = int(os.environ.get("CHAOS_MESSAGES", "600"))
    kills = int(os.environ.get("CHAOS_KILLS", "3"))
    lines: list[str] = []
    verdict, done = run(
        Options(messages=messages, kills=kills, seed=7, workdir=tmp_path), broker=broker, echo=lines.append
    )
    report = "\n".join(lines)
    assert done == kills, report
    assert verdict.ok, report
    assert lines[-1].startswith("lost=0 double_effects=0 "), report
