"""Two workers in one consumer group, restarted one at a time (SIGTERM) while traffic flows: nothing is
lost, every output is replay's, and anything seen twice is a redelivery (same id, same content)."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain import names
from testkit.live import isolated
from testkit.reading import read_ids
from workers.config.rules_file import load_rules
from workers.engine.codec import InboundRecord
from workers.engine.pipeline import Pipeline
from workers.local.broker import LocalBroker, free_port
from workers.local.dev import WorkerProcess, expected_outputs, keyed, publish, stamped

ORDERS = 60


def traffic(path: Path) -> None:
    """Creates and appeasements of distinct orders: their outputs do not depend on the order in which
    the two topics are read, so they can be published at full speed while workers restart. Each message
    has its own id: by contract a repeated id is a redelivery (an earlier version gave the create and
    the appeasement one id, and whichever was read first made the other a duplicate)."""
    lines = []
    for n in range(ORDERS):
        order_id = f"RR{n:04d}"
        order = {
            "order": {
                "id": order_id,
                "store": "ROLL",
                "ip": "203.0.113.5",
                "vat_country": "NL",
                "origin": "WEB",
                "origin_date": "2026-11-01T10:00:00Z",
                "customer": {"id": "c"},
                "addresses": [],
                "lines": [
                    {
                        "id": "L1",
                        "line_number": 1,
                        "product_type": "PHYSICAL",
                        "sku": f"S{n % 7}",
                        "shipping_address_reference": "A",
                        "payment_reference": "P",
                        "amount": {
                            "net_amount": 10,
                            "gross_amount": "12.10",
                            "tax_amount": "2.10",
                            "tax_rate": 21,
                            "taxes": [{"type": "VAT", "amount": "2.10", "rate": 21}],
                        },
                    }
                ],
            }
        }
        appease = {
            "appeasement": {
                "sales_channel_id": "ROLL",
                "order_id": order_id,
                "user": "u",
                "lines": [
                    {"line_number": 1, "amount": "1.21", "reason": "R", "reason_description": "rolling"}
                ],
            }
        }
        for kind, name, params in (
            ("order", names.ORDER_CREATE, order),
            ("appeasement", names.APPEASEMENT_CREATE, appease),
        ):
            value = {
                "jsonrpc": "2.0",
                "id": f"{order_id}-{kind}",
                "method": name,
                "params": params,
            }
            lines.append(json.dumps({"topic": name, "value": value}))
    path.write_text("\n".join(lines) + "\n")


def by_id(records: list[dict[str, Any]]) -> dict[tuple[str, str | None, str], Any]:
    """Every output once by (message, key, id). Stock adjustments of one SKU come from several order
    partitions, so their interleaving (and the levels after each) may differ from replay's total
    order: for them the change itself is compared here, and the final levels below."""
    found: dict[tuple[str, str | None, str], Any] = {}
    for record in records:
        name = record["topic"].split(".", 1)[1]
        value = record["value"]
        if name == names.STOCK_ADJUSTED:
            value = [(a["sku"], a["quantity"]) for a in value["params"]["adjustment"]["adjustments"]]
        key = (name, record["key"], record["headers"]["message_id"])
        assert found.setdefault(key, value) == value, f"{key} emitted twice, differently"
    return found


def final_stock(records: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """On hand and reserved after the last adjustment of each SKU (one partition per SKU: in order)."""
    levels: dict[str, tuple[int, int]] = {}
    for record in records:
        if record["topic"].endswith(names.STOCK_ADJUSTED):
            (item,) = record["value"]["params"]["adjustment"]["adjustments"]
            levels[record["key"]] = (item["on_hand"], item["reserved"])
    return levels


@pytest.mark.slow
def test_rolling_restart_under_load_loses_nothing(broker: LocalBroker, tmp_path: Path) -> None:
    log = tmp_path / "rolling.jsonl"
    traffic(log)
    env, settings = isolated(broker.bootstrap, tmp_path, None, "r")
    workers = [
        WorkerProcess(
            {**env, "OMS_WEB_PORT": str(free_port()), "OMS_DATA_DIR": str(tmp_path / f"data{i}")},
            tmp_path / f"worker{i}.log",
        ).start()
        for i in range(2)
    ]
    try:
        for worker in workers:
            worker.wait_ready(timeout=90)
        now = datetime.now(UTC)
        records = [
            InboundRecord(
                settings.topic_prefix + r.topic, r.value, r.key, r.headers, r.partition, r.offset, r.timestamp
            )
            for r in keyed(stamped(log, now), Pipeline(load_rules(None)))
        ]
        sender = threading.Thread(target=lambda: asyncio.run(publish(settings, records)), daemon=True)
        sender.start()
        for index in range(2):
            assert workers[index].stop() == 0
            workers[index] = WorkerProcess(workers[index].overrides, workers[index].log_path).start()
            workers[index].wait_ready(timeout=90)
        sender.join(timeout=120)
        assert not sender.is_alive(), "the traffic was not all published within 120 s"
        expected = expected_outputs(log, None, settings.partitions, now)
        outputs = [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]
        wanted = {(r["topic"], r["headers"]["message_id"]) for r in expected}
        # Redeliveries count too, so wait for every expected id rather than a number, then read to the
        # end offsets so that any extra copy shows.
        found = asyncio.run(
            read_ids(
                settings,
                outputs,
                wanted,
                lambda r: (r["topic"].split(".", 1)[1], r["headers"]["message_id"]),
                timeout=120,
            )
        )
    finally:
        for worker in workers:
            worker.stop()
    prefixed = [{**r, "topic": settings.topic_prefix + r["topic"]} for r in expected]
    assert by_id(found) == by_id(prefixed)
    redelivered = len(found) - len(expected)
    assert final_stock(sorted(found, key=lambda r: r["offset"])) == final_stock(prefixed), redelivered
