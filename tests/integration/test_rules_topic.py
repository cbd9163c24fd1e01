"""A running worker under traffic gets a new version of one channel's rules on the rules topic: messages
dated before its effective_from are decided by the old version, those after by the new one, with no
restart; every decision names its version; a bad rules record is dead-lettered and changes nothing;
and the same log (rules records included) through `replay` gives the same outputs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from domain import names
from testkit.live import isolated, normalised
from workers.config.rules_file import load_rules
from workers.config.settings import Settings
from workers.engine.codec import InboundRecord, dumps, loads
from workers.engine.pipeline import Pipeline
from workers.kafka.topics import rules_topic
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess, collect, keyed, publish
from workers.replay.runner import read_records, replay

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"
CLI = str(Path(sys.executable).parent / "oms-postsales")
# The example log up to ST1:12135's reshipment, then from its return request (which brings the
# shipping line along under shipping_refund_rule) on.
SPLIT = 12


def _metric(worker: WorkerProcess, name: str, label: str) -> float | None:
    with worker._open("/metrics") as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f'{name}{{sales_channel="{label}"}}'):
                return float(line.rsplit(" ", 1)[1])
    return None


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def _wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def _write_raw(settings: Settings, key: str, value: bytes, timestamp_ms: int) -> None:
    """Another tool writing the rules topic (no check of its own)."""
    producer = AIOKafkaProducer(**settings.kafka_client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(
            rules_topic(settings), value, key=key.encode(), timestamp_ms=timestamp_ms
        )
    finally:
        await producer.stop()


def _line(record: dict[str, Any] | InboundRecord) -> str:
    if isinstance(record, InboundRecord):
        stamp = int(record.timestamp.timestamp() * 1000) if record.timestamp else None
        return dumps(
            {"topic": record.topic, "key": record.key, "timestamp": stamp, "value": record.value.decode()}
        )
    return dumps(record)


def test_a_new_version_decides_messages_from_its_effective_from_live_and_in_replay(
    broker: LocalBroker, tmp_path: Path
) -> None:
    env, settings = isolated(broker.bootstrap, tmp_path, RULES, "r", OMS_STORE="memory://")
    changed = tmp_path / "changed.toml"
    changed.write_text(
        RULES.read_text().replace('shipping_refund_rule = "onFirst"', 'shipping_refund_rule = "never"', 1)
    )
    # Message times one second apart from a whole second, in the near future: the new version takes
    # effect between the two halves, and is published before the first message dated after it.
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    with LOG.open() as lines:
        log = [
            InboundRecord(
                r.topic, r.value, r.key, r.headers, r.partition, r.offset, start + timedelta(seconds=i)
            )
            for i, r in enumerate(read_records(lines, str(LOG)))
        ]
    effective = start + timedelta(seconds=SPLIT - 0.5)
    pipeline = Pipeline(load_rules(RULES))
    inbound = [
        InboundRecord(
            settings.topic_prefix + r.topic, r.value, r.key, r.headers, r.partition, r.offset, r.timestamp
        )
        for r in keyed(log, pipeline)
    ]
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        pid = worker.process.pid if worker.process else None
        # The rules file went to the empty topic as version 1 of each key before the worker started.
        assert _metric(worker, "oms_rules_version", "ST1") == 1.0
        before = worker.handled()
        asyncio.run(publish(settings, inbound[:SPLIT], lambda n: worker.wait_handled(before + n)))
        published = subprocess.run(
            [
                CLI,
                "rules",
                "publish",
                str(changed),
                "--channel",
                "ST1",
                "--effective-from",
                effective.isoformat(),
                "--yes",
            ],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert published.returncode == 0, published.stderr
        assert 'shipping_refund_rule: "onFirst" -> "never"' in published.stdout
        assert "published ST1@2" in published.stdout
        history = _cli(env, "rules", "history", "--channel", "ST1")
        assert history.returncode == 0, history.stderr
        assert history.stdout.splitlines()[0].startswith("ST1@1  effective from 1970-01-01T00:00:00Z")
        assert history.stdout.splitlines()[1].startswith("ST1@2  effective from ")
        assert 'shipping_refund_rule: "onFirst" -> "never"' in history.stdout
        # Nothing new to publish now; and without --yes nothing is written.
        assert "no change" in _cli(env, "rules", "publish", str(changed), "--channel", "ST1").stdout
        refused = _cli(env, "rules", "publish", str(RULES), "--channel", "ST1")
        assert refused.returncode == 2 and "--yes" in refused.stderr and "ST1@3" in refused.stdout
        # Another tool writes a rule set the checks refuse (retention shorter than a return window).
        bad = json.loads(
            subprocess.run(
                [CLI, "rules", "show", "--channel", "OCTO"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )["OCTO"]
        bad_value = {
            "sales_channel": "OCTO",
            "version": 2,
            "effective_from": effective.isoformat(),
            "rules": {**bad["rules"], "retain_days": 5, "return_window_days": 30},
        }
        bad_ms = int((start + timedelta(seconds=SPLIT - 1)).timestamp() * 1000)
        asyncio.run(_write_raw(settings, "OCTO@2", dumps(bad_value).encode(), bad_ms))
        # A worker follows the topic: wait until it read the new version (the ordering caveat: a
        # message dated after effective_from handled before that would be decided by version 1).
        _wait_for(lambda: _metric(worker, "oms_rules_version", "ST1") == 2.0, "the worker to read ST1@2")
        handled = worker.handled()
        asyncio.run(publish(settings, inbound[SPLIT:], lambda n: worker.wait_handled(handled + n)))
        assert worker.process is not None and worker.process.poll() is None and worker.process.pid == pid
        outputs = [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]
        rules_records = asyncio.run(collect(settings, [rules_topic(settings)], 10**9, timeout=2.0)).records
    finally:
        worker.stop()
    # The same log through replay: the rules records where the worker read them.
    v1 = [r for r in rules_records if r["key"].endswith("@1")]
    later = [r for r in rules_records if not r["key"].endswith("@1")]
    assert sorted(r["key"] for r in v1) == ["*@1", "DOSHII@1", "OCTO@1", "OUTLET@1", "ST1@1"]
    assert [r["key"] for r in later] == ["ST1@2", "OCTO@2"]

    def as_line(r: dict[str, Any], timestamp: int | None = None, value: Any = None) -> str:
        text = r["value"] if value is None else value
        return dumps({"topic": "oms-postsales.rules", "key": r["key"], "timestamp": timestamp, "value": text})

    lines = (
        [as_line(r) for r in v1]
        + [_line(r) for r in log[:SPLIT]]
        + [as_line(later[0]), as_line(later[1], bad_ms, dumps(bad_value))]
        + [_line(r) for r in log[SPLIT:]]
    )
    out = io.StringIO()
    replay(iter(lines), out, load_rules(RULES), partitions=settings.partitions, settle_at_end=False)
    expected = [
        {
            **r,
            "topic": settings.dlq_topic
            if r["topic"] == names.DEFAULT_DLQ_TOPIC
            else settings.topic_prefix + r["topic"],
        }
        for r in (loads(line) for line in out.getvalue().splitlines())
    ]
    found = asyncio.run(collect(settings, outputs, len(expected), timeout=30.0)).records
    dlq = settings.dlq_topic
    assert normalised(found, dlq) == normalised(expected, dlq)

    # Decisions before effective_from name ST1@1, after it ST1@2, and shipping is refunded only before.
    def versions(name: str, key: str) -> list[str]:
        return [
            r["value"]["params"]["rules_version"]
            for r in found
            if r["topic"] == settings.topic_for(name) and r["key"] == key
        ]

    # ST1:12135's reshipment (its child order and closed return) came before; its return request after.
    assert versions(names.ORDER_CREATED, "ST1:12135") == ["ST1@1"]
    assert versions(names.RETURN_UPDATED, "ST1:12135")[:2] == ["ST1@1", "ST1@2"]
    assert versions(names.ORDER_CREATED, "ST1:12346") == ["ST1@2"]  # the exchange's child order
    notes = [
        (r["value"]["params"]["refund"], r["value"]["params"]["rules_version"])
        for r in found
        if r["topic"] == settings.topic_for(names.REFUND_UPDATED) and str(r["key"]).startswith("ST1:")
    ]
    assert notes and all(version == "ST1@2" for _, version in notes)
    # Without the shipping line: 37.40 where version 1 (onFirst) refunds 45.10 (tests/e2e/test_rules_cli.py).
    assert notes[0][0]["totals"]["cost_gross"] == "37.40"
    octo = [
        r["value"]["params"]["rules_version"]
        for r in found
        if r["topic"] == settings.topic_for(names.REFUND_UPDATED) and str(r["key"]).startswith("OCTO:")
    ]
    assert octo and set(octo) == {"OCTO@1"}  # the refused OCTO@2 changed nothing
    dead = [r for r in found if r["topic"] == dlq and r["key"] == "OCTO@2"]
    assert len(dead) == 1 and dead[0]["headers"]["dlq.error.class"] == "DomainValidation"
    assert dead[0]["headers"]["dlq.original.topic"] == rules_topic(settings)
