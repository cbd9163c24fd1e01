"""The live worker on a real broker process: every inbound message type through Kafka, outputs equal to
replay's, redelivery, dead letters, and a restart that resumes from committed offsets."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain import names
from domain.timeutil import parse_time
from testkit.live import isolated, normalised
from workers.config.settings import Settings
from workers.engine.codec import InboundRecord, dumps
from workers.kafka.topics import INBOUND_TOPIC, TopicSpec, create_topics
from workers.local.broker import LocalBroker, free_port
from workers.local.dev import WorkerProcess, local_env, publish, settings_from_env, through_kafka

ROOT = Path(__file__).resolve().parents[2]
from testkit.reading import read_all, read_until  # noqa: E402

LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"


Output = dict[str, Any]
Where = tuple[str, int, int]


def _where(record: Output) -> Where:
    return record["topic"], record["partition"], record["offset"]


@dataclass
class Live:
    settings: Settings
    env: dict[str, str]
    worker: WorkerProcess
    workdir: Path
    now: datetime
    rules: Path

    def outputs(self) -> list[str]:
        return [self.settings.topic_for(n) for n in names.OUTBOUND] + [self.settings.dlq_topic]

    def seen(self) -> set[Where]:
        """Where every output so far is: the output topics read up to their end offsets."""
        return {_where(r) for r in asyncio.run(read_all(self.settings, self.outputs()))}

    def new(self, seen: set[Where], count: int, tag: str, timeout: float = 45.0) -> list[Output]:
        """The outputs not in `seen` whose key holds `tag` (the test's own orders and SKUs), once `count`
        of them arrived and the topics are read to their end: more than `count` shows as more.

        Only the test's own: the tests share the worker, and another test's output may arrive at any
        time (a held record its settle tick refuses later), so counting every new output would fail
        for what another test did. `tag=""`: every output, for the first test on a fresh worker."""

        def mine(found: list[Output]) -> list[Output]:
            return [r for r in found if _where(r) not in seen and tag in (r["key"] or "")]

        records = asyncio.run(
            read_until(
                self.settings,
                self.outputs(),
                lambda found: len(mine(found)) >= count,
                timeout,
                lambda found: f"{len(mine(found))} of {count} new outputs with {tag} in their key",
            )
        )
        return mine(records)

    def mine(self, seen: set[Where], tag: str) -> list[Output]:
        """The outputs not in `seen` whose key holds `tag`, the topics read to their end now."""
        found = asyncio.run(read_all(self.settings, self.outputs()))
        return [r for r in found if _where(r) not in seen and tag in (r["key"] or "")]

    def restart(self) -> None:
        assert self.worker.stop() == 0, "SIGTERM must stop the worker cleanly (exit 0)"
        self.worker = WorkerProcess(self.env, self.workdir / "worker.log").start()
        self.worker.wait_ready()


@pytest.fixture(scope="module", params=["memory://", "rocksdb://"])
def live(
    broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Live]:
    """A worker per table store: memory (tests, dev) and RocksDB (production), whose tables are
    partitioned on disk, so a lookup outside the record's partition would show up here. The tests
    share it but not their data: each works on a sales channel, orders and SKUs of its own, so they
    pass in any order."""
    workdir = tmp_path_factory.mktemp("worker")
    rules = workdir / "rules.toml"
    # A channel that gives up on unknown orders at once, to see the settle ticks work; one that refunds
    # standalone after a hold, to see what date a settle tick gives.
    rules.write_text(
        RULES.read_text()
        + "\n[sales_channels.FAST]\nunknown_order_hold_minutes = 0\n"
        + '\n[sales_channels.POSLATE]\nunknown_order = "standalone"\nunknown_order_hold_minutes = 30\n'
    )
    env, settings = isolated(broker.bootstrap, workdir, rules, "w", OMS_STORE=request.param)
    live = Live(
        settings, env, WorkerProcess(env, workdir / "worker.log").start(), workdir, datetime.now(UTC), rules
    )
    try:
        live.worker.wait_ready()
        yield live
    finally:
        live.worker.stop()  # the worker of the moment: a test may have restarted it


def test_the_example_log_through_kafka_equals_replay(live: Live) -> None:
    seen = live.seen()
    _, expected = through_kafka(live.settings, live.worker, LOG, live.rules)
    found = live.new(seen, len(expected), "")
    assert len(found) == len(expected)
    # Per topic and key: the same records, in the same order, with the same ids, as replay.
    assert normalised(found, live.settings.dlq_topic) == normalised(expected, live.settings.dlq_topic)
    published = {json.loads(line)["topic"] for line in LOG.read_text().splitlines()}
    assert set(names.INBOUND) - {names.RESHIPMENT_CREATE} <= published


def _send(live: Live, message: str, params: dict[str, Any], message_id: str, key: str) -> None:
    value = dumps({"jsonrpc": "2.0", "id": message_id, "method": message, "params": params}).encode()
    record = InboundRecord(live.settings.topic_for(message), value, key, {}, 0, 0, live.now)
    asyncio.run(publish(live.settings, [record]))


def _own_order(live: Live) -> tuple[str, str]:
    """An order on a sales channel of its own (so its own credit note series), created and handled:
    (channel, order id), which share a tag (`_tag`) with the SKU. Its one physical line reserves a SKU
    of its own, whose adjustment shows the create was handled (Kafka keeps no order between the
    create's topic and the next message's)."""
    tag = uuid.uuid4().hex[:8]
    channel, order_id = f"IT{tag}", f"O{tag}"
    amount = {
        "net_amount": 10,
        "gross_amount": "12.10",
        "tax_amount": "2.10",
        "tax_rate": 21,
        "taxes": [{"type": "VAT", "amount": "2.10", "rate": 21}],
    }
    line = {
        "id": "L1",
        "line_number": 1,
        "product_type": "PHYSICAL",
        "sku": f"SKU-{tag}",
        "quantity": 1,
        "shipping_address_reference": "A",
        "payment_reference": "P",
        "amount": amount,
    }
    order = {
        "id": order_id,
        "store": channel,
        "ip": "203.0.113.5",
        "vat_country": "NL",
        "origin": "WEB",
        "origin_date": "2026-11-01T10:00:00Z",
        "customer": {"id": "c"},
        "addresses": [],
        "lines": [line],
    }
    seen = live.seen()
    _send(live, names.ORDER_CREATE, {"order": order}, f"{order_id}-create", f"{channel}:{order_id}")
    (reserved,) = live.new(seen, 1, tag)
    assert reserved["topic"] == live.settings.topic_for(names.STOCK_ADJUSTED)
    return channel, order_id


def _tag(order_id: str) -> str:
    """The tag of an order made by `_own_order`, in the keys of all its outputs and of its SKU's."""
    return order_id.removeprefix("O")


def _appeasement(channel: str, order_id: str, amount: str) -> dict[str, Any]:
    return {
        "appeasement": {
            "sales_channel_id": channel,
            "order_id": order_id,
            "user": "it",
            "lines": [
                {"line_number": 1, "amount": amount, "reason": "R", "reason_description": "integration"}
            ],
        }
    }


def test_redelivery_emits_nothing_and_bad_records_go_to_the_dlq(live: Live) -> None:
    channel, order_id = _own_order(live)
    key = f"{channel}:{order_id}"
    seen = live.seen()
    _send(live, names.APPEASEMENT_CREATE, _appeasement(channel, order_id, "1.00"), f"{key}-a1", key)
    _send(live, names.APPEASEMENT_CREATE, _appeasement(channel, order_id, "1.00"), f"{key}-a1", key)
    bad = InboundRecord(
        live.settings.topic_for(names.RETURN_AUTHORIZE),
        b"\xff\xfe{",
        key,
        {"trace": "t-1"},
        0,
        0,
        live.now,
    )
    asyncio.run(publish(live.settings, [bad]))
    _send(live, names.APPEASEMENT_CREATE, _appeasement(channel, order_id, "2.00"), f"{key}-a2", key)
    new = live.new(seen, 5, _tag(order_id))
    assert len(new) == 5, [r["topic"] for r in new]
    refunds = [
        r["value"]["params"]["refund"]["totals"]["cost_gross"]
        for r in sorted(new, key=lambda r: r["offset"])
        if r["topic"].endswith(names.REFUND_UPDATED)
    ]
    assert refunds == ["1.00", "2.00"]
    (dead,) = [r for r in new if r["topic"] == live.settings.dlq_topic]
    assert dead["headers"]["dlq.error.class"] == "InvalidUtf8" and dead["headers"]["trace"] == "t-1"
    assert dead["headers"]["dlq.original.topic"] == live.settings.topic_for(names.RETURN_AUTHORIZE)
    assert dead["key"] == key


def test_restart_resumes_from_committed_offsets_with_tables_intact(live: Live) -> None:
    channel, order_id = _own_order(live)
    key = f"{channel}:{order_id}"
    seen = live.seen()
    _send(live, names.APPEASEMENT_CREATE, _appeasement(channel, order_id, "1.00"), f"{key}-a1", key)
    tag = _tag(order_id)
    first = next(r for r in live.new(seen, 2, tag) if r["topic"].endswith(names.REFUND_UPDATED))
    seen = live.seen()
    handled = live.worker.handled()
    live.restart()
    # Nothing is re-processed after a clean stop …
    assert live.worker.handled() == 0 < handled and live.mine(seen, tag) == []
    # … and the order table survived: the ledger keeps the first refund, the series goes on.
    _send(live, names.APPEASEMENT_CREATE, _appeasement(channel, order_id, "0.50"), f"{key}-a2", key)
    found = live.new(seen, 2, tag)
    refund = next(r for r in found if r["topic"].endswith(names.REFUND_UPDATED))
    order = next(r for r in found if r["topic"].endswith(names.ORDER_UPDATED))
    ledger = order["value"]["params"]["order"]["postsales"]["transactions"]
    assert refund["value"]["params"]["refund"]["totals"]["cost_gross"] == "0.50"
    assert [t["amount"] for t in ledger if t["type"] == "REFUND"] == ["-1.00", "-0.50"]
    numbers = [r["value"]["params"]["refund"]["credit_note_number"] for r in (first, refund)]
    assert numbers[0].endswith("-000001") and numbers[1] == numbers[0][:-6] + "000002", numbers


def test_a_message_for_an_order_that_never_comes_is_refused_by_the_settle_tick(live: Live) -> None:
    seen = live.seen()
    order_id = f"never-{uuid.uuid4().hex[:8]}"
    params = {
        "return": {
            "sales_channel_id": "FAST",
            "order_id": order_id,
            "lines": [{"id": "L1", "line_number": 1, "sku": "x", "reason": "R", "reason_description": "d"}],
        }
    }
    _send(live, names.RETURN_AUTHORIZE, params, f"it-{order_id}", f"FAST:{order_id}")
    (refused,) = live.new(seen, 1, order_id, timeout=60)
    assert refused["topic"].endswith(names.ERROR_NOTIFY)
    assert refused["value"]["params"]["code"] == "UNKNOWN_ORDER" and refused["key"] == f"FAST:{order_id}"


def test_a_standalone_refund_settled_by_a_tick_is_dated_at_its_deadline_as_in_replay(live: Live) -> None:
    # Sent as if 31 minutes ago: its 30-minute hold is over, and the next settle tick (seconds later,
    # on the worker's clock) settles it. Replay dates it at its deadline; the worker must too.
    seen = live.seen()
    order_id = f"pos-{uuid.uuid4().hex[:8]}"
    arrived = datetime.now(UTC).replace(microsecond=123000) - timedelta(minutes=31)
    params = _appeasement("POSLATE", order_id, "17.00")
    value = dumps(
        {"jsonrpc": "2.0", "id": f"it-{order_id}", "method": names.APPEASEMENT_CREATE, "params": params}
    )
    topic = live.settings.topic_for(names.APPEASEMENT_CREATE)
    record = InboundRecord(topic, value.encode(), f"POSLATE:{order_id}", {}, 0, 0, arrived)
    asyncio.run(publish(live.settings, [record]))
    (found,) = live.new(seen, 1, order_id, timeout=60)
    assert found["topic"].endswith(names.REFUND_UPDATED)
    note = found["value"]["params"]["refund"]
    assert note["standalone"] is True and note["order_id"] == order_id
    assert parse_time(note["status"]["date"]) == arrived + timedelta(minutes=30)


def test_health_ready_and_metrics(live: Live) -> None:
    _own_order(live)  # a record handled, so the per-record metrics exist
    status, body = live.worker.get("/health")
    assert status == 200 and body["status"] == "ok"
    status, body = live.worker.get("/ready")
    assert status == 200 and body["ready"] is True and body["partitions_assigned"] > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{live.worker.web_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "oms_records_total{" in text and "oms_processing_seconds_bucket{" in text
    assert live.worker.handled() > 0


def test_worker_refuses_its_copartitioned_topics_with_different_partition_counts(
    broker: LocalBroker, tmp_path: Path
) -> None:
    env = local_env(broker.bootstrap, tmp_path, None, free_port())
    env.update(
        {"OMS_TOPIC_PREFIX": f"m{uuid.uuid4().hex[:8]}.", "OMS_CONSUMER_GROUP": f"oms-{uuid.uuid4().hex}"}
    )
    settings = settings_from_env(env)
    # Upstream topics may have any partition count; the worker's own re-keyed topic may not.
    upstream = settings.topic_for(names.RETURN_RECEIVED)
    odd = settings.topic_prefix + INBOUND_TOPIC
    asyncio.run(create_topics(settings, [TopicSpec(odd, 2, 1), TopicSpec(upstream, 3, 1)]))
    done = subprocess.run(
        [sys.executable, "-m", "workers", "worker"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert odd in done.stderr and "2" in done.stderr
    assert upstream not in done.stderr
