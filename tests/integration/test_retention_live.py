"""Retention on Kafka: a history of 45 days in message time, with a retention of 10, through the live
worker. It emits what replay emits, sweeps on message time what replay sweeps (tombstones on the orders
changelog), and a worker that restores from the changelogs afterwards keeps the same orders, on both
table stores."""

from __future__ import annotations

import asyncio
import io
import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain import names
from domain.rules import parse_rules
from domain.timeutil import iso
from testkit.live import isolated, normalised
from tests.unit.harness import appeasement, line, order, shipment
from workers.engine.codec import InboundRecord, dumps
from workers.engine.stores import Stores
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess, collect, publish
from workers.ops import lookup
from workers.replay.runner import replay

START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
RULES = """\
[defaults]
retain_days = 10
unknown_order_hold_minutes = 60
"""


def _message(
    name: str, params: dict[str, Any], message_id: str, moment: datetime
) -> tuple[str, Any, datetime]:
    return name, {"jsonrpc": "2.0", "id": message_id, "method": name, "params": params}, moment


def history() -> list[tuple[str, Any, datetime]]:
    """30 orders created a day apart and shipped the next day; a late appeasement for the first (its
    retention ended: held, then refused UNKNOWN_ORDER) and a re-sent old create of the second
    (archived); a last order at day 45 moves message time on."""
    messages = []
    for number in range(30):
        created = START + timedelta(days=number)
        params = order(f"K{number}", [line(1, f"SKU-K{number}", "10")], store="RET", origin_date=iso(created))
        messages.append(_message(names.ORDER_CREATE, params, f"K{number}-c", created))
        shipped = shipment(f"K{number}", [(1, 1)], store="RET")
        messages.append(_message(names.SHIPMENT_DONE, shipped, f"K{number}-s", created + timedelta(days=1)))
    appease = appeasement("K0", [(1, "1.00")], store="RET")
    messages.append(_message(names.APPEASEMENT_CREATE, appease, "K0-a", START + timedelta(days=40)))
    old = order("K1", [line(1, "SKU-K1", "10")], store="RET", origin_date=iso(START + timedelta(days=1)))
    messages.append(_message(names.ORDER_CREATE, old, "K1-again", START + timedelta(days=41)))
    last = order("K99", [line(1, "SKU-K99", "10")], store="RET", origin_date=iso(START + timedelta(days=45)))
    messages.append(_message(names.ORDER_CREATE, last, "K99-c", START + timedelta(days=45)))
    return sorted(messages, key=lambda m: m[2])


def replayed(partitions: int) -> tuple[list[dict[str, Any]], Stores]:
    lines = [
        json.dumps({"topic": name, "timestamp": int(moment.timestamp() * 1000), "value": value})
        for name, value, moment in history()
    ]
    out, stores = io.StringIO(), Stores()
    replay(iter(lines), out, parse_rules(tomllib.loads(RULES)), stores=stores, partitions=partitions)
    return [json.loads(text) for text in out.getvalue().splitlines()], stores


@pytest.mark.slow
@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_the_worker_sweeps_what_replay_sweeps_and_a_restored_worker_keeps_the_same_orders(
    broker: LocalBroker, tmp_path: Path, store: str
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    env, settings = isolated(broker.bootstrap, tmp_path, rules, "k", OMS_STORE=store)
    expected, state = replayed(settings.partitions)
    kept = set(state.orders)
    swept = {f"RET:K{n}" for n in range(30)} - kept
    # The history does purge, and keeps the refused appeasement's order (its stub) and the last one.
    assert len(swept) >= 20 and {"RET:K0", "RET:K99"} <= kept
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        records = [
            InboundRecord(settings.topic_for(name), dumps(value).encode(), None, {}, 0, 0, moment)
            for name, value, moment in history()
        ]
        before = worker.handled()
        asyncio.run(publish(settings, records, lambda n: worker.wait_handled(before + n, 60.0)))
        outputs = [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]
        found = asyncio.run(collect(settings, outputs, len(expected), timeout=60.0))
        prefixed = [
            {
                **r,
                "topic": settings.dlq_topic
                if r["topic"] == names.DEFAULT_DLQ_TOPIC
                else settings.topic_prefix + r["topic"],
            }
            for r in expected
        ]
        assert normalised(found.records, settings.dlq_topic) == normalised(prefixed, settings.dlq_topic)
        # The orders changelog, last record per key (a tombstone deletes): what replay keeps.
        assert set(lookup.latest_states(settings)) == kept
        # `orders show` says when an order left state: the time of the tombstone that ends it.
        gone = min(swept, key=lambda key: int(key.split("K")[1]))
        when = lookup.archived_at(settings, gone)
        assert when is not None and when > START
        assert lookup.archived_at(settings, "RET:K99") is None
    finally:
        worker.stop()
    # A fresh worker (new data folder) restores the same orders from the changelogs.
    fresh = {**env, "OMS_DATA_DIR": str(tmp_path / "fresh-data")}
    again = WorkerProcess(fresh, tmp_path / "worker-again.log").start()
    try:
        again.wait_ready()
        base = f"http://127.0.0.1:{fresh['OMS_WEB_PORT']}"
        for key in sorted(kept):
            assert lookup.from_api(base, key, None) is not None, key
        for key in sorted(swept):
            assert lookup.from_api(base, key, None) is None, key
    finally:
        again.stop()
