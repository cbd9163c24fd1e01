"""What Apache Kafka enforces and the local broker does not, with the broker's errors injected at the
client: produce errors by kind, the message time on internal records, a record timestamp of -1, the
stale-folder bound by delete.retention.ms, the one size limit and the idempotence setting."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import (
    InvalidTimestampError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from aiokafka.structs import TopicPartition

from workers.config.settings import Settings
from workers.engine.codec import InboundRecord, OutboundRecord
from workers.engine.ordering import NO_TIME, TIME_HEADER, _record_timestamp
from workers.kafka import delivery as delivery_module
from workers.kafka.app import _timestamp, forwarded, movement_records, origin, read_movements
from workers.kafka.delivery import Delivery
from workers.kafka.durable_tables import Mark, mark_bytes, stale_reason
from workers.kafka.produce_errors import Problems, ProducerErrorWatch, kind_of

DAY_MS = 24 * 3600 * 1000


def _record(topic: str = "out") -> OutboundRecord:
    return OutboundRecord(topic, "k", {}, b"{}")


class FlakySend:
    """A producer whose first `failures` sends fail with `error`, then succeed."""

    def __init__(self, error: BaseException, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    async def __call__(self, record: OutboundRecord) -> Any:
        self.calls += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.calls <= self.failures:
            future.set_exception(self.error)
        else:
            future.set_result(None)
        return future


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery_module, "RETRY_FIRST_SECONDS", 0.001)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (NotEnoughReplicasError(), "cluster"),
        (TopicAuthorizationFailedError(), "cluster"),
        (UnknownTopicOrPartitionError(), "cluster"),
        (MessageSizeTooLargeError(), "record"),
        (InvalidTimestampError(), "record"),
        (KafkaTimeoutError(), "retriable"),
    ],
)
def test_each_produce_error_has_its_kind_also_wrapped(error: BaseException, kind: str) -> None:
    wrapper = RuntimeError("ProducerSendError")
    wrapper.__cause__ = error
    assert kind_of(error) == kind
    assert kind_of(wrapper) == kind


@pytest.mark.parametrize("error", [NotEnoughReplicasError(), TopicAuthorizationFailedError()])
async def test_a_cluster_refusal_is_retried_named_and_never_dead_lettered(error: BaseException) -> None:
    send = FlakySend(error, failures=3)
    delivery = Delivery(send, lambda: False)
    failures = await delivery.deliver([_record("orders-out")])
    assert failures == []  # not the record's fault: nothing dead-lettered
    assert send.calls == 4
    # Delivered at last: the problem of that topic is over.
    assert delivery.problems.current() == []


async def test_while_a_cluster_refusal_lasts_it_is_named_by_topic_and_error() -> None:
    problems = Problems()
    send = FlakySend(NotEnoughReplicasError(), failures=10**6)
    delivery = Delivery(send, lambda: send.calls >= 3, problems)
    with pytest.raises(asyncio.CancelledError):
        await delivery.deliver([_record("orders-out")])
    [problem] = problems.blocking()
    assert (problem.topic, problem.error, problem.kind) == ("orders-out", "NotEnoughReplicasError", "cluster")
    assert delivery.ok is False


@pytest.mark.parametrize("error", [MessageSizeTooLargeError(), InvalidTimestampError()])
async def test_a_record_the_broker_can_never_take_is_returned_for_its_dead_letter(
    error: BaseException,
) -> None:
    delivery = Delivery(FlakySend(error, failures=1), lambda: False)
    [failure] = await delivery.deliver([_record()])
    assert failure.error is error


def test_the_producers_own_retry_log_names_the_refusal_before_the_send_fails() -> None:
    problems = Problems()
    watch = ProducerErrorWatch(problems)
    line = logging.LogRecord(
        "aiokafka.producer.sender",
        logging.WARNING,
        __file__,
        1,
        "Got error produce response on topic-partition %s, retrying. Error: %s",
        (TopicPartition("t.orders-changelog", 2), NotEnoughReplicasError),
        None,
    )
    assert watch.filter(line) is True  # the line itself still goes to the log
    [problem] = problems.current()
    assert (problem.topic, problem.error, problem.kind) == (
        "t.orders-changelog",
        "NotEnoughReplicasError",
        "cluster",
    )


# -- message time on internal records ------------------------------------------------------------------


def _message(timestamp: float | None, headers: list[tuple[str, bytes]]) -> Any:
    return SimpleNamespace(
        topic="oms-postsales.inbound",
        partition=1,
        offset=7,
        key=b"ST1:1",
        value=b"{}",
        headers=headers,
        timestamp=timestamp,
    )


def test_a_forwarded_record_carries_its_message_time_and_is_stamped_when_written() -> None:
    sent = datetime.now(UTC) - timedelta(days=60)
    upstream = InboundRecord("magento.x", b"{}", None, {"message_id": "m"}, 3, 9, sent)
    out = forwarded(upstream, "ST1:1", "oms-postsales.inbound", 4)
    # No timestamp of its own: the producer stamps it now, so the internal topic's time retention
    # counts from the forwarding, not from 60 days ago.
    assert out.timestamp_ms is None
    assert out.headers[TIME_HEADER] == str(round(sent.timestamp() * 1000))
    # Read back, whatever timestamp the broker gave the record (LogAppendTime: now).
    headers = [(name, value.encode()) for name, value in out.headers.items()]
    back = origin(_message(datetime.now(UTC).timestamp(), headers))
    assert back.timestamp is not None and abs(back.timestamp - sent) < timedelta(milliseconds=1)
    assert (back.topic, back.partition, back.offset, back.key) == ("magento.x", 3, 9, None)
    assert TIME_HEADER not in back.headers


def test_a_record_without_a_time_stays_without_one_across_the_internal_topic() -> None:
    upstream = InboundRecord("magento.x", b"{}", "k", {}, 0, 0, None)
    out = forwarded(upstream, "ST1:1", "oms-postsales.inbound", 4)
    assert out.headers[TIME_HEADER] == NO_TIME
    headers = [(name, value.encode()) for name, value in out.headers.items()]
    assert origin(_message(datetime.now(UTC).timestamp(), headers)).timestamp is None


def test_a_record_forwarded_by_an_older_version_keeps_its_own_timestamp() -> None:
    assert origin(_message(1_700_000_000.5, [])).timestamp == datetime.fromtimestamp(1_700_000_000.5, UTC)


def test_a_timestamp_of_minus_one_is_no_time_not_1969() -> None:
    # Kafka's "no timestamp" is -1 ms; faust hands on seconds (-0.001).
    assert _timestamp(SimpleNamespace(timestamp=-0.001)) is None
    assert _record_timestamp(SimpleNamespace(timestamp=-1, headers=[])) is None
    assert _record_timestamp(SimpleNamespace(timestamp=5, headers=[(TIME_HEADER, b"3")])) == 3
    assert _record_timestamp(SimpleNamespace(timestamp=5, headers=[(TIME_HEADER, b"none")])) is None


def test_movements_and_their_batch_time_travel_in_the_header() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    assert movement_records([], "m", 4, at) == []
    from domain.outcome import Movement

    [record] = movement_records([Movement("id", "SRC", "SKU", "reserve", "2026-01-02T00:00:00Z")], "m", 4, at)
    assert record.headers[TIME_HEADER] == str(round(at.timestamp() * 1000)) and record.timestamp_ms is None


def test_a_timed_movement_is_written_as_the_version_before_wrote_it_and_an_untimed_one_says_so() -> None:
    from domain.outcome import Movement

    timed = Movement("id", "SRC", "SKU", "SHIPMENT", "2026-01-02T00:00:00Z", on_hand_delta=-1, timed=True)
    # As the previous version wrote it to the movements topic, and reads it during a rolling upgrade.
    older = (
        b'[{"movement_id":"id","source_id":"SRC","sku":"SKU","reason":"SHIPMENT",'
        b'"created_on":"2026-01-02T00:00:00Z","on_hand_delta":-1,"reserved_delta":0,"set_on_hand":null,'
        b'"origin":null,"origin_offset":0,"origin_index":0}]'
    )
    [record] = movement_records([timed], "m", 4)
    assert record.value == older
    assert read_movements(older) == [timed]
    untimed = replace(timed, timed=False)
    [record] = movement_records([untimed], "m", 4)
    assert b'"timed":false' in record.value
    assert read_movements(record.value) == [untimed]


# -- a RocksDB folder older than the changelog's delete.retention.ms -------------------------------------


def test_a_folder_last_written_within_delete_retention_is_served() -> None:
    now = 10 * DAY_MS
    fresh = Mark.parse(mark_bytes(41, b"k", b"v", now_ms=now - DAY_MS // 2))
    assert stale_reason(fresh, end=100, delete_retention_ms=DAY_MS, now_ms=now) is None


def test_a_folder_older_than_delete_retention_with_records_after_it_is_rebuilt() -> None:
    now = 10 * DAY_MS
    old = Mark.parse(mark_bytes(41, b"k", b"v", now_ms=now - DAY_MS + 60_000))  # inside the margin
    reason = stale_reason(old, end=100, delete_retention_ms=DAY_MS, now_ms=now)
    assert reason is not None and "delete.retention.ms" in reason
    # A longer delete.retention.ms on the changelog keeps the same folder valid.
    assert stale_reason(old, end=100, delete_retention_ms=7 * DAY_MS, now_ms=now) is None


def test_an_old_folder_whose_mark_is_the_changelogs_last_record_saw_everything() -> None:
    now = 100 * DAY_MS
    old = Mark.parse(mark_bytes(99, b"k", None, now_ms=0))
    assert stale_reason(old, end=100, delete_retention_ms=DAY_MS, now_ms=now) is None


def test_a_mark_of_an_earlier_version_has_no_time_and_is_rebuilt_once_the_changelog_moved_on() -> None:
    earlier = Mark.parse(b"41 abcdef")
    assert earlier.written_ms is None and earlier.fingerprint == "abcdef"
    assert stale_reason(earlier, end=42, delete_retention_ms=DAY_MS, now_ms=0) is None
    assert stale_reason(earlier, end=43, delete_retention_ms=DAY_MS, now_ms=0) is not None


# -- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "read"),
    [("auto", "auto"), ("true", "true"), ("1", "true"), ("false", "false"), ("off", "false")],
)
def test_idempotence_setting_words(given: str, read: str) -> None:
    assert Settings(enable_idempotence=given).enable_idempotence == read


def test_idempotence_setting_refuses_other_words() -> None:
    with pytest.raises(ValueError, match="enable_idempotence"):
        Settings(enable_idempotence="maybe")


def test_the_worker_creates_nothing_in_pre_created_mode() -> None:
    from workers.config.rules_file import load_rules
    from workers.kafka.app import build_app

    app, _runtime = build_app(Settings(create_topics=False, store="memory://"), load_rules(None))
    assert app.conf.topic_allow_declare is False
    assert app.conf.producer_max_request_size == Settings().producer_max_request_bytes


# -- one size limit: an order that would not fit one record -------------------------------------------


def _through(pipeline: Any, name: str, params: dict[str, Any], message_id: str) -> Any:
    from workers.engine.codec import dumps

    envelope = {"jsonrpc": "2.0", "id": message_id, "method": name, "params": params}
    record = InboundRecord(name, dumps(envelope).encode(), None, {}, 0, 0, datetime(2026, 11, 2, tzinfo=UTC))
    processed = pipeline.process(record)
    pipeline.store(processed)
    return processed


def test_a_message_that_would_grow_an_order_past_one_record_is_refused_and_the_order_kept() -> None:
    from domain import names
    from domain.rules import RuleBook
    from tests.unit.harness import line, order, shipment
    from workers.engine.codec import loads
    from workers.engine.pipeline import ORDER_VALUES, Pipeline

    lines = [line(n, f"SKU{n}", "10.00") for n in range(1, 41)]
    probe = Pipeline(RuleBook())
    _through(probe, names.ORDER_CREATE, order("9", lines), "create")
    created = len(ORDER_VALUES.encode(probe.stores.orders["OCTO:9"]))
    # Room for the order as created, not for the same order after its shipment.
    pipeline = Pipeline(RuleBook(), max_record_bytes=created + 16)
    assert _through(pipeline, names.ORDER_CREATE, order("9", lines), "create").status == "applied"
    before = ORDER_VALUES.encode(pipeline.stores.orders["OCTO:9"])
    shipped = _through(pipeline, names.SHIPMENT_DONE, shipment("9", [(n, 1) for n in range(1, 41)]), "ship")
    assert shipped.status == "rejected" and shipped.detail == "ORDER_TOO_LARGE"
    [event] = [loads(r.value) for r in shipped.records]
    assert event["params"]["code"] == "ORDER_TOO_LARGE" and str(created + 16) in event["params"]["message"]
    assert ORDER_VALUES.encode(pipeline.stores.orders["OCTO:9"]) == before
    assert shipped.movements == []
    # The same message under the default limit is applied: the limit, not the message, refused it.
    assert _through(
        probe, names.SHIPMENT_DONE, shipment("9", [(n, 1) for n in range(1, 41)]), "ship"
    ).status == ("applied")


# -- settle ticks during a backlog ----------------------------------------------------------------------


class _Consumer:
    def __init__(self, highwater: dict[Any, int], read: dict[Any, int]) -> None:
        self._highwater, self._read_offset, self._committed_offset = highwater, read, {}

    def highwater(self, tp: Any) -> int | None:
        return self._highwater.get(tp)

    def assignment(self) -> set[Any]:
        return set(self._highwater)


def _runtime(consumer: _Consumer, handled: int, latest: datetime) -> Any:
    return SimpleNamespace(
        app=SimpleNamespace(consumer=consumer),
        inbound_topic="oms-postsales.inbound",
        upstream_topics=frozenset({"magento.sales.order_management.create"}),
        handled={0: handled},
        stream_time={0: latest},
    )


def test_a_tick_settles_by_message_time_while_records_wait_and_by_the_clock_once_caught_up() -> None:
    from faust.types import TP

    from workers.kafka.app import Runtime

    now, latest = datetime.now(UTC), datetime.now(UTC) - timedelta(days=60)
    inbound, upstream = TP("oms-postsales.inbound", 0), TP("magento.sales.order_management.create", 3)
    # The order partition has records on the broker it has not handled: a backfill's message time.
    behind = _runtime(_Consumer({inbound: 10, upstream: 5}, {upstream: 4}), handled=6, latest=latest)
    assert Runtime._settle_time(behind, 0, now) == latest
    # Every inbound record handled, but the intake has upstream records still to forward.
    forwarding = _runtime(_Consumer({inbound: 7, upstream: 9}, {upstream: 4}), handled=6, latest=latest)
    assert Runtime._settle_time(forwarding, 0, now) == latest
    # Caught up everywhere: the clock, as for a live order that gets no further message.
    caught_up = _runtime(_Consumer({inbound: 7, upstream: 5}, {upstream: 4}), handled=6, latest=latest)
    assert Runtime._settle_time(caught_up, 0, now) == now


def test_ready_names_the_topic_and_error_a_cluster_refuses_at_once() -> None:
    import time

    from workers.kafka.app import Runtime

    delivery = Delivery(FlakySend(NotEnoughReplicasError(), 0), lambda: False)
    runtime = SimpleNamespace(
        app=SimpleNamespace(
            consumer=SimpleNamespace(assignment=lambda: {("t", 0)}),
            tables=SimpleNamespace(recovery=SimpleNamespace(completed=SimpleNamespace(is_set=lambda: True))),
            rebalancing=False,
        ),
        delivery=delivery,
        settings=Settings(),
        broker_ok=True,
        broker_checked=time.monotonic(),
    )
    assert Runtime.ready(runtime)[0] is True
    # A send pending for a moment (well under OMS_READY_MAX_DELIVERY_SECONDS) while the producer
    # retries NOT_ENOUGH_REPLICAS on one of the changelogs.
    delivery.pending_since = time.monotonic()
    delivery.problems.note("oms-orders-changelog", "NotEnoughReplicasError")
    ok, checks = Runtime.ready(runtime)
    assert ok is False and checks["delivering"] is False
    assert checks["produce_errors"] == [
        {
            "topic": "oms-orders-changelog",
            "error": "NotEnoughReplicasError",
            "kind": "cluster",
            "for_seconds": 0.0,
        }
    ]
    # A retriable error alone does not make it unready before the delivery has waited too long.
    delivery.problems.clear()
    delivery.problems.note("out", "RequestTimedOutError")
    assert Runtime.ready(runtime)[0] is True
    # Table writes the cluster refuses (the batch is handled again until they get through).
    delivery.pending_since = None
    delivery.failed_write("oms-orders-changelog", TopicAuthorizationFailedError())
    ok, checks = Runtime.ready(runtime)
    assert ok is False and {
        "topic": "oms-orders-changelog",
        "error": "TopicAuthorizationFailedError",
    }.items() <= (checks["produce_errors"][0].items())


def test_the_producer_is_idempotent_exactly_when_the_app_says_so() -> None:
    from workers.config.rules_file import load_rules
    from workers.kafka.app import build_app

    for granted in (True, False):
        app, _runtime = build_app(Settings(store="memory://"), load_rules(None), idempotent=granted)
        extra = app.producer._settings_extra()
        assert extra.get("enable_idempotence", False) is granted
        if granted:
            assert extra["acks"] == "all"


async def test_the_readiness_probe_asks_one_broker_about_the_inbound_topic_only() -> None:
    from aiokafka.protocol.metadata import MetadataRequest

    from workers.kafka.app import Runtime

    sent: list[tuple[Any, Any]] = []

    class Client:
        def get_random_node(self) -> int:
            return 7

        async def send(self, node: int, request: Any) -> None:
            sent.append((node, request))

    runtime = SimpleNamespace(
        app=SimpleNamespace(producer=SimpleNamespace(_producer=SimpleNamespace(client=Client()))),
        inbound_topic="p.oms-postsales.inbound",
        settings=Settings(),
        broker_ok=False,
        broker_checked=0.0,
    )
    await Runtime.probe_broker(runtime)
    [(node, request)] = sent
    assert node == 7 and isinstance(request, MetadataRequest)
    assert request._topics == ["p.oms-postsales.inbound"]
    assert request._allow_auto_topic_creation is False
    assert runtime.broker_ok is True
