"""kill -9 at every step of a batch's commit protocol, on both table stores.

The crash points (workers/kafka/crashpoints.py: outputs sent, outputs acknowledged, each table step
written and settled, offsets committed, for the intake, the orders and the stock stages, and between two
partitions' write batches of the RocksDB store) are taken in turn by one worker running the chaos
traffic: it is started with every point still to come armed (OMS_TEST_CRASH_AT), kills itself with
SIGKILL at the first it reaches, and is restarted with the rest, until it has died once at each; the
last restart runs clean. Four points are taken again the 8th time they are reached after a restart, in
the thick of the traffic; if the log ends before, the run publishes spare waves of fresh orders until
they are (replay's expectation then covers them). Every output, every credit note number and the final
stock must then equal replay's (the chaos verifier: nothing lost, no effect doubled).

One worker killed at each point in turn costs a worker start per point instead of a whole chaos run
per point (broker topics, replay's expectation, two starts): the matrix ran 41 runs before. A restart
may meet the next point while it redoes the batch the last kill left half done, which a run per point
never did: a crash during the recovery from a crash.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.chaos import Options, run
from workers.kafka.crashpoints import POINTS
from workers.local.broker import LocalBroker

# The first time is early in the traffic (the stock snapshots, the creates): the same points again
# further on, where batches number credit notes, return goods and move stock both ways.
LATE = ("orders.outputs-acked", "orders.orders-written", "orders.orders-settled", "stock.stock-written")

# A worker restarted after a kill -9 waits for the killed member's session to end before it gets its
# partitions: about 6 s a restart with 3 s, 15 s with the local default of 6 s, over some 20 restarts.
SESSION_TIMEOUT = 3.0


def points_for(store: str) -> list[str]:
    # The memory store writes at once: it has no write batches to die between.
    first = [p for p in POINTS if store != "memory://" or not p.startswith("store.")]
    return first + [f"{point}@8" for point in LATE]


def kill_at_each_point_in_turn(broker: LocalBroker, tmp_path: Path, store: str) -> None:
    points = points_for(store)
    lines: list[str] = []
    verdict, _ = run(
        Options(
            messages=610,
            kills=0,
            workers=1,
            seed=11,
            store=store,
            crash_at=",".join(points),
            workdir=tmp_path,
            session_timeout=SESSION_TIMEOUT,
        ),
        broker=broker,
        echo=lines.append,
    )
    report = "\n".join(lines)
    log = (tmp_path / "worker0.log").read_text("utf-8", "replace").splitlines()
    said = [line.removeprefix("crash point reached: ") for line in log if line.startswith("crash point")]
    # It died at every point, once each (the @8 ones once more), by SIGKILL; the last restart did the rest.
    assert sorted(said) == sorted(point.partition("@")[0] for point in points), report
    assert sorted(verdict.reached) == sorted(points), report
    assert [code for _at, _slot, code in verdict.deaths] == [-9] * len(points), report
    assert verdict.ok, report
    assert lines[-1].startswith("lost=0 double_effects=0 "), report


# A class per store: the unit CI's xdist processes take (--dist loadscope), so the two runs, the
# longest of the suite, go to different processes.
class TestRocksDB:
    @pytest.mark.slow
    def test_kill_9_at_each_crash_point_in_turn_loses_nothing_and_doubles_nothing(
        self, broker: LocalBroker, tmp_path: Path
    ) -> None:
        kill_at_each_point_in_turn(broker, tmp_path, "rocksdb://")


class TestMemory:
    @pytest.mark.slow
    def test_kill_9_at_each_crash_point_in_turn_loses_nothing_and_doubles_nothing(
        self, broker: LocalBroker, tmp_path: Path
    ) -> None:
        kill_at_each_point_in_turn(broker, tmp_path, "memory://")
