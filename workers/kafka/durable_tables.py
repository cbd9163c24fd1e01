"""faust tables whose local RocksDB copy is always a prefix of their changelog, whatever kills the worker.

faust's own RocksDB store writes a key to the local database the moment the table is written, while its
changelog record is only queued; the offset it resumes from is written later again, by the send's
callback. A SIGKILL in between leaves the local database holding writes the changelog never got. The
worker then finds its messages applied and emits nothing, the changelog never gets those writes, and
the next worker to own the partition restores a state without them (docs/notes/rocksdb-crash-safety.md).

Here a table write goes to a pending layer that reads see at once, and reaches RocksDB only when the
batch settles: once every changelog record of the write is acknowledged, the values, the offset of the
last record and a fingerprint of that record go into the database in one atomic write batch per
partition. So the database always equals the changelog up to the offset it holds, the offset faust
resumes from is never past what the database has, and a partition that moves between workers, or a
folder restored from a snapshot, resumes from exactly where its database is.

A database is checked against the changelog when its partition is assigned: one without the mark of
this store (written by faust's store or before this version), one whose offset is at or past the end
of the changelog (the changelog was recreated or truncated, a folder of another cluster), or whose
fingerprint is not the record at that offset (a changelog recreated and written past it) is deleted
and rebuilt from the changelog, with one warning naming the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import faust
import rocksdict
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from faust.stores import STORES
from faust.stores import rocksdb as faust_rocksdb
from faust.streams import current_event
from faust.types import TP, CollectionT, EventT

from workers.kafka import crashpoints, metrics
from workers.kafka.cluster import settings_of

log = structlog.get_logger("oms_postsales.tables")

#: Store URL scheme of `DurableStore`; `rocksdb://` in the settings selects it (`store_url`).
SCHEME = "oms-rocksdb"
#: "<offset> <fingerprint> <written at, ms>" of the changelog record the database was written up to.
MARK_KEY = b"__oms\0changelog__"
#: Kafka's default delete.retention.ms, when the broker does not say (the local broker does not).
DEFAULT_DELETE_RETENTION_MS = 24 * 3600 * 1000
#: Part of delete.retention.ms kept as a margin for clock skew and the restore's own duration.
STALE_MARGIN = 0.1
STALE_MARGIN_MIN_MS = 5 * 60 * 1000
#: How long the check of a database against its changelog may take before it counts as failed.
CHECK_TIMEOUT_SECONDS = 30.0
_CHECKER_ATTRIBUTE = "_oms_changelog_checker"


def fingerprint(key: bytes, value: bytes | None) -> str:
    digest = hashlib.sha256()
    digest.update(len(key).to_bytes(4, "big"))
    digest.update(key)
    digest.update(b"\x00" if value is None else b"\x01" + value)
    return digest.hexdigest()[:32]


def mark_bytes(offset: int, key: bytes, value: bytes | None, now_ms: int | None = None) -> bytes:
    """The mark of a database written up to this changelog record, at this wall-clock time."""
    written = round(time.time() * 1000) if now_ms is None else now_ms
    return f"{offset} {fingerprint(key, value)} {written}".encode()


@dataclass(frozen=True)
class Mark:
    offset: int
    fingerprint: str
    # When the database was last written (None: a mark of an earlier version, which had no time).
    written_ms: int | None

    @classmethod
    def parse(cls, raw: bytes) -> Mark:
        offset, _, rest = bytes(raw).decode().partition(" ")
        print_, _, written = rest.partition(" ")
        return cls(int(offset), print_, int(written) if written.isdigit() else None)


def stale_reason(mark: Mark, end: int, delete_retention_ms: int, now_ms: int) -> str | None:
    """Why a database that is a prefix of its changelog may still miss deletes: Kafka's compaction
    drops a tombstone once it is older than the changelog's delete.retention.ms, so a database last
    written longer ago than that (less a margin), with records after its mark, may never see the
    delete of a key it holds; the key would come back. A database whose mark is the changelog's last
    record saw everything, however old."""
    if mark.offset + 1 >= end:
        return None
    if mark.written_ms is None:
        return "its mark has no time (an earlier version) and the changelog has moved on since"
    margin = max(STALE_MARGIN_MIN_MS, int(delete_retention_ms * STALE_MARGIN))
    age = now_ms - mark.written_ms
    if age > delete_retention_ms - margin:
        return (
            f"it was last written {age // 60000} min ago, longer than the changelog's "
            f"delete.retention.ms ({delete_retention_ms} ms) less a margin: deletes compacted away "
            "since then would be missed"
        )
    return None


def store_url(store: str) -> str:
    """The faust store URL for a store setting: `rocksdb://` is this module's store."""
    scheme, sep, rest = store.partition("://")
    return f"{SCHEME}://{rest}" if sep and scheme == "rocksdb" else store


def store_options(store: str, write_buffer_kib: int, block_cache_kib: int) -> dict[str, Any]:
    """The options each table gives its store: RocksDB's memory bounded per partition database."""
    if not store.startswith("rocksdb://"):
        return {}
    return {
        "write_buffer_size": write_buffer_kib * 1024,
        # One buffer fills while the other is written out; more only hold more memory.
        "max_write_buffer_number": 2,
        "block_cache_size": block_cache_kib * 1024,
    }


class ChangelogWriteFailed(RuntimeError):
    """A batch's changelog records were not all acknowledged: the batch is handled again."""

    def __init__(self, message: str, topic: str) -> None:
        super().__init__(message)
        self.topic = topic


class SettlingTable(faust.Table[Any, Any]):
    """A faust table that keeps the changelog sends of its writes, so that a batch can wait until they
    are acknowledged (`settle`) before it goes on: the barrier between the steps of a batch's writes,
    and for `DurableStore` the moment its database is written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unsettled: list[faust.types.FutureMessage] = []

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send_changelog(*args, **kwargs)
        self._unsettled.append(future)
        store = self.data
        if isinstance(store, DurableStore):
            store.note_sent(future)
        return future

    async def settle(self) -> int:
        """Wait for every changelog record written since the last settle; then the store keeps the
        writes for good. A record the broker did not take undoes the writes of a `DurableStore` (the
        batch is handled again from scratch) and raises."""
        futures, self._unsettled = self._unsettled, []
        if not futures:
            return 0
        store = self.data
        # asyncio.wait, not gather: a cancelled batch must not cancel faust's own futures.
        await asyncio.wait(futures)
        failed = [f for f in futures if f.cancelled() or f.exception() is not None]
        if failed:
            if isinstance(store, DurableStore):
                store.discard_pending()
            why = f"{len(failed)} changelog records of table {self.name} not acknowledged"
            first = failed[0]
            topic = self.changelog_topic.get_topic_name()
            raise ChangelogWriteFailed(why, topic) from (None if first.cancelled() else first.exception())
        if isinstance(store, DurableStore):
            store.commit_pending()
        return len(futures)


class ChangelogChecker:
    """Reads the changelog record a local database says it was written up to, with a consumer of its
    own (no group), to tell whether the database is a prefix of that changelog."""

    def __init__(self, client_kwargs: Mapping[str, Any], timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
        self._kwargs = dict(client_kwargs)
        self._timeout = timeout
        self._retention: dict[str, int] = {}

    async def delete_retention_ms(self, topic: str) -> int:
        """The changelog's delete.retention.ms as the broker reports it (Kafka's default when it does
        not, as the local broker does not), read once per topic."""
        known = self._retention.get(topic)
        if known is not None:
            return known
        value = DEFAULT_DELETE_RETENTION_MS
        admin = AIOKafkaAdminClient(**self._kwargs)
        try:
            await admin.start()
            answer = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            given = settings_of(answer).get(topic, ({}, None))[0].get("delete.retention.ms", "")
            if given.isdigit():
                value = int(given)
        except Exception as exc:  # unknown: Kafka's default, and say so
            log.warning("table.delete_retention_unknown", topic=topic, error=type(exc).__name__)
        finally:
            await admin.close()
        self._retention[topic] = value
        return value

    async def mismatches(self, marks: Mapping[TP, Mark]) -> dict[TP, str]:
        """Why each database whose mark is not the changelog's record is not: a reason per partition."""
        if not marks:
            return {}
        consumer = AIOKafkaConsumer(
            **self._kwargs, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
        )
        reasons: dict[TP, str] = {}
        await consumer.start()
        try:
            parts = {TopicPartition(tp.topic, tp.partition): tp for tp in marks}
            ends = await consumer.end_offsets(list(parts))
            starts = await consumer.beginning_offsets(list(parts))
            wanted: dict[TopicPartition, int] = {}
            now_ms = round(time.time() * 1000)
            for part, tp in parts.items():
                offset = marks[tp].offset
                stale = stale_reason(marks[tp], ends[part], await self.delete_retention_ms(tp.topic), now_ms)
                if offset >= ends[part]:
                    reasons[tp] = (
                        f"it holds changelog offset {offset}, past the changelog's end offset {ends[part]}"
                    )
                elif offset < starts[part]:
                    reasons[tp] = f"changelog offset {offset} is before the changelog's start {starts[part]}"
                elif stale is not None:
                    reasons[tp] = stale
                else:
                    wanted[part] = offset
            if wanted:
                prints = {part: marks[parts[part]].fingerprint for part in wanted}
                for part, why in (await self._read_and_compare(consumer, wanted, prints)).items():
                    reasons[parts[part]] = why
        finally:
            await consumer.stop()
        return reasons

    async def _read_and_compare(
        self, consumer: AIOKafkaConsumer, wanted: dict[TopicPartition, int], prints: dict[TopicPartition, str]
    ) -> dict[TopicPartition, str]:
        reasons: dict[TopicPartition, str] = {}
        consumer.assign(list(wanted))
        for part, offset in wanted.items():
            consumer.seek(part, offset)
        deadline = time.monotonic() + self._timeout
        while wanted and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=500)
            for part, records in fetched.items():
                if part not in wanted or not records:
                    continue
                offset, first = wanted.pop(part), records[0]
                # A first record past the offset: compaction removed that record because a later one
                # of the same key follows, which recovery replays.
                if first.offset == offset and fingerprint(first.key or b"", first.value) != prints[part]:
                    reasons[part] = f"the changelog's record at offset {offset} is not the one it holds"
                consumer.pause(part)
        for part in wanted:
            reasons[part] = "its changelog record could not be read to check it"
        return reasons


def install_checker(app: faust.App, client_kwargs: Mapping[str, Any]) -> None:
    setattr(app, _CHECKER_ATTRIBUTE, ChangelogChecker(client_kwargs))


class BoundedOptions(faust_rocksdb.RocksDBOptions):
    """RocksDB options with the files beside the data bounded too: the info log of every database rolls
    at 256 KiB and keeps two files (it logged each flush and grew with the history), and two files at
    level 0 start a compaction, so overwritten order versions and tombstones do not wait in four."""

    def as_options(self) -> Any:
        options = super().as_options()
        options.set_max_log_file_size(256 * 1024)
        options.set_keep_log_file_num(2)
        options.set_level_zero_file_num_compaction_trigger(2)
        return options


class DurableStore(faust_rocksdb.Store):
    """faust's RocksDB store with writes held until their changelog records are acknowledged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.use_rocksdict:
            raise RuntimeError("the crash-safe RocksDB store needs the rocksdict driver")
        self.rocksdb_options = BoundedOptions(**(self.options or {}), use_rocksdict=True)
        # Per partition: the writes not yet in the database (None: deleted).
        self._pending: dict[int, dict[bytes, bytes | None]] = {}
        # Per partition: the last write's changelog send, key and value (the mark once it settles).
        self._last: dict[int, tuple[Any, bytes, bytes | None]] = {}
        self._sent: Any = None

    # -- writes ---------------------------------------------------------------------------------------

    def note_sent(self, future: Any) -> None:
        """The changelog send of the write that follows (the table sends, then writes the store)."""
        self._sent = future

    def _write(self, key: bytes, value: bytes | None) -> None:
        future, self._sent = self._sent, None
        if future is not None and future.message.partition is not None:
            partition = int(future.message.partition)
        else:
            event = current_event()
            assert event is not None, "a table is written from a record's handling"
            partition = event.message.partition
        self._pending.setdefault(partition, {})[key] = value
        self._key_index[key] = partition
        if future is not None:
            self._last[partition] = (future, key, value)

    def _set(self, key: bytes, value: bytes | None) -> None:
        self._write(key, value)

    def _del(self, key: bytes) -> None:
        self._write(key, None)

    def commit_pending(self) -> None:
        """Write what settled, one atomic write batch per partition, with the offset and the mark of the
        changelog record written last."""
        pending, last = self._pending, self._last
        self._pending, self._last = {}, {}
        for number, (partition, writes) in enumerate(pending.items()):
            db = self._dbs.get(partition)
            if db is None:  # revoked while the batch ran: its new owner restores from the changelog
                continue
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in writes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            if partition in last:
                future, key, value = last[partition]
                offset = int(future.result().offset)
                batch.put(self.offset_key, str(offset).encode())
                batch.put(MARK_KEY, mark_bytes(offset, key, value))
            db.write(batch)
            if number < len(pending) - 1:
                crashpoints.reach("store.partition-committed")

    def discard_pending(self) -> None:
        self._pending, self._last, self._sent = {}, {}, None

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        # faust calls this from each changelog send's callback, before the write is in the database;
        # the offset is written with the values instead (commit_pending, apply_changelog_batch).
        return None

    def apply_changelog_batch(
        self,
        batch: Iterable[EventT[Any]],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        """Recovery: the records, the offset and the mark of the last one, atomically per partition."""
        batches: defaultdict[int, Any] = defaultdict(lambda: rocksdict.WriteBatch(raw_mode=True))
        last: dict[int, tuple[int, bytes, bytes | None]] = {}
        for event in batch:
            message = event.message
            if message.value is None:
                batches[message.partition].delete(message.key)
            else:
                batches[message.partition].put(message.key, message.value)
            if message.partition not in last or message.offset > last[message.partition][0]:
                last[message.partition] = (message.offset, message.key or b"", message.value)
        for partition, writes in batches.items():
            offset, key, value = last[partition]
            writes.put(self.offset_key, str(offset).encode())
            writes.put(MARK_KEY, mark_bytes(offset, key, value))
            self._db_for_partition(partition).write(writes)

    # -- reads see the pending writes -------------------------------------------------------------------

    def _pending_for_read(self) -> Iterator[dict[bytes, bytes | None]]:
        event = current_event()
        if event is not None and not self.table.is_global and not self.table.use_partitioner:
            pending = self._pending.get(event.message.partition)
            if pending is not None:
                yield pending
        else:
            yield from self._pending.values()

    def _get(self, key: bytes) -> bytes | None:
        for pending in self._pending_for_read():
            if key in pending:
                return pending[key]
        value: bytes | None = super()._get(key)
        return value

    def _contains(self, key: bytes) -> bool:
        for pending in self._pending_for_read():
            if key in pending:
                return pending[key] is not None
        return bool(super()._contains(key))

    def _visible_keys(self, db: Any) -> Iterator[bytes]:
        return (key for key in super()._visible_keys(db) if key != MARK_KEY)

    def _visible_items(self, db: Any) -> Iterator[tuple[bytes, bytes]]:
        return ((key, value) for key, value in super()._visible_items(db) if key != MARK_KEY)

    def _active_partitions(self) -> Iterator[tuple[int, Any]]:
        actives = self.app.assignor.assigned_actives()
        topic = self.table.changelog_topic.get_topic_name()
        for partition, db in list(self._dbs.items()):
            if self.table.is_global or TP(topic=topic, partition=partition) in actives:
                yield partition, db

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        for partition, db in self._active_partitions():
            pending = self._pending.get(partition, {})
            for key, value in self._visible_items(db):
                if key not in pending:
                    yield key, value
            for key, maybe in pending.items():
                if maybe is not None:
                    yield key, maybe

    def _iterkeys(self) -> Iterator[bytes]:
        return (key for key, _ in self._iteritems())

    def _itervalues(self) -> Iterator[bytes]:
        return (value for _, value in self._iteritems())

    def _size(self) -> int:
        return sum(1 for _ in self._iteritems())

    # -- partitions come and go ------------------------------------------------------------------------

    def revoke_partitions(self, table: CollectionT, tps: set[TP]) -> None:
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                self._pending.pop(tp.partition, None)
                self._last.pop(tp.partition, None)
        super().revoke_partitions(table, tps)

    async def assign_partitions(self, table: CollectionT, tps: set[TP], generation_id: int = 0) -> None:
        await super().assign_partitions(table, tps, generation_id)
        standbys = self.app.assignor.assigned_standbys()
        mine = {tp for tp in tps if tp.topic in table.changelog_topic.topics and tp not in standbys}
        await self._check(mine)

    async def _check(self, tps: set[TP]) -> None:
        marks: dict[TP, Mark] = {}
        for tp in sorted(tps):
            db = self._dbs.get(tp.partition)
            if db is None:
                continue
            mark = db.get(MARK_KEY)
            if mark is None:
                empty = next(iter(self._visible_keys(db)), None) is None
                if db.get(self.offset_key) is not None or not empty:
                    self._rebuild(tp, "it has no mark of the crash-safe store (written by an older version)")
                continue
            marks[tp] = Mark.parse(mark)
        checker: ChangelogChecker | None = getattr(self.app, _CHECKER_ATTRIBUTE, None)
        if checker is None or not marks:
            return
        started = time.monotonic()
        try:
            reasons = await checker.mismatches(marks)
        except Exception as exc:  # no answer is no proof: rebuilding is always right, only slower
            reasons = {tp: f"the changelog could not be read ({type(exc).__name__})" for tp in marks}
        log.info(
            "table.checked",
            table=self.table.name,
            partitions=sorted(tp.partition for tp in marks),
            rebuilt=sorted(tp.partition for tp in reasons),
            seconds=round(time.monotonic() - started, 3),
        )
        for tp, why in sorted(reasons.items()):
            self._rebuild(tp, why)

    def _rebuild(self, tp: TP, why: str) -> None:
        """Delete the partition's database; faust then restores it from the changelog's start."""
        path = self.partition_path(tp.partition)
        log.warning(
            "table.rebuilding",
            table=self.table.name,
            partition=tp.partition,
            folder=str(path),
            reason=f"local state not served: {why}",
        )
        metrics.TABLE_REBUILDS.labels(self.table.name).inc()
        db = self._dbs.pop(tp.partition, None)
        if db is not None:
            with contextlib.suppress(Exception):
                db.close()
            del db
            gc.collect()
        self._pending.pop(tp.partition, None)
        self._last.pop(tp.partition, None)
        shutil.rmtree(path, ignore_errors=True)
        self._db_for_partition(tp.partition)


def register() -> None:
    STORES.aliases[SCHEME] = f"{__name__}:DurableStore"
