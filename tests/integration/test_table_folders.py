"""A worker's RocksDB folder that is behind, ahead of, or foreign to its changelog is never served.

Each case runs the chaos traffic a few waves at a time through RocksDB workers, does something to a
data folder in between (an old snapshot put back, a folder from another cluster, one from a changelog
that was recreated, one written by an older version, a partition that moved to the other worker and back
after a crash), and then compares every output, credit note number and final stock level of the whole
log with replay's. A folder that is a prefix of the changelog is resumed from where it is (no rebuild);
any other is deleted and restored from the changelog, with a `table.rebuilding` warning naming it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import rocksdict

from tests.unit.test_rocksdb_options import written_options
from workers.kafka.durable_tables import MARK_KEY
from workers.local.broker import LocalBroker

ROOT = Path(__file__).resolve().parents[2]
from testkit.chaos import Stepwise  # noqa: E402

MESSAGES = 400


@pytest.fixture(scope="module")
def other_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A second cluster: its changelogs know nothing of the first one's."""
    local = LocalBroker(tmp_path_factory.mktemp("tansu-other"))
    local.start()
    try:
        yield local
    finally:
        local.stop()


def rebuilds(log: Path) -> list[dict[str, object]]:
    found = []
    for line in log.read_text("utf-8", "replace").splitlines():
        if '"table.rebuilding"' in line:
            found.append(json.loads(line))
    return found


def ok(run: Stepwise) -> None:
    verdict = run.verdict()
    assert verdict.ok, (verdict.lost[:5], verdict.doubled[:5], verdict.problems[:5])


@pytest.mark.slow
def test_an_old_snapshot_of_the_folder_resumes_from_its_offsets(broker: LocalBroker, tmp_path: Path) -> None:
    run = Stepwise(broker.bootstrap, tmp_path, MESSAGES, seed=21)
    run.through("data", "first", 4)  # stock, early, create, cancel_line
    shutil.copytree(tmp_path / "data", tmp_path / "snapshot")
    run.through("data", "second", 5)  # cancel, ship, return, receive, appease: credit notes numbered
    shutil.rmtree(tmp_path / "data")
    shutil.copytree(tmp_path / "snapshot", tmp_path / "data")  # the volume's old snapshot
    run.through("data", "third")
    ok(run)
    assert rebuilds(tmp_path / "third.log") == []  # behind is a prefix: resumed, not rebuilt
    # Every table's database ran with memory bounded per partition, not faust's 64 MiB write buffers.
    folders = list((tmp_path / "data").glob("*/v1/tables/*.db"))
    assert len(folders) >= 8
    for folder in folders:
        written = written_options(folder)
        assert (written["write_buffer_size"], written["max_write_buffer_number"]) == (str(256 * 1024), "2")


@pytest.mark.slow
def test_a_partition_that_moved_to_the_other_worker_and_back_after_a_crash(
    broker: LocalBroker, tmp_path: Path
) -> None:
    run = Stepwise(broker.bootstrap, tmp_path, MESSAGES, seed=22)
    first = run.worker("one", "one-a", OMS_TEST_CRASH_AT="orders.orders-written@3")
    run.publish(3, wait=False)  # stock, early, create: the third orders batch with writes kills it
    assert first.process is not None
    assert first.process.wait(60) == -9
    second = run.worker("two", "two")  # takes every partition, from the changelog
    run.committed()
    run.publish(4)
    assert second.stop() == 0
    first = run.worker("one", "one-b")  # back to the killed worker's folder, now behind
    run.publish()
    assert first.stop() == 0
    ok(run)
    assert rebuilds(tmp_path / "one-b.log") == []


@pytest.mark.slow
def test_a_folder_ahead_of_the_changelog_is_rebuilt(
    broker: LocalBroker, other_broker: LocalBroker, tmp_path: Path
) -> None:
    """The same group's folder from another cluster (or from before its changelogs were recreated):
    its offsets are past the end of this cluster's changelogs."""
    foreign = Stepwise(other_broker.bootstrap, tmp_path / "foreign", MESSAGES, seed=99)
    foreign.through("data", "foreign")
    run = Stepwise(broker.bootstrap, tmp_path, MESSAGES, seed=23)
    run.adopt(foreign, broker.bootstrap)
    shutil.copytree(tmp_path / "foreign" / "data", tmp_path / "data")
    run.through("data", "worker")
    ok(run)
    found = rebuilds(tmp_path / "worker.log")
    assert found, "the foreign folder was served"
    assert all(str(tmp_path / "data") in str(entry["folder"]) for entry in found)
    assert any("past the changelog's end" in str(entry["reason"]) for entry in found)


@pytest.mark.slow
def test_a_folder_whose_changelog_was_recreated_and_grew_past_it_is_rebuilt(
    broker: LocalBroker, other_broker: LocalBroker, tmp_path: Path
) -> None:
    """Offsets within the changelog, but the record there is not the one the folder was written from."""
    foreign = Stepwise(other_broker.bootstrap, tmp_path / "foreign", 120, seed=98)
    foreign.through("data", "foreign", 3)
    run = Stepwise(broker.bootstrap, tmp_path, MESSAGES, seed=24)
    run.adopt(foreign, broker.bootstrap)
    run.through("own", "own", 9)
    shutil.copytree(tmp_path / "foreign" / "data", tmp_path / "data")
    run.through("data", "worker")
    ok(run)
    found = rebuilds(tmp_path / "worker.log")
    assert any("is not the one it holds" in str(entry["reason"]) for entry in found), found


@pytest.mark.slow
def test_a_folder_of_an_older_version_is_rebuilt(broker: LocalBroker, tmp_path: Path) -> None:
    """A folder without the crash-safe store's mark (faust's own store wrote it) cannot be trusted."""
    run = Stepwise(broker.bootstrap, tmp_path, MESSAGES, seed=25)
    run.through("data", "first", 6)
    for path in (tmp_path / "data").glob("*/v1/tables/*.db"):
        db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
        db.delete(MARK_KEY)
        db.close()
    run.through("data", "second")
    ok(run)
    found = rebuilds(tmp_path / "second.log")
    assert found and all("no mark" in str(entry["reason"]) for entry in found)


def test_a_snapshot_older_than_the_changelogs_delete_retention_is_rebuilt(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """The same old snapshot, put back after longer than the changelogs' delete.retention.ms (a day
    when the broker does not say): Kafka's compaction may have dropped deletes written since, which it
    would never see. Rebuilt, where a recent snapshot is resumed (above)."""
    run = Stepwise(broker.bootstrap, tmp_path, MESSAGES, seed=26)
    run.through("data", "first", 4)
    shutil.copytree(tmp_path / "data", tmp_path / "snapshot")
    run.through("data", "second", 5)
    shutil.rmtree(tmp_path / "data")
    shutil.copytree(tmp_path / "snapshot", tmp_path / "data")
    two_days_ago = round(time.time() * 1000) - 2 * 24 * 3600 * 1000
    aged = 0
    for path in (tmp_path / "data").glob("*/v1/tables/*.db"):
        db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
        mark = db.get(MARK_KEY)
        if mark is not None:
            offset, fingerprint, _written = bytes(mark).decode().split(" ")
            db.put(MARK_KEY, f"{offset} {fingerprint} {two_days_ago}".encode())
            aged += 1
        db.close()
    assert aged >= 4
    run.through("data", "third")
    ok(run)
    found = rebuilds(tmp_path / "third.log")
    assert found and all("delete.retention.ms" in str(entry["reason"]) for entry in found)
