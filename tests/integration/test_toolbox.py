"""The operator's toolbox against a live worker on a real broker: the web doors, order lookup (API and
changelog), refund preview, dead letter → fix → redrive (applied once, even when redriven twice), and
the refund report."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from domain import names
from testkit.live import isolated
from testkit.pii import leaks
from workers.config.settings import Settings
from workers.engine.codec import InboundRecord, dumps, loads
from workers.engine.pipeline import partition_for
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess, collect, publish

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"
TOKEN = "it-token-4f1c-0123456789abcdef"


@dataclass
class Worker:
    settings: Settings
    env: dict[str, str]
    process: WorkerProcess
    workdir: Path

    def outputs(self) -> list[str]:
        return [self.settings.topic_for(n) for n in names.OUTBOUND] + [self.settings.dlq_topic]

    def read(self, expected: int = 10**9, timeout: float = 2.0) -> list[dict[str, Any]]:
        return asyncio.run(collect(self.settings, self.outputs(), expected, timeout)).records

    def http(
        self, path: str, token: str | None = TOKEN, body: bytes | None = None, port: int | None = None
    ) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{port or self.process.web_port}{path}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env}
        done = subprocess.run(
            [sys.executable, "-m", "workers", *args], env=env, capture_output=True, text=True, timeout=120
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def on_tty(self, *args: str) -> str:
        """What a verb prints on a terminal (stdout and stderr on one pseudo-terminal)."""
        leader, follower = pty.openpty()
        with subprocess.Popen(
            [sys.executable, "-m", "workers", *args],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
        ) as process:
            os.close(follower)
            chunks = []
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the terminal closed with the process
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            assert process.wait(60) == 0
        os.close(leader)
        return b"".join(chunks).decode("utf-8", "replace")


def example(number: int, order_id: str) -> dict[str, Any]:
    """Line `number` (from 1) of the example log, for another order of the same shape."""
    text = LOG.read_text().splitlines()[number - 1]
    item: dict[str, Any] = loads(
        text.replace('"1234"', f'"{order_id}"').replace("octo-1234-", f"o{order_id}-")
    )
    return item


def record(settings: Settings, item: dict[str, Any], at: datetime) -> InboundRecord:
    value = item["value"]
    params = value["params"]
    body = next(iter(params.values()))
    order_id = body.get("order_id") or body.get("id")
    return InboundRecord(
        settings.topic_for(value["method"]), dumps(value).encode(), f"OCTO:{order_id}", {}, 0, 0, at
    )


def send(worker: Worker, items: list[dict[str, Any]], at: datetime) -> None:
    before = worker.process.handled()
    asyncio.run(publish(worker.settings, [record(worker.settings, item, at) for item in items]))
    worker.process.wait_handled(before + len(items))


@pytest.fixture(scope="module")
def worker(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    workdir = tmp_path_factory.mktemp("toolbox")
    env, settings = isolated(broker.bootstrap, workdir, RULES, "x", OMS_API_TOKEN=TOKEN)
    live = Worker(settings, env, WorkerProcess(env, workdir / "worker.log").start(), workdir)
    try:
        live.process.wait_ready()
        send(live, [example(n, "1234") for n in (2, 3)], datetime.now(UTC))
        yield live
    finally:
        live.process.stop()


def test_faust_pages_are_closed_and_the_order_api_needs_the_token(worker: Worker) -> None:
    for path in ("/table/", "/table/orders/", "/table/orders/OCTO:1234/", "/router/", "/graph/"):
        status, body = worker.http(path, token=None)
        assert status == 404 and not leaks(body.decode("utf-8", "replace")), path
    assert worker.http("/v1/orders/OCTO:1234", token=None)[0] == 401
    assert worker.http("/v1/orders/OCTO:1234", token="wrong")[0] == 401
    status, body = worker.http("/v1/orders/OCTO:1234")
    assert status == 200 and not leaks(body.decode())
    order = json.loads(body)
    assert order["key"] == "OCTO:1234" and {line["shipped"] for line in order["lines"]} != {0}
    status, body = worker.http("/v1/orders/OCTO:1234?personal=1")
    assert status == 200 and leaks(body.decode())  # asked for: the customer is there
    assert worker.http("/v1/orders/OCTO:none")[0] == 404
    assert worker.http("/v1/preview", token=None, body=b"{}")[0] == 401
    for path in ("/health", "/ready", "/metrics"):
        status, body = worker.http(path, token=None)
        assert status == 200 and not leaks(body.decode()), path


def test_every_dashboard_metric_is_on_the_live_workers_metrics_page(worker: Worker) -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "oms-postsales.json").read_text())
    status, body = worker.http("/metrics", token=None)
    assert status == 200
    # A labelled series shows its samples once used, and its HELP line from the start.
    shown = set(re.findall(r"^(?:# HELP )?([a-z_]+)", body.decode(), re.MULTILINE))
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b((?:oms|process|python)_[a-z_]+)", target["expr"])
    }
    assert used and {re.sub(r"_bucket$", "", name) for name in used} <= shown
    assert 'oms_build_info{version="' in body.decode() and "oms_ready 1.0" in body.decode()


def test_the_worker_refuses_a_public_web_host_without_token(worker: Worker) -> None:
    env = {**worker.env, "OMS_WEB_HOST": "0.0.0.0"}
    env.pop("OMS_API_TOKEN")
    done = subprocess.run(
        [sys.executable, "-m", "workers", "worker"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "OMS_API_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_orders_show_reads_the_api_and_else_the_changelog(worker: Worker) -> None:
    from_api = json.loads(worker.cli("orders", "show", "OCTO:1234").stdout)
    from_changelog = json.loads(worker.cli("orders", "show", "OCTO:1234", "--source", "changelog").stdout)
    assert from_api == from_changelog and from_api["key"] == "OCTO:1234"
    assert not leaks(json.dumps(from_api))
    unreachable = worker.cli("orders", "show", "OCTO:1234", "--url", "http://127.0.0.1:9")
    assert json.loads(unreachable.stdout) == from_api and "changelog" in unreachable.stderr
    personal = worker.cli("orders", "show", "OCTO:1234", "--with-personal-data", "--source", "changelog")
    assert leaks(personal.stdout)


def test_preview_equals_the_refund_the_message_then_makes(worker: Worker) -> None:
    at = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
    send(worker, [example(n, "7001") for n in (2, 3)], at)
    message = example(4, "7001")["value"]
    state_before = worker.http("/v1/orders/OCTO:7001")[1]
    status, body = worker.http("/v1/preview?at=2026-11-03T10:00:00Z", body=dumps(message).encode())
    assert status == 200, body
    # Without ?personal=1 the user who authorized it is redacted, as /v1/orders does.
    (redacted,) = loads(body)["credit_notes"]
    assert redacted["user"] == "[personal data: redacted]"
    status, body = worker.http("/v1/preview?at=2026-11-03T10:00:00Z&personal=1", body=dumps(message).encode())
    assert status == 200, body
    preview = loads(body)
    assert worker.http("/v1/orders/OCTO:7001")[1] == state_before  # nothing changed
    (note,) = preview["credit_notes"]
    assert note.pop("credit_note_number_provisional") is True
    seen = {(r["topic"], r["partition"], r["offset"]) for r in worker.read()}
    send(worker, [example(4, "7001")], at)
    new = [r for r in worker.read() if (r["topic"], r["partition"], r["offset"]) not in seen]
    (refund,) = [r["value"]["params"]["refund"] for r in new if r["topic"].endswith(names.REFUND_UPDATED)]
    assert note == refund
    assert Decimal(preview["totals"]["gross"]) == Decimal(refund["totals"]["cost_gross"]) > 0
    assert preview["restock"] and preview["explanations"]


def test_dead_letter_fix_redrive_applies_once_even_when_redriven_twice(worker: Worker) -> None:
    at = datetime.now(UTC)
    send(worker, [example(2, "7002")], at)
    shipment = example(3, "7002")
    broken = json.loads(json.dumps(shipment))
    broken["value"]["params"]["shipment"]["source_id"] = 42  # a number where the schema wants text
    send(worker, [broken], at)
    dead = [
        json.loads(line)
        for line in worker.cli("dlq", "list", "--error-class", "SchemaValidation").stdout.splitlines()
    ]
    (letter,) = [d for d in dead if d["key"] == "OCTO:7002"]
    where = f"{letter['partition']}:{letter['offset']}"
    shown = json.loads(worker.cli("dlq", "show", where).stdout)
    assert shown["error_path"].endswith("/source_id") and shown["value_at_pointer"] == 42
    fix = json.dumps([{"op": "replace", "path": "/params/shipment/source_id", "value": "OCTO-STORE"}])
    dry = worker.cli("dlq", "redrive", "--record", where, "--fix", fix, "--dry-run")
    assert "would re-drive 1 record(s)" in dry.stdout

    def updates() -> int:
        topic = worker.settings.topic_for(names.ORDER_UPDATED)
        return sum(1 for r in worker.read() if r["topic"] == topic and r["key"] == "OCTO:7002")

    before = updates()
    handled = worker.process.handled()
    worker.cli("dlq", "redrive", "--record", where, "--fix", fix)
    worker.process.wait_handled(handled + 1)
    assert updates() == before + 1
    worker.cli("dlq", "redrive", "--record", where, "--fix", fix)
    worker.process.wait_handled(handled + 2)
    assert updates() == before + 1  # the second is a duplicate: same message id
    on_terminal = worker.on_tty("dlq", "list", "--topic", worker.settings.topic_for(names.SHIPMENT_DONE))
    assert "ERROR CLASS" in on_terminal and where in on_terminal and "dead letter(s) in" in on_terminal
    body = worker.http("/v1/orders/OCTO:7002")[1]
    assert {line["shipped"] for line in json.loads(body)["lines"] if line["kind"] == "PHYSICAL"} != {0}


def test_report_totals_equal_the_sum_of_the_credit_notes_on_the_broker(worker: Worker) -> None:
    send(worker, [example(n, "7003") for n in (2, 3, 4)], datetime.now(UTC))
    refunds = [
        r["value"]["params"]["refund"] for r in worker.read() if r["topic"].endswith(names.REFUND_UPDATED)
    ]
    assert refunds
    report = json.loads(worker.cli("report", "refunds", "--format", "json").stdout)
    assert len(report["notes"]) == len({r["credit_note_number"] for r in refunds})
    for field, total in (("gross", "cost_gross"), ("net", "cost_net"), ("tax", "cost_vat")):
        assert sum(Decimal(g[field]) for g in report["groups"]) == sum(
            Decimal(r["totals"][total]) for r in refunds
        )


def test_two_workers_answer_for_each_others_keys(worker: Worker, broker: LocalBroker) -> None:
    second = WorkerProcess(
        {**worker.env, "OMS_WEB_PORT": str(_free())}, worker.workdir / "second.log"
    ).start()
    try:
        # Orders of its own (and the fixture's): what the other tests of the module made is theirs.
        own = ("7101", "7102", "7103")
        send(worker, [example(n, order_id) for order_id in own for n in (2, 3)], datetime.now(UTC))
        second.wait_ready()
        worker.process.wait_ready()
        keys = [f"OCTO:{n}" for n in ("1234", *own)]
        owners = {partition_for(k, worker.settings.partitions) for k in keys}
        assert len(owners) > 1
        for key in keys:
            first = _settled(worker, key, None)
            other = _settled(worker, key, second.web_port)
            assert first == other and json.loads(first)["key"] == key
            # A preview is forwarded with its body to the owner: both doors give one answer.
            message = example(4, key.split(":")[1])["value"]
            message["id"] = f"preview-{key}"
            body = dumps(message).encode()
            answers = [worker.http("/v1/preview", body=body, port=port) for port in (None, second.web_port)]
            assert answers[0][0] == answers[1][0] == 200
            assert [loads(a[1])["order_key"] for a in answers] == [key, key]
            assert loads(answers[0][1])["status"] == loads(answers[1][1])["status"]
    finally:
        assert second.stop() == 0


def _settled(worker: Worker, key: str, port: int | None) -> bytes:
    """The answer once the group has settled after the join (503/502 while it rebalances)."""
    import time

    deadline = time.monotonic() + 60
    while True:
        status, body = worker.http(f"/v1/orders/{key}", port=port)
        if status == 200 or time.monotonic() > deadline:
            assert status == 200, (status, body)
            return body
        time.sleep(0.2)


def _free() -> int:
    from workers.local.broker import free_port

    return free_port()
