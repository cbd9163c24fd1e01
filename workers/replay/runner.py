"""`oms-postsales replay`: the Kafka workers' processing on a JSONL message log, with no broker (README).

Input line:  {"topic": "<message name>", "key": "…"?, "headers": {…}?, "timestamp": …?, "value": <JSON>}
A JSON *string* value is the raw record text, so undecodable records replay too. Output lines have the
same shape, in emission order; a dead letter's value is the original text as a JSON string.
"""

from __future__ import annotations

import heapq
import io
import itertools
import json
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from domain.limits import MAX_RECORD_BYTES
from domain.rule_versions import RuleVersions
from domain.rules import RuleBook
from domain.state import OrderState, Series, StockItem
from domain.timeutil import EPOCH, iso, parse_time
from workers.engine.codec import InboundRecord, OutboundRecord, dead_letter, dumps, loads
from workers.engine.ordering import lifecycle_ranks, ties_in_lifecycle_order
from workers.engine.pipeline import Pipeline, Processed, Topics
from workers.engine.rule_records import read_record
from workers.engine.stores import Stores
from workers.engine.values import JsonValues
from workers.replay.disk_stores import DATABASE, DiskStores


class ReplayInputError(ValueError):
    """The input file itself cannot be read (as opposed to a bad record inside it)."""


@dataclass
class ReplaySummary:
    records: int
    emitted: int
    counts: dict[str, int]
    # The wall clock the run took, when the log had no clock and no --now was given.
    wall_clock: datetime | None = None
    # Orders that left state (retention), on their next message or by the sweep.
    forgotten: int = 0


def read_records(lines: Iterator[str], source: str, first: int = 1) -> Iterator[InboundRecord]:
    for number, line in enumerate(lines, start=first):
        if not line.strip():
            continue
        try:
            item = loads(line)
        except (ValueError, RecursionError) as exc:
            raise ReplayInputError(f"{source}:{number}: not a JSON line ({exc})") from None
        if not isinstance(item, dict) or not isinstance(item.get("topic"), str) or "value" not in item:
            raise ReplayInputError(f'{source}:{number}: expected {{"topic": "…", "value": …}}')
        value = item["value"]
        raw = value if isinstance(value, str) else dumps(value)
        headers = item.get("headers") or {}
        if not isinstance(headers, dict):
            raise ReplayInputError(f"{source}:{number}: headers must be an object")
        key = item.get("key")
        timestamp = item.get("timestamp")
        yield InboundRecord(
            topic=item["topic"],
            # surrogateescape lets a JSON string stand for bytes that are not UTF-8.
            value=raw.encode("utf-8", errors="surrogateescape"),
            key=str(key) if key is not None else None,
            headers={str(k): str(v) for k, v in headers.items()},
            partition=0,
            offset=number - 1,
            timestamp=parse_time(timestamp) if timestamp is not None else None,
        )


def check_lines(lines: Iterator[str], source: str) -> None:
    """Raise what `read_records` would raise for the first broken line, without building records: a
    line that is not a well-formed record goes through `read_records`, so the error is the very one of
    the run itself."""
    for number, line in enumerate(lines, start=1):
        try:
            item = loads(line)
        except (ValueError, RecursionError):
            item = None
        if not (
            isinstance(item, dict)
            and isinstance(item.get("topic"), str)
            and "value" in item
            and isinstance(item.get("headers") or {}, dict)
        ):
            for _ in read_records(iter([line]), source, first=number):
                pass


def output_line(record: OutboundRecord, dlq_topic: str) -> str:
    text = record.value.decode("utf-8", errors="surrogateescape")
    head = {"topic": record.topic, "key": record.key, "headers": record.headers}
    if record.topic == dlq_topic:
        return json.dumps({**head, "value": text})
    # The value is compact JSON already (codec.encode): spliced in as is, not parsed and written again.
    return dumps(head)[:-1] + ',"value":' + text + "}"


# Files of the older --state layout (whole stores as JSON): read once into the database, then left.
_LEGACY_FILES: dict[str, tuple[str, JsonValues[Any]]] = {
    "orders.json": ("orders", JsonValues(dict[str, OrderState])),
    "stock.json": ("stock", JsonValues(dict[str, StockItem])),
    "series.json": ("series", JsonValues(dict[str, Series])),
    "source_skus.json": ("source_skus", JsonValues(dict[str, list[str]])),
}


def load_state(folder: Path) -> DiskStores:
    """The state in `folder` (a RocksDB database, created if missing); `save_state` closes it."""
    fresh = not (folder / DATABASE).exists()
    stores = DiskStores(folder)
    if fresh:
        for name, (store, values) in _LEGACY_FILES.items():
            if (folder / name).exists():
                getattr(stores, store).update(values.decode((folder / name).read_bytes()))
    return stores


def save_state(folder: Path, stores: Stores) -> None:
    """Write what is still only in memory and close the database."""
    if isinstance(stores, DiskStores):
        stores.close()


class _ReplayPipeline(Pipeline):
    """The pipeline with replay's clock: a log with no clock at all runs on the wall clock."""

    wall_clock: datetime | None = None
    _ticked = False

    def _tick(self, record: InboundRecord, message_time: str | None) -> datetime:
        if not self._ticked:
            self._ticked = True
            # The first message to need a time has none, and --now was not given: the wall clock is
            # taken once, as if it had been given as --now (replay says which, to run it again).
            if self.fixed_now is None and record.timestamp is None and parse_time(message_time) is None:
                self.wall_clock = self.fixed_now = self.clock = datetime.now(UTC).replace(microsecond=0)
        return super()._tick(record, message_time)


def replay(
    lines: Iterator[str],
    out: IO[str],
    rules: RuleBook | RuleVersions,
    *,
    source: str = "input",
    stores: Stores | None = None,
    now: datetime | None = None,
    topics: Topics | None = None,
    partitions: int = 1,
    settle_at_end: bool = True,
    max_record_bytes: int = MAX_RECORD_BYTES,
    progress: Callable[[], None] | None = None,
) -> ReplaySummary:
    """`partitions` numbers credit notes per partition as a worker on that many partitions would.
    `progress` is called once per record handled.

    The input is streamed (memory does not grow with it). A broken line stops the run before anything
    is emitted: a file is read once through first to check every line (cheap next to processing), and
    output goes to a temporary file, copied to `out` only once the whole input was read. Without
    `stores`, state lives in a temporary database removed at the end.
    """
    if isinstance(lines, io.TextIOBase) and lines.seekable():
        start = lines.tell()
        check_lines(lines, source)
        lines.seek(start)
    own = DiskStores() if stores is None else None
    try:
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="surrogateescape") as spool:
            summary = _replay(
                lines,
                spool,
                rules,
                source=source,
                stores=own or stores,
                now=now,
                topics=topics,
                partitions=partitions,
                settle_at_end=settle_at_end,
                max_record_bytes=max_record_bytes,
                progress=progress,
            )
            spool.seek(0)
            shutil.copyfileobj(spool, out)
    finally:
        if own is not None:
            own.close()
    if summary.wall_clock is not None:
        print(
            f"oms-postsales: the log carries no clock: replayed at the wall clock; "
            f"--now {iso(summary.wall_clock)} replays it the same way",
            file=sys.stderr,
        )
    return summary


def _replay(
    lines: Iterator[str],
    out: IO[str],
    rules: RuleBook | RuleVersions,
    *,
    source: str,
    stores: Stores | None,
    now: datetime | None,
    topics: Topics | None,
    partitions: int,
    settle_at_end: bool,
    max_record_bytes: int,
    progress: Callable[[], None] | None,
) -> ReplaySummary:
    if isinstance(rules, RuleBook):
        # The rules file is where the rules start; a log's own version-1 records replace it.
        rules = RuleVersions.from_book(rules, provisional=True)
    pipeline = _ReplayPipeline(
        rules, stores=stores, topics=topics, now=now, partitions=partitions, max_record_bytes=max_record_bytes
    )
    dlq = pipeline.topics.dlq
    records = emitted = 0
    counts: Counter[str] = Counter()

    def write(batch: list[OutboundRecord]) -> None:
        nonlocal emitted
        for outbound in batch:
            out.write(output_line(outbound, dlq) + "\n")
            emitted += 1

    # Orders with held messages, in the order they started waiting (the order in which a worker's
    # settle pass visits them), and when each is due next. Only due orders are settled after a record:
    # visiting every waiting order after every record made a replay quadratic in its held messages.
    waiting: dict[str, None] = {}
    due: list[tuple[datetime, int, str]] = []
    position: dict[str, int] = {}
    arrivals = itertools.count()

    def wait(order: OrderState) -> None:
        if order.key not in waiting:
            waiting[order.key] = None
            position[order.key] = next(arrivals)
        heapq.heappush(due, (_next_deadline(order), position[order.key], order.key))

    # When each order may be swept out of state (retention), soonest first, per partition: a worker
    # sweeps a partition on the latest message time of that partition, and replay does the same. One
    # entry per order, so memory follows the orders in state: a later change only moves that moment
    # later; an order is checked again when its entry comes up, and then swept or scheduled anew.
    expiring: dict[int, list[tuple[datetime, str]]] = {}
    scheduled: set[str] = set()
    latest: dict[int, datetime] = {}
    forgotten = 0

    def may_expire(order: OrderState, partition: int | None = None) -> None:
        if order.key in scheduled:
            return
        moment = pipeline.forget_at(order)
        if moment is not None:
            at = pipeline.partition_of(order.key, 0) if partition is None else partition
            heap = expiring.setdefault(at, [])
            heapq.heappush(heap, (moment, order.key))
            scheduled.add(order.key)

    for order in pipeline.stores.orders.values():
        if order.held:
            wait(order)
        may_expire(order)

    def handled(processed: Processed) -> None:
        nonlocal forgotten
        write(processed.records)
        pipeline.store(processed)
        write(pipeline.apply_movements(processed.movements))
        forgotten += processed.forgotten
        for order in processed.changes.orders.values():
            if order.held:
                wait(order)
            elif order.key in waiting:
                del waiting[order.key], position[order.key]
            may_expire(order, processed.partition)
        for follow_up in processed.follow_ups:
            handled(pipeline.process(follow_up))

    def sweep_due(partition: int, moment: datetime) -> None:
        heap = expiring.get(partition, [])
        keys: set[str] = set()
        while heap and heap[0][0] <= moment:
            keys.add(heapq.heappop(heap)[1])
        if not keys:
            return
        scheduled.difference_update(keys)
        handled(pipeline.sweep(sorted(keys), moment, partition=partition))
        for key in keys:
            if (order := pipeline.stores.orders.get(key)) is not None:
                may_expire(order)

    def settle_due() -> None:
        keys: set[str] = set()
        while due and due[0][0] <= pipeline.clock:
            keys.add(heapq.heappop(due)[2])
        if keys := {key for key in keys if key in waiting}:
            handled(pipeline.settle(sorted(keys, key=position.__getitem__)))

    ranks = lifecycle_ranks(pipeline.topics.topic)
    inbound = read_records(lines, source)
    for record in ties_in_lifecycle_order(inbound, lambda r: r.timestamp, lambda r: ranks.get(r.topic, 0)):
        records += 1
        if progress is not None:
            progress()
        if record.topic == pipeline.topics.rules:
            # A rule set joins the versions as the worker's rules reader adds it: it decides the
            # messages dated from its effective_from, wherever it sits in the log.
            read = read_record(record, pipeline.rules)
            if read.error is not None:
                write([dead_letter(record, read.error, dlq, record.timestamp or pipeline.clock)])
            counts["dead_letter" if read.error is not None else "rules"] += 1
            continue
        processed = pipeline.process(record)
        counts[processed.status] += 1
        handled(processed)
        if due:
            settle_due()
        if processed.partition is not None:
            moment = max(record.timestamp or pipeline.clock, latest.get(processed.partition, EPOCH))
            latest[processed.partition] = moment
            sweep_due(processed.partition, moment)
    if settle_at_end:
        # At the end of the input every held message has waited as long as it ever will.
        handled(pipeline.settle(list(waiting), everything=True))
    # One count per record read (a held record is counted as held, whatever became of it later).
    return ReplaySummary(records, emitted, dict(counts), pipeline.wall_clock, forgotten)


def _next_deadline(order: OrderState) -> datetime:
    """When the first held message of the order is due; an unreadable deadline is due at once."""
    return min(parse_time(held.deadline) or EPOCH for held in order.held)
