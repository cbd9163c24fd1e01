"""decode → validate → handle → encode, or dead letter: the one path every record takes, in `replay`
and in the Kafka workers alike. The stores are plain mutable mappings (dicts in replay, faust tables in
the worker), so both runners share this code and give the same outputs for the same input order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from aiokafka.partitioner import murmur2
from pydantic import ValidationError

from domain import names, retention
from domain.commands import StockUpdate
from domain.handlers import handle, order_key, parse, settle_expired
from domain.limits import MAX_RECORD_BYTES
from domain.outcome import (
    Event,
    FollowUp,
    Forgotten,
    MessageMeta,
    Movement,
    Outcome,
    Refused,
    rejection_event,
)
from domain.rule_versions import RuleVersions, stamp
from domain.rules import RuleBook
from domain.state import OrderState, StockItem
from domain.stock import apply_movement, snapshot_movements
from domain.timeutil import EPOCH, iso, parse_time
from workers.engine.codec import (
    Decoded,
    DecodeError,
    InboundRecord,
    OutboundRecord,
    dead_letter,
    decode,
    dumps_bytes,
    encode,
)
from workers.engine.personal import safe_error
from workers.engine.rule_records import RULES_TOPIC
from workers.engine.stores import Stores
from workers.engine.validation import Validators, default_validators
from workers.engine.values import JsonValues

# How an order is stored (the orders store's own encoding): what its size is measured in.
ORDER_VALUES = JsonValues(OrderState)

log = structlog.get_logger("oms_postsales.pipeline")

# On a follow-up record (a message the worker made for another order): the id of the message that made it.
FOLLOW_UP_OF = "oms.follow_up.of"


@dataclass
class Processed:
    """What one record produced. Nothing is stored yet: a runner first delivers `records` and
    `movements`, then calls `Pipeline.store`, so a crash in between re-delivers, never loses."""

    status: str
    records: list[OutboundRecord]
    movements: list[Movement]
    detail: str = ""
    message_id: str | None = None
    message_name: str | None = None
    # What the record changed, per store (no stock: movements are applied by the stock side).
    changes: Stores = field(default_factory=Stores)
    # Keys to delete per store before `changes` are written: an order that left state (retention).
    deleted: dict[str, list[str]] = field(default_factory=dict)
    forgotten: int = 0
    # 1 when the record brought an order into state that was not there.
    created: int = 0
    # The order partition the record was handled as (None: dead letters, stock snapshots).
    partition: int | None = None
    # Inbound messages it made for other orders (an exchange's child order): replay handles them right
    # after it, the Kafka worker sends them to its own inbound topic with its outputs.
    follow_ups: list[InboundRecord] = field(default_factory=list)


@dataclass(frozen=True)
class Routed:
    """Where the intake sends a record: to the partition of `key`, or (dead) to the dead-letter topic."""

    key: str | None
    dead: Processed | None


@dataclass(frozen=True)
class Topics:
    """Message name ⇄ topic, with the defaults of docs/contract.md (topic = message name)."""

    mapping: Mapping[str, str] = field(default_factory=dict)
    dlq: str = names.DEFAULT_DLQ_TOPIC
    # The rule sets' topic (workers/engine/rule_records.py): read by the rules reader, and by replay.
    rules: str = RULES_TOPIC

    def topic(self, name: str) -> str:
        return self.mapping.get(name, name)

    def names_by_topic(self) -> dict[str, str]:
        return {self.topic(name): name for name in names.INBOUND}

    def methods_by_topic(self) -> dict[str, frozenset[str]]:
        """The inbound messages each topic carries: those the map sends there (several when
        OMS_TOPIC_MAP maps several to one topic), with both spellings of a message that has two."""
        carried: dict[str, set[str]] = {}
        for name in names.INBOUND:
            carried.setdefault(self.topic(name), set()).update(names.SPELLINGS.get(name, (name,)))
        return {topic: frozenset(found) for topic, found in carried.items()}


class Pipeline:
    def __init__(
        self,
        rules: RuleBook | RuleVersions,
        stores: Stores | None = None,
        topics: Topics | None = None,
        validators: Validators | None = None,
        now: datetime | None = None,
        partitions: int | None = None,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        """`partitions`: replay's emulation of the Kafka key partitioner (None: trust the record's).
        `rules`: the rule sets by version (shared: the worker's rules reader adds versions as they come),
        or a rules file's book, which is version 1 of each of its keys from the start of time."""
        self.rules = rules if isinstance(rules, RuleVersions) else RuleVersions.from_book(rules)
        self.stores = stores or Stores()
        self.topics = topics or Topics()
        self.validators = validators or default_validators()
        self._name_for_topic = self.topics.names_by_topic()
        self._methods_for_topic = self.topics.methods_by_topic()
        self.fixed_now = now
        self.clock = now or EPOCH
        self.counts: Counter[str] = Counter()
        self.partitions = partitions
        self.max_record_bytes = max_record_bytes

    # -- order and stock messages -------------------------------------------------------------------

    def partition_of(self, key: str | None, given: int) -> int:
        if self.partitions is None or key is None:
            return given
        return partition_for(key, self.partitions)

    def key_for(self, record: InboundRecord) -> str | None:
        """The key a producer should give this record: "<channel>:<order id>", or the source for stock."""
        try:
            decoded = decode(record, self._name_for_topic, self.max_record_bytes, self._methods_for_topic)
            if decoded.name == names.STOCK_UPDATE:
                return str(StockUpdate.model_validate(decoded.params).snapshot.source_id)
            return parse(decoded.name, decoded.params).key or record.key
        except (DecodeError, ValidationError, KeyError, TypeError, AttributeError):
            return record.key

    def route(self, record: InboundRecord) -> Routed:
        """The intake's decision for one record as the producer sent it: a dead letter (it cannot be
        decoded or fails its schema), or the key its payload belongs to, whatever key it came with."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            topic=record.topic, partition=record.partition, offset=record.offset, key=record.key
        )
        try:
            decoded = decode(record, self._name_for_topic, self.max_record_bytes, self._methods_for_topic)
            failure = self.validators.check(decoded.name, decoded.params)
            if failure is not None:
                raise safe_error(
                    DecodeError("SchemaValidation", failure.message, "/params" + failure.pointer),
                    {"params": decoded.params},
                )
        except DecodeError as error:
            return Routed(None, self._dead(record, error))
        try:
            if decoded.name == names.STOCK_UPDATE:
                key = str(StockUpdate.model_validate(decoded.params).snapshot.source_id)
            else:
                key = parse(decoded.name, decoded.params).key or record.key or ""
        except ValidationError:
            # The handling stage dead-letters it with the pointer; any partition will do.
            key = record.key or ""
        return Routed(key, None)

    def process(self, record: InboundRecord, *, validated: bool = False) -> Processed:
        """Handle one inbound record; stock movements are returned for the caller to route.
        `validated`: the intake already checked it against its schema (the worker's orders stage)."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            topic=record.topic, partition=record.partition, offset=record.offset, key=record.key
        )
        try:
            decoded = decode(record, self._name_for_topic, self.max_record_bytes, self._methods_for_topic)
            failure = None if validated else self.validators.check(decoded.name, decoded.params)
            if failure is not None:
                raise safe_error(
                    DecodeError("SchemaValidation", failure.message, "/params" + failure.pointer),
                    {"params": decoded.params},
                )
        except DecodeError as error:
            return self._dead(record, error)
        structlog.contextvars.bind_contextvars(message_id=decoded.message_id, message_type=decoded.name)
        if FOLLOW_UP_OF in record.headers:
            structlog.contextvars.bind_contextvars(follow_up_of=record.headers[FOLLOW_UP_OF])
        if decoded.name == names.STOCK_UPDATE:
            return self._snapshot(record, decoded)
        try:
            parsed = parse(decoded.name, decoded.params)
        except ValidationError as exc:
            first = exc.errors()[0]
            path = "/params/" + "/".join(str(p) for p in first["loc"])
            invalid = DecodeError("DomainValidation", first["msg"], path)
            return self._dead(record, safe_error(invalid, {"params": decoded.params}))
        now = self._tick(record, parsed.time)
        key = parsed.key or record.key
        meta = MessageMeta(
            decoded.name,
            decoded.message_id,
            now,
            self.partition_of(key, record.partition),
            timed=record.timestamp is not None,
        )
        stored = self.stores.orders.get(key) if key else None
        outcome = handle(
            parsed,
            decoded.params_json,
            stored,
            self.stores.ledger,
            self.rules,
            meta,
            fallback_channel=_channel_of(record.key),
        )
        if outcome.order is not None and key:
            outcome = self._within_limit(outcome, key, meta, decoded.params_json)
        processed = self._finish(outcome, decoded)
        processed.partition = meta.partition
        if outcome.order is not None and (stored is None or outcome.forgotten is not None):
            processed.created = 1
        return processed

    def _snapshot(self, record: InboundRecord, decoded: Decoded) -> Processed:
        try:
            update = StockUpdate.model_validate(decoded.params)
        except ValidationError as exc:
            return self._dead(record, DecodeError("DomainValidation", exc.errors()[0]["msg"], "/params"))
        snapshot = update.snapshot
        now = self._tick(record, snapshot.created_on)
        # The SKUs a source has are the ones its snapshots listed: a FULL snapshot zeroes those it omits.
        known = self.stores.source_skus.get(snapshot.source_id, [])
        movements = snapshot_movements(
            snapshot, decoded.message_id, iso(now), known, timed=record.timestamp is not None
        )
        listed = [entry.sku for entry in snapshot.stock if entry.sku not in known]
        self._count("applied")
        log.info("record.handled", outcome="applied", events=0, movements=len(movements))
        return Processed(
            "applied",
            [],
            movements,
            message_id=decoded.message_id,
            message_name=decoded.name,
            changes=Stores(
                source_skus={snapshot.source_id: [*known, *dict.fromkeys(listed)]} if listed else {}
            ),
        )

    def apply_movement(self, movement: Movement) -> tuple[StockItem, OutboundRecord | None]:
        """The stock side: apply a movement once; the caller publishes the record, then stores the item."""
        item, event = apply_movement(self.stores.stock.get(movement.key), movement)
        return item, self._encode(event, 0) if event is not None else None

    def apply_movements(self, movements: Iterable[Movement]) -> list[OutboundRecord]:
        """Apply and store at once (replay): publish every change of available-to-sell."""
        records: list[OutboundRecord] = []
        for movement in movements:
            item, record = self.apply_movement(movement)
            self.stores.stock[movement.key] = item
            if record is not None:
                records.append(record)
        return records

    def store(self, processed: Processed) -> None:
        """Delete what a processed record forgot, then write what it changed, store by store in the
        order of `STORES`."""
        if processed.deleted:
            self.stores.delete(processed.deleted)
        self.stores.update(processed.changes)

    # -- holds ------------------------------------------------------------------------------------

    def settle(
        self,
        keys: Iterable[str],
        now: datetime | None = None,
        *,
        partition: int = 0,
        everything: bool = False,
    ) -> Processed:
        """Refuse, or refund standalone, the held messages of these orders whose deadline has passed."""
        moment = now or self.clock
        total = Processed("applied", [], [])
        for key in keys:
            order = self.stores.orders.get(key)
            if order is None or not order.held:
                continue
            view = self.stores.ledger.after(total.changes)
            at = self.partition_of(key, partition)
            outcome = settle_expired(order, view, self.rules, moment, at, everything=everything)
            if outcome.order is None:
                continue
            structlog.contextvars.clear_contextvars()  # not the last record's: a deadline passed
            structlog.contextvars.bind_contextvars(settled=True, key=key, partition=at)
            processed = self._finish(outcome, None)
            total.changes.update(processed.changes)
            for name, keys in processed.deleted.items():
                total.deleted.setdefault(name, []).extend(keys)
            total.forgotten += processed.forgotten
            total.records.extend(processed.records)
            total.movements.extend(processed.movements)
            total.follow_ups.extend(processed.follow_ups)
        return total

    # -- retention ----------------------------------------------------------------------------------

    def sweep(self, keys: Iterable[str], latest: datetime, *, partition: int = 0) -> Processed:
        """Delete the orders among `keys` whose retention ended (domain/retention.py) by message time
        `latest`; they make no outputs."""
        total = Processed("applied", [], [])
        structlog.contextvars.clear_contextvars()  # not the last record's: the sweep's
        structlog.contextvars.bind_contextvars(swept=True, partition=partition)
        for key in keys:
            order = self.stores.orders.get(key)
            if order is None:
                continue
            rules = self.rules.for_channel(order.sales_channel, latest)
            gone = retention.swept(rules, order, latest, self.partition_of(key, partition))
            if gone is None:
                continue
            for name, found in self._forgetting(gone).get("deleted", {}).items():
                total.deleted.setdefault(name, []).extend(found)
            total.forgotten += 1
        return total

    def forget_at(self, order: OrderState) -> datetime | None:
        """When a sweep may delete this order (its retention's end plus the sweep's grace)."""
        # The rules of its last change: when the sweep looks again, it decides by the rules of then.
        changed = parse_time(order.changed_at) or EPOCH
        moment = retention.forget_at(self.rules.for_channel(order.sales_channel, changed), order)
        return moment + retention.SWEEP_GRACE if moment is not None else None

    # -- helpers ----------------------------------------------------------------------------------

    def _within_limit(self, outcome: Outcome, key: str, meta: MessageMeta, params_json: str) -> Outcome:
        """The order as it would be stored must fit one record (OMS_MAX_RECORD_BYTES): a changelog
        write the broker refuses would stop the partition. A message that would take it past is
        refused and the order left as it was (replay refuses the same message)."""
        assert outcome.order is not None
        size = len(ORDER_VALUES.encode(outcome.order))
        if size <= self.max_record_bytes:
            return outcome
        refused = Refused(
            "ORDER_TOO_LARGE",
            f"order {outcome.order.key}: stored it would take {size} bytes, more than the "
            f"{self.max_record_bytes} one record may hold; the order is left as it was",
        )
        event = rejection_event(key, meta, params_json, refused)
        stamp([event], self.rules.version_for(outcome.order.sales_channel, meta.now).label)
        return Outcome("rejected", events=[event], detail=refused.code)

    def _tick(self, record: InboundRecord, message_time: str | None) -> datetime:
        """Message time: the record's timestamp, else the message's own date, else the clock so far."""
        if self.fixed_now is not None and record.timestamp is None:
            return self.fixed_now
        moment = record.timestamp or parse_time(message_time) or self.clock
        self.clock = max(self.clock, moment)
        return moment

    def _finish(self, outcome: Outcome, decoded: Decoded | None) -> Processed:
        records = self._encode_all(outcome.events)
        self._count(outcome.status)
        # Every record leaves one line with its ids and what became of it (never its payload).
        detail = {"detail": outcome.detail} if outcome.detail else {}
        log.info(
            "record.handled",
            outcome=outcome.status,
            events=len(records),
            movements=len(outcome.movements),
            **detail,
        )
        return Processed(
            outcome.status,
            records,
            list(outcome.movements),
            outcome.detail,
            decoded.message_id if decoded else None,
            decoded.name if decoded else None,
            changes=Stores(
                orders={outcome.order.key: outcome.order} if outcome.order is not None else {},
                series=dict(outcome.series),
                taken=dict(outcome.taken),
                upstream=dict(outcome.upstream),
            ),
            follow_ups=[self._follow_up(follow) for follow in outcome.follow_ups],
            **self._forgetting(outcome.forgotten),
        )

    def _follow_up(self, follow: FollowUp) -> InboundRecord:
        """A follow-up as the record an upstream producer would have written, dated by its cause."""
        envelope = {"jsonrpc": "2.0", "id": follow.message_id, "method": follow.name, "params": follow.params}
        key = order_key(follow.key_channel, follow.key_order)
        return InboundRecord(
            topic=self.topics.topic(follow.name),
            value=dumps_bytes(envelope),
            key=key,
            headers={FOLLOW_UP_OF: follow.message_id.rsplit("#", 1)[0]},
            partition=self.partition_of(key, 0),
            timestamp=follow.at,
        )

    def _forgetting(self, gone: Forgotten | None) -> dict[str, Any]:
        if gone is None:
            return {}
        log.info("order.forgotten", order_key=gone.order_key)
        deleted = {
            "orders": [gone.order_key],
            "taken": [gone.order_key],
            "upstream": list(gone.upstream_keys),
        }
        return {"deleted": deleted, "forgotten": 1}

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
        error = safe_error(error)  # bounded, and never quoting a personal value
        self._count("dead_letter")
        log.warning("record.dead_letter", error_class=error.error_class, path=error.path)
        failed_at = record.timestamp or self.clock
        return Processed(
            "dead_letter", [dead_letter(record, error, self.topics.dlq, failed_at)], [], error.error_class
        )

    def _count(self, status: str) -> None:
        self.counts[status] += 1


def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key bytes), as the Java client and aiokafka do."""
    hashed: int = murmur2(key.encode("utf-8"))
    return (hashed & 0x7FFFFFFF) % partitions


def _channel_of(key: str | None) -> str | None:
    if key and ":" in key:
        return key.split(":", 1)[0]
    return None
