"""The API over TLS in a live group: two workers with a certificate (made here with openssl) answer for
each other's keys, forwarding over HTTPS with the other worker's certificate checked; plain HTTP gets
no answer. tests/unit/test_web.py covers the same server without a broker."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from testkit.live import isolated
from workers.engine.pipeline import partition_for
from workers.local.broker import LocalBroker, free_port
from workers.local.dev import WorkerProcess, publish

from .test_toolbox import RULES, example, record

pytestmark = pytest.mark.integration
TOKEN = "tls-test-token-0123456789abcdef"


def certificate(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / "web.pem", folder / "web.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=oms-web", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def get(port: int, path: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_two_tls_workers_answer_for_each_others_keys_over_https(broker: LocalBroker, tmp_path: Path) -> None:
    cert, key = certificate(tmp_path)
    tls = {
        "OMS_WEB_TLS_CERTFILE": str(cert),
        "OMS_WEB_TLS_KEYFILE": str(key),
        "OMS_WEB_TLS_CAFILE": str(cert),
        "OMS_API_TOKEN": TOKEN,
    }
    env, settings = isolated(broker.bootstrap, tmp_path, RULES, "t", **tls)
    first = WorkerProcess(env, tmp_path / "first.log").start()
    second = WorkerProcess({**env, "OMS_WEB_PORT": str(free_port())}, tmp_path / "second.log").start()
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        first.wait_ready()
        keys = [f"OCTO:{n}" for n in ("1234", "7001", "7002", "7003")]
        assert len({partition_for(k, settings.partitions) for k in keys}) > 1
        at = datetime.now(UTC)
        asyncio.run(publish(settings, [record(settings, example(2, k.split(":")[1]), at) for k in keys]))
        second.wait_ready()
        first.wait_handled(0)
        for key in keys:
            for port in (first.web_port, second.web_port):
                deadline = time.monotonic() + 60  # 503 while the group rebalances after the join
                while True:
                    status, body = get(port, f"/v1/orders/{key}", trust)
                    if status == 200 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                assert status == 200, (key, port, status, body)
                assert json.loads(body)["key"] == key
        # No answer in clear on the TLS port.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{first.web_port}/health", timeout=5)
    finally:
        assert second.stop() == 0
        assert first.stop() == 0
