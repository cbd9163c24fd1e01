"""The worker's web server, without a broker: faust's aiohttp driver as the worker builds it
(`build_app`), started on 127.0.0.1 alone, over state replayed from the example log.

Bodies limited while read, personal data only with `?personal=1` and audited, a connection cap and a
header deadline, the Host check on loopback, TLS and forwarding over it, `orders show --url`."""

from __future__ import annotations

import asyncio
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from domain import names
from workers.config.rules_file import load_rules
from workers.config.settings import Settings
from workers.engine.codec import dumps
from workers.engine.personal import REDACTED
from workers.engine.pipeline import Pipeline, partition_for
from workers.engine.stores import Stores
from workers.kafka.app import build_app
from workers.kafka.topics import changelog_topic
from workers.kafka.web import MAX_PREVIEW_BYTES
from workers.local.broker import free_port
from workers.ops import lookup
from workers.ops.reading import OpsError
from workers.replay.runner import read_records

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"
TOKEN = "web-test-token-0123456789abcdef"
PERSONAL = ("Veronica", "Costello", "Honey Bluff", "roni_cost@example.com", "alex@example.com", "203.0.113.7")


def state(skip: str | None = None) -> Stores:
    """The example log replayed (without the records of message `skip`)."""
    pipeline = Pipeline(load_rules(RULES))
    with LOG.open(encoding="utf-8") as lines:
        for record in read_records(lines, str(LOG)):
            if skip is not None and record.topic == skip:
                continue
            processed = pipeline.process(record)
            pipeline.store(processed)
            pipeline.apply_movements(processed.movements)
            for follow_up in processed.follow_ups:
                pipeline.store(pipeline.process(follow_up))
    return pipeline.stores


def example(topic: str) -> dict[str, Any]:
    for line in LOG.read_text().splitlines():
        record = json.loads(line)
        if record["topic"] == topic:
            found: dict[str, Any] = record["value"]
            return found
    raise AssertionError(topic)


class Server:
    def __init__(self, settings: Settings, app: Any, runtime: Any) -> None:
        self.settings, self.app, self.runtime = settings, app, runtime
        self.port = settings.web_port
        scheme = settings.web_scheme
        self.base = f"{scheme}://127.0.0.1:{self.port}"

    async def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> tuple[int, Any]:
        """One request from a thread (urllib), so that the server's loop keeps running."""
        import urllib.error
        import urllib.request

        def run() -> tuple[int, Any]:
            request = urllib.request.Request(
                self.base + path, data=body, method=method, headers=headers or {}
            )
            try:
                with urllib.request.urlopen(request, timeout=10, context=context) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read() or b"null")

        return await asyncio.to_thread(run)


@asynccontextmanager
async def serving(stores: Stores | None = None, **values: Any) -> AsyncIterator[Server]:
    values.setdefault("web_port", free_port())
    settings = Settings(create_topics=False, store="memory://", rules_file=RULES, **values)
    app, runtime = build_app(settings, load_rules(RULES))
    app.loop = asyncio.get_running_loop()
    if stores is not None:
        runtime.stores = stores
    web = app.web
    web.init_server()
    await web.start_server()
    try:
        yield Server(settings, app, runtime)
    finally:
        await web.stop_server()


class Recorder:
    """Stands in for the web module's logger: every line as a dict (event plus its fields). The
    worker's logging configuration caches loggers, so structlog's capture_logs cannot see them."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def _line(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})

    info = warning = error = _line


@contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    from workers.kafka import web

    recorder, original = Recorder(), web.log
    web.log = recorder  # type: ignore[assignment]
    try:
        yield recorder.lines
    finally:
        web.log = original


async def until(condition: Any, deadline: float = 10.0) -> None:
    """Wait for a condition (checked every few ms), failing after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.01)


async def closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Whether the server closes the connection within `deadline` (reads until EOF or reset)."""

    def read() -> bool:
        sock.settimeout(deadline)
        try:
            while sock.recv(65_536):
                pass
            return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    return await asyncio.to_thread(read)


# -- point 2: the preview body is limited while it is read -------------------------------------------


async def test_a_preview_body_past_the_cap_gets_413_without_waiting_for_the_rest() -> None:
    async with serving() as server:
        for framing in ("content-length", "chunked"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            head = f"POST /v1/preview HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            if framing == "content-length":
                # 64 MiB announced, 2 MiB sent, the rest never comes: reading it whole would wait for ever.
                writer.write((head + f"Content-Length: {64 * 1_048_576}\r\n\r\n").encode())
                writer.write(b"{" + b" " * (2 * 1_048_576))
            else:
                writer.write((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
                chunk = b" " * 65_536
                for _ in range(2 * MAX_PREVIEW_BYTES // len(chunk)):
                    writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            with suppress(ConnectionResetError):
                await writer.drain()
            status = await asyncio.wait_for(reader.readline(), timeout=10)
            assert status.startswith(b"HTTP/1.1 413"), (framing, status)
            writer.close()


async def test_a_preview_body_within_the_cap_is_read() -> None:
    async with serving(state(skip=names.EXCHANGE_CREATE)) as server:
        envelope = example(names.EXCHANGE_CREATE)
        status, answer = await server.call("POST", "/v1/preview", dumps(envelope).encode())
        assert status == 200 and answer["status"] == "applied"


# -- point 4: personal data only with ?personal=1, each read audited -----------------------------------


async def test_preview_redacts_a_child_orders_personal_data_unless_personal_1() -> None:
    async with serving(state(skip=names.EXCHANGE_CREATE)) as server:
        body = dumps(example(names.EXCHANGE_CREATE)).encode()
        with capture_logs() as logs:
            status, answer = await server.call("POST", "/v1/preview", body)
        assert status == 200 and answer["child_orders"]
        text = json.dumps(answer)
        for value in PERSONAL:
            assert value not in text, value
        child = answer["child_orders"][0]
        assert child["customer"]["id"] == REDACTED and child["lines"]
        assert not [entry for entry in logs if entry["event"] == "api.personal_data_read"]
        with capture_logs() as logs:
            status, full = await server.call("POST", "/v1/preview?personal=1", body)
        assert status == 200 and "203.0.113.7" in json.dumps(full["child_orders"])
        (audit,) = [entry for entry in logs if entry["event"] == "api.personal_data_read"]
        assert audit["route"] == "preview" and audit["order_key"] == "ST1:12346"
        assert audit["client"] == "127.0.0.1"
        for value in PERSONAL:
            assert value not in json.dumps(logs, default=str), value


async def test_an_orders_personal_read_is_audited_with_the_token_fingerprint_never_the_data() -> None:
    async with serving(state(), api_token=TOKEN) as server:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with capture_logs() as logs:
            status, plain = await server.call("GET", "/v1/orders/OCTO:1234", headers=auth)
            assert status == 200 and "upstream_order" not in plain
            status, full = await server.call("GET", "/v1/orders/OCTO:1234?personal=1", headers=auth)
            assert status == 200 and "alex@example.com" in json.dumps(full)
        (audit,) = [entry for entry in logs if entry["event"] == "api.personal_data_read"]
        assert audit["route"] == "orders" and audit["order_key"] == "OCTO:1234"
        assert audit["token"].startswith("sha256:") and TOKEN not in json.dumps(logs, default=str)
        for value in PERSONAL:
            assert value not in json.dumps(logs, default=str), value


# -- point 9: connection cap, header deadline, Host check ----------------------------------------------


async def test_a_connection_that_does_not_finish_its_headers_in_time_is_closed() -> None:
    async with serving(web_request_timeout_seconds=1) as server:
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode())  # never ends
        idle = socket.create_connection(("127.0.0.1", server.port))  # sends nothing at all
        started = time.monotonic()
        assert await closed_by_server(slow, deadline=8)
        assert await closed_by_server(idle, deadline=8)
        assert time.monotonic() - started < 8
        slow.close()
        idle.close()
        # A request sent in time is answered.
        status, _ = await server.call("GET", "/health")
        assert status == 200


async def test_connections_past_the_cap_are_closed_at_once_and_taken_again_below_it() -> None:
    async with serving(web_max_connections=3, web_request_timeout_seconds=60) as server:
        guard = server.app.web.guard
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
        await until(lambda: len(guard.open) == 3)
        extra = socket.create_connection(("127.0.0.1", server.port))
        assert await closed_by_server(extra, deadline=5)
        extra.close()
        assert guard.refused >= 1
        held.pop().close()
        await until(lambda: len(guard.open) == 2)
        status, _ = await server.call("GET", "/health")
        assert status == 200
        for sock in held:
            sock.close()


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("[::1]:{port}", 200),
        ("LOCALHOST:{port}", 200),
        ("evil.example:{port}", 421),
        ("127.0.0.1", 421),
        ("127.0.0.1:1", 421),
    ],
)
async def test_on_loopback_only_this_machines_host_names_are_answered(host: str, status: int) -> None:
    async with serving(state()) as server:
        headers = {"Host": host.format(port=server.port)}
        for path in ("/health", "/v1/orders/OCTO:1234"):
            got, _ = await server.call("GET", path, headers=headers)
            assert got == status, (path, host)


def test_off_loopback_the_host_is_not_checked_the_token_guards() -> None:
    from workers.kafka.web import allowed_hosts

    assert allowed_hosts(Settings(web_host="0.0.0.0", api_token=TOKEN)) is None
    assert allowed_hosts(Settings(web_port=7000)) == {"127.0.0.1:7000", "localhost:7000", "[::1]:7000"}


# -- point 9: TLS, and forwarding over it ---------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two self-signed certificates for 127.0.0.1 (a worker's, and one of another CA)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    made = {}
    for name in ("worker", "stranger"):
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "1", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        made[name], made[f"{name}_key"] = cert, key
    return made


def tls(certificates: dict[str, Path], cafile: str = "worker") -> dict[str, Any]:
    return {
        "web_tls_certfile": certificates["worker"],
        "web_tls_keyfile": certificates["worker_key"],
        "web_tls_cafile": certificates[cafile],
    }


async def test_with_a_certificate_the_api_is_https_only(certificates: dict[str, Path]) -> None:
    async with serving(state(), **tls(certificates)) as server:
        assert server.base.startswith("https://")
        trust = ssl.create_default_context(cafile=str(certificates["worker"]))
        status, order = await server.call("GET", "/v1/orders/OCTO:1234", context=trust)
        assert status == 200 and order["key"] == "OCTO:1234"
        plain = socket.create_connection(("127.0.0.1", server.port))
        plain.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        # No answer in clear: the TLS handshake fails and the connection ends (at the latest at the
        # request deadline, which bounds the handshake too).
        assert await closed_by_server(plain, deadline=server.settings.web_request_timeout_seconds + 5)
        plain.close()


@contextmanager
def owned_by(server: Server, owner: Server, key: str) -> Iterator[None]:
    """The group's assignment as `server` would read it: `key`'s partition belongs to `owner`."""
    partition = partition_for(key, server.settings.partitions)
    changelog = changelog_topic(server.settings, "orders")
    url = f"{owner.settings.web_scheme}://127.0.0.1:{owner.port}/"
    router = server.app.router
    original = router.tables_metadata
    router.tables_metadata = lambda: {url: {changelog: {partition}}}
    try:
        yield
    finally:
        router.tables_metadata = original


@pytest.mark.parametrize(("cafile", "status"), [("worker", 200), ("stranger", 503)])
async def test_a_request_for_another_workers_key_is_forwarded_over_https_with_its_certificate_checked(
    certificates: dict[str, Path], cafile: str, status: int
) -> None:
    async with (
        serving(Stores(), api_token=TOKEN, **tls(certificates, cafile)) as here,
        serving(state(), api_token=TOKEN, **tls(certificates)) as owner,
    ):
        trust = ssl.create_default_context(cafile=str(certificates["worker"]))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with owned_by(here, owner, "OCTO:1234"):
            got, order = await here.call("GET", "/v1/orders/OCTO:1234", headers=auth, context=trust)
        assert got == status
        if status == 200:
            assert order["key"] == "OCTO:1234"  # only the owner has it


# -- point 9: orders show --url: http(s) only, no redirects ---------------------------------------------


def test_orders_show_refuses_urls_that_are_not_http() -> None:
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/", "data:,x", "127.0.0.1:6066"):
        with pytest.raises(OpsError, match="http"):
            lookup.from_api(url, "OCTO:1", TOKEN)


def test_orders_show_does_not_follow_a_redirect_with_the_token() -> None:
    seen: list[str | None] = []

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/elsewhere"):
                seen.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")
                return
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/elsewhere")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(OpsError, match="redirect"):
            lookup.from_api(f"http://127.0.0.1:{server.server_port}", "OCTO:1", TOKEN)
        assert seen == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
