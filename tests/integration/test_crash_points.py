"""kill -9 at every step of a batch's commit protocol, on both table stores.

For each crash point (workers/kafka/crashpoints.py: outputs sent, outputs acknowledged, each table step
written and settled, offsets committed, for the intake, the orders and the stock stages, and between two
partitions' write batches of the RocksDB store) a worker runs the chaos traffic with
OMS_TEST_CRASH_AT set: it kills itself with SIGKILL the first time it gets there, is restarted without
it, and every output, every credit note number and the final stock must equal replay's (the chaos
verifier: nothing lost, no effect doubled). Four points are also taken the 8th time they are reached,
in the thick of the traffic.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.kafka.crashpoints import POINTS
from workers.local.broker import LocalBroker

ROOT = Path(__file__).resolve().parents[2]
from testkit.chaos import Options, run  # noqa: E402

STORES = ("rocksdb://", "memory://")
LATE = ("orders.outputs-acked", "orders.orders-written", "orders.orders-settled", "stock.stock-written")
CASES = [
    pytest.param(store, point, id=f"{store.removesuffix('://')}-{point}")
    for store in STORES
    for point in POINTS
    # The memory store writes at once: it has no write batches to die between.
    if not (store == "memory://" and point.startswith("store."))
] + [
    # The first time is early in the traffic (the stock snapshots, the creates): the same points again
    # further on, where batches number credit notes, return goods and move stock both ways.
    pytest.param(store, f"{point}@8", id=f"{store.removesuffix('://')}-{point}@8")
    for store in STORES
    for point in (
        "orders.outputs-acked",
        "orders.orders-written",
        "orders.orders-settled",
        "stock.stock-written",
    )
]


@pytest.mark.parametrize(("store", "point"), CASES)
def test_kill_9_at_a_crash_point_loses_nothing_and_doubles_nothing(
    broker: LocalBroker, tmp_path: Path, store: str, point: str
) -> None:
    lines: list[str] = []
    verdict, _ = run(
        Options(messages=300, kills=0, workers=1, seed=11, store=store, crash_at=point, workdir=tmp_path),
        broker=broker,
        echo=lines.append,
    )
    report = "\n".join(lines)
    log = (tmp_path / "worker0.log").read_text("utf-8", "replace")
    # It died there, once, by SIGKILL; the restarted worker did the rest.
    assert f"crash point reached: {point.partition('@')[0]}" in log, report
    assert [code for _at, _slot, code in verdict.deaths] == [-9], report
    assert verdict.ok, report
    assert lines[-1].startswith("lost=0 double_effects=0 "), report
