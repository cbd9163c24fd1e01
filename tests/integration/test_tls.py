"""Transport security against a real broker. The local broker's own TLS does not work
(docs/local-broker.md), so TLS is terminated by stunnel in front of it, with a certificate made here.
SASL cannot be exercised against it (every client is refused once authentication is on): its settings
are checked up to the client arguments."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from domain import names
from testkit.live import isolated
from workers.config.settings import Settings
from workers.engine.codec import InboundRecord, dumps
from workers.kafka.app import _credentials
from workers.local.broker import HOST, LocalBroker, free_port
from workers.local.dev import WorkerProcess, collect, publish

pytestmark = [
    pytest.mark.skipif(shutil.which("stunnel") is None, reason="stunnel (Debian stunnel4) is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@dataclass
class TlsBroker:
    broker: LocalBroker
    cert: Path
    other_cert: Path
    port: int

    def settings(self, cafile: Path, **extra: str) -> Settings:
        return Settings.model_validate(
            {
                "bootstrap_servers": f"{HOST}:{self.port}",
                "security_protocol": "SSL",
                "ssl_cafile": str(cafile),
                "store": "memory://",
                **extra,
            }
        )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = make_certificate(folder, "server")
    other, _ = make_certificate(folder, "stranger")
    tls_port = free_port()
    broker = LocalBroker(folder, advertised_port=tls_port)
    # stunnel only starts listening once the broker answers behind it; start the broker first.
    tunnel: subprocess.Popen[bytes] | None = None
    broker.start()
    try:
        config = folder / "stunnel.conf"
        config.write_text(
            f"foreground = yes\npid =\n[kafka]\naccept = {HOST}:{tls_port}\nconnect = {HOST}:{broker.port}\n"
            f"cert = {cert}\nkey = {key}\n"
        )
        tunnel = subprocess.Popen(
            ["stunnel", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "stunnel.log").open("wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((HOST, tls_port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or tunnel.poll() is not None:
                    raise RuntimeError(f"stunnel did not listen; see {folder / 'stunnel.log'}") from None
                time.sleep(0.05)
        yield TlsBroker(broker, cert, other, tls_port)
    finally:
        if tunnel is not None and tunnel.poll() is None:
            tunnel.send_signal(signal.SIGTERM)
            tunnel.wait(timeout=10)
        broker.stop()


async def _round_trip(settings: Settings, topic: str) -> bytes | None:
    producer = AIOKafkaProducer(acks="all", request_timeout_ms=5000, **settings.kafka_client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over tls", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, auto_offset_reset="earliest", enable_auto_commit=False, **settings.kafka_client_kwargs()
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=20)
        return message.value
    finally:
        await consumer.stop()


def test_clients_produce_and_consume_through_tls(tls: TlsBroker) -> None:
    settings = tls.settings(tls.cert)
    assert asyncio.run(_round_trip(settings, f"tls-{uuid.uuid4().hex[:6]}")) == b"over tls"


def test_a_certificate_signed_by_another_ca_is_refused(tls: TlsBroker) -> None:
    settings = tls.settings(tls.other_cert)

    async def attempt() -> None:
        producer = AIOKafkaProducer(request_timeout_ms=3000, **settings.kafka_client_kwargs())
        try:
            await asyncio.wait_for(producer.start(), timeout=20)
        finally:
            await producer.stop()

    with pytest.raises((KafkaError, OSError, asyncio.TimeoutError)):
        asyncio.run(attempt())


def test_the_worker_runs_over_tls(tls: TlsBroker, tmp_path: Path) -> None:
    env, settings = isolated(
        tls.broker.bootstrap, tmp_path, None, "s", OMS_SECURITY_PROTOCOL="SSL", OMS_SSL_CAFILE=str(tls.cert)
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        order = {
            "order": {
                "id": "T1",
                "store": "TLS",
                "ip": "203.0.113.1",
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
                        "sku": "S",
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
                "sales_channel_id": "TLS",
                "order_id": "T1",
                "user": "u",
                "lines": [
                    {"line_number": 1, "amount": "1.21", "reason": "R", "reason_description": "over TLS"}
                ],
            }
        }
        records = [
            InboundRecord(
                settings.topic_for(name),
                dumps({"jsonrpc": "2.0", "id": mid, "method": name, "params": params}).encode(),
                "TLS:T1",
            )
            for name, mid, params in (
                (names.ORDER_CREATE, "tls-1", order),
                (names.APPEASEMENT_CREATE, "tls-2", appease),
            )
        ]
        before = worker.handled()
        asyncio.run(publish(settings, records, lambda n: worker.wait_handled(before + n)))
        found = asyncio.run(collect(settings, [settings.topic_for(names.REFUND_UPDATED)], 1, timeout=30))
        (refund,) = [r["value"]["params"]["refund"] for r in found.records]
        assert refund["totals"] == {"cost_gross": "1.21", "cost_net": "1.00", "cost_vat": "0.21"}
    finally:
        assert worker.stop() == 0


def test_sasl_settings_reach_the_clients_and_stay_secret(tls: TlsBroker) -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    settings = Settings.model_validate(
        {
            "bootstrap_servers": "kafka:9093",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "oms",
            "sasl_password": secret,
            "ssl_cafile": str(tls.cert),
        }
    )
    kwargs = settings.kafka_client_kwargs()
    assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        "oms",
        secret,
    )
    assert kwargs["ssl_context"] is not None
    credentials = _credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("oms", secret)
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.ssl_context is not None
    assert secret not in repr(settings) and secret not in str(settings.masked())
    env = {
        **os.environ,
        "OMS_SECURITY_PROTOCOL": "SASL_SSL",
        "OMS_SASL_MECHANISM": "SCRAM-SHA-512",
        "OMS_SASL_USERNAME": "oms",
        "OMS_SASL_PASSWORD": secret,
        "OMS_SSL_CAFILE": str(tls.cert),
    }
    shown = subprocess.run(
        [sys.executable, "-m", "workers", "config", "show"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert secret not in shown.stdout + shown.stderr and '"sasl_username": "oms"' in shown.stdout
