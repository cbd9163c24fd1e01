"""`oms-postsales replay`: the Kafka workers' processing on a JSONL message log, with no broker (DESIGN §7).

Input line:  {"topic": "<message name>", "key": "…"?, "headers": {…}?, "timestamp": …?, "value": <JSON>}
A JSON *string* value is the raw record text, so undecodable records replay too. Output lines have the
same shape, in emission order; a dead letter's value is the original text as a JSON string.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pydantic import TypeAdapter

from domain.rules import RuleBook
from domain.state import OrderState, Series, StockItem, TakenNumbers
from domain.timeutil import parse_time
from workers.codec import MAX_RECORD_BYTES, InboundRecord, OutboundRecord, dumps, loads
from workers.pipeline import Pipeline, Processed, Stores, Topics


class ReplayInputError(ValueError):
    """The input file itself cannot be read (as opposed to a bad record inside it)."""


@dataclass
class ReplaySummary:
    records: int
    emitted: int
    counts: dict[str, int]


def read_records(lines: Iterator[str], source: str) -> Iterator[InboundRecord]:
    for number, line in enumerate(lines, start=1):
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


def output_line(record: OutboundRecord, dlq_topic: str) -> str:
    text = record.value.decode("utf-8", errors="surrogateescape")
    if record.topic == dlq_topic:
        value: Any = text
        return json.dumps(
            {"topic": record.topic, "key": record.key, "headers": record.headers, "value": value}
        )
    return dumps({"topic": record.topic, "key": record.key, "headers": record.headers, "value": loads(text)})


_ORDERS = TypeAdapter(dict[str, OrderState])
_STOCK = TypeAdapter(dict[str, StockItem])
_SERIES = TypeAdapter(dict[str, Series])
_SKUS = TypeAdapter(dict[str, list[str]])
_TAKEN = TypeAdapter(dict[str, TakenNumbers])
_UPSTREAM = TypeAdapter(dict[str, str])


def load_state(folder: Path) -> Stores:
    def read(name: str) -> bytes | None:
        path = folder / name
        return path.read_bytes() if path.exists() else None

    stores = Stores()
    if (raw := read("orders.json")) is not None:
        stores.orders = _ORDERS.validate_json(raw)
    if (raw := read("stock.json")) is not None:
        stores.stock = _STOCK.validate_json(raw)
    if (raw := read("series.json")) is not None:
        stores.series = _SERIES.validate_json(raw)
    if (raw := read("source_skus.json")) is not None:
        stores.source_skus = _SKUS.validate_json(raw)
    if (raw := read("taken_numbers.json")) is not None:
        stores.taken = _TAKEN.validate_json(raw)
    if (raw := read("upstream_numbers.json")) is not None:
        stores.upstream = _UPSTREAM.validate_json(raw)
    return stores


def save_state(folder: Path, stores: Stores) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, adapter, value in (
        ("orders.json", _ORDERS, stores.orders),
        ("stock.json", _STOCK, stores.stock),
        ("series.json", _SERIES, stores.series),
        ("source_skus.json", _SKUS, stores.source_skus),
        ("taken_numbers.json", _TAKEN, stores.taken),
        ("upstream_numbers.json", _UPSTREAM, stores.upstream),
    ):
        tmp = folder / (name + ".tmp")
        tmp.write_bytes(adapter.dump_json(dict(value), indent=1))  # type: ignore[arg-type]
        tmp.replace(folder / name)


def replay(
    lines: Iterator[str],
    out: IO[str],
    rules: RuleBook,
    *,
    source: str = "input",
    stores: Stores | None = None,
    now: datetime | None = None,
    topics: Topics | None = None,
    partitions: int = 1,
    settle_at_end: bool = True,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> ReplaySummary:
    """`partitions` numbers credit notes per partition as a worker on that many partitions would."""
    pipeline = Pipeline(
        rules, stores=stores, topics=topics, now=now, partitions=partitions, max_record_bytes=max_record_bytes
    )
    dlq = pipeline.topics.dlq
    records = emitted = 0

    def write(batch: list[OutboundRecord]) -> None:
        nonlocal emitted
        for outbound in batch:
            out.write(output_line(outbound, dlq) + "\n")
            emitted += 1

    waiting: dict[str, None] = {k: None for k, order in pipeline.stores.orders.items() if order.held}

    def handled(processed: Processed) -> None:
        write(processed.records)
        pipeline.store(processed)
        write(pipeline.apply_movements(processed.movements))
        for order in processed.orders:
            if order.held:
                waiting[order.key] = None
            else:
                waiting.pop(order.key, None)

    # The whole file is read first: a broken line stops the run before anything is emitted.
    for record in list(read_records(lines, source)):
        records += 1
        handled(pipeline.process(record))
        if waiting:
            handled(pipeline.settle(list(waiting)))
    if settle_at_end:
        # At the end of the input every held message has waited as long as it ever will.
        handled(pipeline.settle(list(waiting), everything=True))
    return ReplaySummary(records, emitted, dict(pipeline.counts))
