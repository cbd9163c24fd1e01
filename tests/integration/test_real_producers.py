"""The outsider's test: ordinary scenarios written by confluent-kafka (librdkafka) producers as a real
upstream writes them — no key, or keys under two partitioners; back to back, spread over seconds, or
with the shipment written after its return — and the live worker's outputs equal `replay` of the log in
the order it was written. A few scenarios per variant here; `bench/real_producers.py` runs them all.
The offline checks of the scenarios and of the comparison: tests/e2e/test_real_producers_offline.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.real_producers import VARIANTS, run_live
from testkit.scenarios import build
from workers.local.broker import LocalBroker

# The stories the issue names first: seed 000, a shipment from two sources, money on receipt, an
# upstream refund that must return shipped units, approval on receipt.
QUICK = [
    "seed-000-octopus",
    "multi-source",
    "refund-on-receipt",
    "upstream-quantity-and-amount",
    "approve-on-receipt",
    "upstream-refund-after-the-return-window",
    "release-and-cancel",
    "return-tracking",
    "split-tender",
    "exchange-at-once",
    "exchange-on-receipt",
]


@pytest.mark.slow
def test_real_producers_through_the_live_worker_equal_replay(broker: LocalBroker, tmp_path: Path) -> None:
    outcome = run_live(broker.bootstrap, tmp_path, VARIANTS, QUICK, spread=2.0, delay=0.3, read_timeout=20.0)
    assert outcome.written == len(VARIANTS) * sum(len(s.steps) for s in build(QUICK, "x"))
    assert outcome.ok, outcome.report()
