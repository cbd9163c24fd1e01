"""The local broker, the topic catalogue and a plain aiokafka round trip against it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from domain import names
from workers.config.settings import Settings
from workers.kafka.topics import (
    INBOUND_TOPIC,
    STOCK_MOVEMENTS_TOPIC,
    TABLES,
    TICKS_TOPIC,
    TopicError,
    TopicSpec,
    catalogue,
    changelog_topic,
    check_copartitioning,
    copartitioned_topics,
    create_topics,
    describe_partitions,
    leader_topic,
)
from workers.local.broker import HOST, BrokerError, LocalBroker, pid_exists, probe

MakeSettings = Callable[..., Settings]


async def test_broker_answers_kafka_requests(broker: LocalBroker, make_settings: MakeSettings) -> None:
    assert broker.is_running()
    probe(HOST, broker.port)
    admin = AIOKafkaAdminClient(**make_settings().kafka_client_kwargs())
    await admin.start()
    try:
        assert isinstance(await admin.list_topics(), list)
    finally:
        await admin.close()


async def test_create_topics_creates_the_catalogue_and_is_idempotent(make_settings: MakeSettings) -> None:
    # Counts other than Tansu's auto-create default of 4, so auto-created topics would show.
    settings = make_settings(partitions=3, internal_partitions=2)
    specs = catalogue(settings)
    wanted = {spec.name: spec.partitions for spec in specs}
    # + the re-keyed inbound topic, stock movements, settle ticks, the DLQ, one compacted changelog
    # per faust table, faust's leader topic and the rules topic.
    assert len(wanted) == len(names.INBOUND) + len(names.OUTBOUND) + 4 + len(TABLES) + 2
    assert wanted[leader_topic(settings)] == 1
    assert wanted[settings.topic_prefix + INBOUND_TOPIC] == 3
    assert wanted[settings.topic_prefix + STOCK_MOVEMENTS_TOPIC] == 2
    assert wanted[settings.topic_prefix + TICKS_TOPIC] == 3
    assert wanted[settings.dlq_topic] == 3
    assert (
        wanted[changelog_topic(settings, "orders")] == 3 and wanted[changelog_topic(settings, "stock")] == 2
    )
    assert all(
        spec.config["cleanup.policy"] == "compact" for spec in specs if spec.name.endswith("-changelog")
    )

    first = await create_topics(settings, specs)
    assert sorted(first.created) == sorted(wanted)
    assert first.existed == ()
    assert await describe_partitions(settings, wanted) == wanted

    second = await create_topics(settings, specs)
    assert second.created == ()
    assert sorted(second.existed) == sorted(wanted)
    assert await describe_partitions(settings, wanted) == wanted


async def test_describe_partitions_does_not_auto_create(make_settings: MakeSettings) -> None:
    settings = make_settings()
    ghost = settings.topic_for(names.ORDER_CREATE)
    assert await describe_partitions(settings, [ghost]) == {}
    assert await describe_partitions(settings, [ghost]) == {}


async def test_produce_consume_round_trip_with_key_and_headers(make_settings: MakeSettings) -> None:
    settings = make_settings()
    topic = settings.topic_for(names.ORDER_CREATE)
    await create_topics(settings, [TopicSpec(topic, settings.partitions, 1)])
    headers = [("message-name", names.ORDER_CREATE.encode()), ("empty", b"")]

    producer = AIOKafkaProducer(**settings.kafka_client_kwargs(), acks="all", enable_idempotence=False)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b'{"order":{}}', key=b"web:1001", headers=headers)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_client_kwargs(),
        group_id=settings.consumer_group + settings.topic_prefix,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=3000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    try:
        received: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            received = [record for records in batches.values() for record in records]
        assert len(received) == 1, "nothing consumed within 30 s"
        record = received[0]
        assert (record.key, record.value) == (b"web:1001", b'{"order":{}}')
        assert list(record.headers) == headers
        assert (record.partition, record.offset) == (sent.partition, sent.offset)

        tp = TopicPartition(topic, record.partition)
        await consumer.commit({tp: record.offset + 1})
        assert await consumer.committed(tp) == record.offset + 1
    finally:
        await consumer.stop()


async def test_copartitioning_mismatch_on_the_broker_is_named(make_settings: MakeSettings) -> None:
    settings = make_settings()
    # Upstream's topics may have any partition count: the intake reads them whatever it is.
    upstream = settings.topic_for(names.RETURN_RECEIVED)
    odd = settings.topic_prefix + INBOUND_TOPIC
    await create_topics(settings, [TopicSpec(upstream, 7, 1), TopicSpec(odd, settings.partitions + 2, 1)])

    with pytest.raises(TopicError, match=rf"{odd}: has 6 partitions \(wanted 4\)") as refused:
        await create_topics(settings, catalogue(settings))
    assert upstream not in str(refused.value)

    together = copartitioned_topics(settings)
    counts = await describe_partitions(settings, together)
    assert set(counts) == set(together)
    message = check_copartitioning(counts)
    assert message is not None
    assert f"6 partitions: {odd}" in message
    assert "4 partitions: " in message
    assert all(topic in message for topic in together)
    assert check_copartitioning({t: n for t, n in counts.items() if t != odd}) is None


def test_stop_ends_the_process(tmp_path: Path) -> None:
    local = LocalBroker(tmp_path)
    with local:
        pid = local.pid
        assert pid is not None and pid_exists(pid)
        probe(HOST, local.port)
    assert not pid_exists(pid)
    assert not local.is_running()
    assert local.stop() is None


def test_a_port_in_use_is_refused(broker: LocalBroker, tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="already in use"):
        LocalBroker(tmp_path, port=broker.port).start()


def test_tansu_exiting_zero_on_a_taken_port_is_an_error(tmp_path: Path) -> None:
    # Bound but not listening: the pre-check's connect is refused, so Tansu itself hits the busy
    # port, panics and exits with status 0.
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        local = LocalBroker(tmp_path, port=holder.getsockname()[1])
        with pytest.raises(BrokerError, match="exited with status 0") as info:
            local.start()
    assert "AddrInUse" in str(info.value)
    assert not local.is_running()


async def test_pause_and_resume(broker: LocalBroker) -> None:
    broker.pause()
    try:
        with pytest.raises(OSError):
            await asyncio.to_thread(probe, HOST, broker.port, 0.5)
    finally:
        broker.resume()
    probe(HOST, broker.port)


def test_topics_list_warns_about_a_topic_named_like_a_message_that_no_message_maps_to(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    misspelt = settings.topic_prefix + "magento.sales.order_management.creat"
    other_team = "x" + settings.topic_prefix + "magento.sales.order_management.creat"
    wanted = catalogue(settings)
    asyncio.run(create_topics(settings, [*wanted, TopicSpec(misspelt, 1, 1), TopicSpec(other_team, 1, 1)]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    env.update(
        {"OMS_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "OMS_TOPIC_PREFIX": settings.topic_prefix}
    )
    env["OMS_CONSUMER_GROUP"] = settings.consumer_group
    done = subprocess.run(
        [str(Path(sys.executable).parent / "oms-postsales"), "topics", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and f"topic {misspelt} " in warnings[0], done.stderr
    assert "missing" not in done.stdout and settings.topic_for(names.ORDER_CREATE) in done.stdout
