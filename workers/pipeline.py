"""decode → validate → handle → encode, or dead letter: the one path every record takes, in `replay`
and in the Kafka workers alike. The stores are plain mutable mappings (dicts in replay, faust tables in
the worker), so both runners share this code and give the same outputs for the same input order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from pydantic import ValidationError

from domain import names
from domain.commands import StockUpdate
from domain.handlers import handle, parse, settle_expired
from domain.outcome import Event, MessageMeta, Movement, Outcome
from domain.rules import RuleBook
from domain.state import OrderState, Series, StockItem
from domain.stock import apply_movement, snapshot_movements
from domain.timeutil import EPOCH, iso, parse_time
from workers.codec import (
    Decoded,
    DecodeError,
    InboundRecord,
    OutboundRecord,
    dead_letter,
    decode,
    encode,
)
from workers.validation import Validators, default_validators

log = structlog.get_logger("oms_postsales.pipeline")


@dataclass
class Stores:
    orders: MutableMapping[str, OrderState] = field(default_factory=dict)
    stock: MutableMapping[str, StockItem] = field(default_factory=dict)
    series: MutableMapping[str, Series] = field(default_factory=dict)
    # SKUs seen per source, so that a FULL snapshot can zero the ones it leaves out.
    source_skus: MutableMapping[str, list[str]] = field(default_factory=dict)


@dataclass
class Processed:
    status: str
    records: list[OutboundRecord]
    movements: list[Movement]
    detail: str = ""
    message_id: str | None = None
    message_name: str | None = None


@dataclass(frozen=True)
class Topics:
    """Message name ⇄ topic, with the defaults of DESIGN §3 (topic = message name)."""

    mapping: Mapping[str, str] = field(default_factory=dict)
    dlq: str = names.DEFAULT_DLQ_TOPIC

    def topic(self, name: str) -> str:
        return self.mapping.get(name, name)

    def names_by_topic(self) -> dict[str, str]:
        return {self.topic(name): name for name in names.INBOUND}


class Pipeline:
    def __init__(
        self,
        rules: RuleBook,
        stores: Stores | None = None,
        topics: Topics | None = None,
        validators: Validators | None = None,
        now: datetime | None = None,
    ) -> None:
        self.rules = rules
        self.stores = stores or Stores()
        self.topics = topics or Topics()
        self.validators = validators or default_validators()
        self._name_for_topic = self.topics.names_by_topic()
        self.fixed_now = now
        self.clock = now or EPOCH
        self.counts: Counter[str] = Counter()

    # -- order and stock messages -------------------------------------------------------------------

    def process(self, record: InboundRecord, partition: int | None = None) -> Processed:
        """Handle one inbound record; stock movements are returned for the caller to route."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            topic=record.topic, partition=record.partition, offset=record.offset, key=record.key
        )
        try:
            decoded = decode(record, self._name_for_topic)
            failure = self.validators.check(decoded.name, decoded.params)
            if failure is not None:
                raise DecodeError("SchemaValidation", failure.message, "/params" + failure.pointer)
        except DecodeError as error:
            return self._dead(record, error)
        structlog.contextvars.bind_contextvars(message_id=decoded.message_id, message_type=decoded.name)
        if decoded.name == names.STOCK_UPDATE:
            return self._snapshot(record, decoded)
        try:
            parsed = parse(decoded.name, decoded.params)
        except ValidationError as exc:
            first = exc.errors()[0]
            path = "/params/" + "/".join(str(p) for p in first["loc"])
            return self._dead(record, DecodeError("DomainValidation", first["msg"], path))
        now = self._tick(record, parsed.time)
        meta = MessageMeta(
            decoded.name, decoded.message_id, now, record.partition if partition is None else partition
        )
        key = parsed.key or record.key
        stored = self.stores.orders.get(key) if key else None
        outcome = handle(
            parsed,
            decoded.params_json,
            stored,
            self.stores.series,
            self.rules,
            meta,
            fallback_channel=_channel_of(record.key),
        )
        return self._finish(outcome, record, decoded)

    def _snapshot(self, record: InboundRecord, decoded: Decoded) -> Processed:
        try:
            update = StockUpdate.model_validate(decoded.params)
        except ValidationError as exc:
            return self._dead(record, DecodeError("DomainValidation", exc.errors()[0]["msg"], "/params"))
        snapshot = update.snapshot
        now = self._tick(record, snapshot.created_on)
        known = self.stores.source_skus.get(snapshot.source_id, [])
        movements = snapshot_movements(snapshot, decoded.message_id, iso(now), known)
        self._count("applied", decoded.name)
        log.info("record.handled", outcome="applied", movements=len(movements))
        return Processed("applied", [], movements, message_id=decoded.message_id, message_name=decoded.name)

    def apply_movements(self, movements: Iterable[Movement]) -> list[OutboundRecord]:
        """The stock side: apply movements to their items once each and publish every ATS change."""
        records: list[OutboundRecord] = []
        for movement in movements:
            item, event = apply_movement(self.stores.stock.get(movement.key), movement)
            self.stores.stock[movement.key] = item
            skus = self.stores.source_skus.get(movement.source_id, [])
            if movement.sku not in skus:
                self.stores.source_skus[movement.source_id] = [*skus, movement.sku]
            if event is not None:
                records.append(self._encode(event, 0))
        return records

    # -- holds ------------------------------------------------------------------------------------

    def settle(self, now: datetime | None = None, *, everything: bool = False) -> Processed:
        """Refuse or settle standalone the held messages whose deadline has passed (all, at the end)."""
        moment = now or self.clock
        total = Processed("applied", [], [])
        for key in [k for k, order in self.stores.orders.items() if order.held]:
            outcome = settle_expired(
                self.stores.orders[key], self.stores.series, self.rules, moment, everything=everything
            )
            if outcome.order is None:
                continue
            processed = self._finish(outcome, None, None)
            total.records.extend(processed.records)
            total.movements.extend(processed.movements)
        return total

    @property
    def waiting(self) -> int:
        return sum(len(order.held) for order in self.stores.orders.values())

    # -- helpers ----------------------------------------------------------------------------------

    def _tick(self, record: InboundRecord, message_time: str | None) -> datetime:
        """Message time: the record's timestamp, else the message's own date, else the clock so far."""
        if self.fixed_now is not None and record.timestamp is None:
            return self.fixed_now
        moment = record.timestamp or parse_time(message_time) or self.clock
        self.clock = max(self.clock, moment)
        return moment

    def _finish(self, outcome: Outcome, record: InboundRecord | None, decoded: Decoded | None) -> Processed:
        if outcome.order is not None:
            self.stores.orders[outcome.order.key] = outcome.order
        for name, series in outcome.series.items():
            self.stores.series[name] = series
        records = self._encode_all(outcome.events)
        name = decoded.name if decoded else "held"
        self._count(outcome.status, name)
        if outcome.status in ("rejected", "skipped", "held", "duplicate"):
            log.info("record.handled", outcome=outcome.status, detail=outcome.detail)
        return Processed(
            outcome.status,
            records,
            list(outcome.movements),
            outcome.detail,
            decoded.message_id if decoded else None,
            name,
        )

    def _encode_all(self, events: list[Event]) -> list[OutboundRecord]:
        index: Counter[str] = Counter()
        records = []
        for event in events:
            records.append(self._encode(event, index[event.cause]))
            index[event.cause] += 1
        return records

    def _encode(self, event: Event, index: int) -> OutboundRecord:
        return encode(
            event, index, self.topics.topic(event.name), self.validators.ids.get(event.name, event.name)
        )

    def _dead(self, record: InboundRecord, error: DecodeError) -> Processed:
        self._count("dead_letter", record.topic)
        log.warning("record.dead_letter", error_class=error.error_class, path=error.path)
        failed_at = record.timestamp or self.clock
        return Processed(
            "dead_letter", [dead_letter(record, error, self.topics.dlq, failed_at)], [], error.error_class
        )

    def _count(self, status: str, name: str) -> None:
        self.counts[status] += 1


def _channel_of(key: str | None) -> str | None:
    if key and ":" in key:
        return key.split(":", 1)[0]
    return None
