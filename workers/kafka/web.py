"""The worker's web doors: /health, /ready, /metrics (no personal data, no token), and the order and
preview API (`GET /v1/orders/<key>`, `POST /v1/preview`) behind a bearer token.

The server is faust's aiohttp driver with a site of our own (`GuardedWeb`, chosen through faust's web
driver registry, no faust code patched): at most OMS_WEB_MAX_CONNECTIONS open connections, each must
deliver a request's headers within OMS_WEB_REQUEST_TIMEOUT_SECONDS (of opening, or of the previous
answer), TLS when OMS_WEB_TLS_CERTFILE is set, and on loopback only the Host names of this machine
(DNS rebinding). Personal data leaves only with `?personal=1`, and every such read is logged
(`api.personal_data_read`: who, which key, never the data).

faust's own pages are switched off: its `/table/<name>/<key>/` route served whole orders (names,
addresses, contacts) to anyone, `/router` tells which host owns which key, and the statistics and
graph pages describe the process. What stays is faust's empty index at `/`.

A key owned by another worker of the group is answered by forwarding the request to that worker's
web server (the group assignment tells which), token and body included.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import faust
import structlog
from aiohttp import web as aioweb
from faust.web import Request, Response, View
from faust.web import drivers as web_drivers
from faust.web.drivers import aiohttp as faust_aiohttp
from yarl import URL

from domain.timeutil import parse_time
from workers.config.settings import Settings
from workers.engine.codec import dumps, loads
from workers.engine.order_view import order_view
from workers.engine.personal import redact
from workers.engine.pipeline import partition_for
from workers.engine.preview import PreviewError, message_record, preview, preview_pipeline
from workers.kafka import metrics
from workers.kafka.topics import changelog_topic

log = structlog.get_logger("oms_postsales.web")

FORWARDED = "X-OMS-Forwarded"
# faust's built-in pages: each is switched off by this setting of faust's.
FAUST_PAGES = (
    "web_tables_enabled",
    "web_router_enabled",
    "web_graph_enabled",
    "web_stats_enabled",
    "web_metrics_enabled",
)
MAX_PREVIEW_BYTES = 1_048_576
# faust's web driver URL scheme that selects GuardedWeb (registered below, like faust_fixes' transport).
WEB_DRIVER_SCHEME = "oms-aiohttp"
# The app attribute GuardedWeb reads its limits from (faust builds the driver with the app only).
LIMITS_ATTRIBUTE = "_oms_web_limits"


class WebExposureError(ValueError):
    """The web server would listen beyond this machine with no token guarding the order API."""


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def exposure_problem(settings: Settings) -> str | None:
    """Why the worker must not start with these web settings, if it must not."""
    if loopback(settings.web_host) or settings.api_token is not None:
        return None
    return (
        f"OMS_WEB_HOST={settings.web_host} listens beyond this machine: set OMS_API_TOKEN "
        "(the order and preview API need it there), or bind to 127.0.0.1"
    )


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The Host headers a loopback server answers (None: any, off loopback the token guards). A page
    of another site whose name resolves to 127.0.0.1 (DNS rebinding) sends its own name and is refused."""
    if not loopback(settings.web_host):
        return None
    port = settings.web_port
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"})


def caller(settings: Settings, request: Any) -> dict[str, str]:
    """Who asked, for the audit line: the fingerprint of the token presented (never the token) and the
    client's address."""
    who = {"client": str(request.remote or "")}
    header = request.headers.get("Authorization") or ""
    if settings.api_token is not None and header.startswith("Bearer "):
        digest = hashlib.sha256(header.removeprefix("Bearer ").encode("utf-8")).hexdigest()
        who["token"] = "sha256:" + digest[:16]
    return who


def audit_personal_read(settings: Settings, request: Any, route: str, key: str | None) -> None:
    """One line per read of personal data: who and which key; the data itself is never logged."""
    log.info("api.personal_data_read", route=route, order_key=key, **caller(settings, request))


def authorized(settings: Settings, header: str | None) -> bool:
    """With a token set, the request must carry it; without one (loopback only), anyone local may ask."""
    if settings.api_token is None:
        return True
    expected = "Bearer " + settings.api_token.get_secret_value()
    return header is not None and hmac.compare_digest(header.encode("utf-8"), expected.encode("utf-8"))


def install_pages(app: faust.App, runtime: Any) -> None:
    """Register the pages on the app; before any page, since faust picks its built-in pages when the
    first page is added."""
    settings: Settings = runtime.settings
    problem = exposure_problem(settings)
    if problem is not None:
        raise WebExposureError(problem)
    set_limits(app, settings)
    for flag in FAUST_PAGES:
        setattr(app.conf, flag, False)
    client_ssl = settings.web_client_ssl() if settings.web_tls else None

    async def owner(view: View, request: Request, key: str, body: bytes | None) -> Response | None:
        """The answer of the worker that owns `key`, or None when this one owns it (or nobody knows)."""
        if request.headers.get(FORWARDED):
            return None
        destination = owner_url(key)
        here = URL(str(app.conf.canonical_url))
        if destination is None or (destination.host, destination.port) == (here.host, here.port):
            return None
        headers = {FORWARDED: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        url = (
            URL(str(request.url))
            .with_scheme(destination.scheme)
            .with_host(str(destination.host))
            .with_port(destination.port)
        )
        # Over HTTPS when the workers have certificates: the token never crosses the network in clear.
        tls = client_ssl if destination.scheme == "https" else None
        try:
            async with app.http_client.request(
                request.method, url, headers=headers, data=body, ssl=tls if tls is not None else True
            ) as answer:
                content = await answer.read()
                return view.bytes(content, content_type="application/json", status=answer.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The owner is restarting or the group is rebalancing: say who owns it, retry later.
            log.warning("web.forward_failed", error=type(exc).__name__)
            owner_text = f"{destination.host}:{destination.port}"
            return answer_json(
                view, {"error": "the worker owning this key did not answer", "owner": owner_text}, 503
            )

    def owner_url(key: str) -> URL | None:
        """The web server of the worker that has the key's partition of the orders table. Computed here
        and not by faust's router, which hashes the key as the table serialises it (JSON text), while
        the records, and so the table partitions, are keyed by the raw key."""
        partition = partition_for(key, settings.partitions)
        changelog = changelog_topic(settings, "orders")
        for url, topics in app.router.tables_metadata().items():
            if partition in topics.get(changelog, ()):
                return URL(str(url))
        return None

    def refused(view: View) -> Response:
        return view.bytes(
            dumps({"error": "missing or wrong bearer token"}).encode("utf-8"),
            content_type="application/json",
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="oms-postsales"'},
        )

    def answer_json(view: View, value: Any, status: int = 200) -> Response:
        return view.bytes(dumps(value).encode("utf-8"), content_type="application/json", status=status)

    def too_large(view: View) -> Response:
        # The rest of the body is not read: the connection closes with the answer.
        return view.bytes(
            dumps({"error": f"message too large (more than {MAX_PREVIEW_BYTES} bytes)"}).encode("utf-8"),
            content_type="application/json",
            status=413,
            headers={"Connection": "close"},
        )

    class Health(View):
        async def get(self, request: Request) -> Response:
            uptime = round(time.monotonic() - runtime.started, 1)
            return self.json({"status": "ok", "uptime_seconds": uptime})

    class Ready(View):
        async def get(self, request: Request) -> Response:
            ok, checks = runtime.ready()
            return self.json({"ready": ok, **checks}, status=200 if ok else 503)

    class Prometheus(View):
        async def get(self, request: Request) -> Response:
            metrics.update_lag(app)
            metrics.READY.set(1 if runtime.ready()[0] else 0)
            body, content_type = metrics.exposition()
            return self.bytes(body, content_type=content_type)

    class Order(View):
        async def get(self, request: Request, key: str) -> Response:
            if not authorized(settings, request.headers.get("Authorization")):
                return refused(self)
            forwarded = await owner(self, request, key, None)
            if forwarded is not None:
                return forwarded
            order = runtime.stores.orders.get(key)
            if order is None:
                return answer_json(self, {"error": "no such order", "key": key}, 404)
            personal = request.query.get("personal") in ("1", "true")
            if personal:
                audit_personal_read(settings, request, "orders", key)
            version = runtime.rules.version_for(order.sales_channel, datetime.now(UTC))
            view = order_view(
                order, with_personal_data=personal, rules=version.rules, rules_version=version.label
            )
            return answer_json(self, view)

    class Preview(View):
        async def post(self, request: Request) -> Response:
            if not authorized(settings, request.headers.get("Authorization")):
                return refused(self)
            try:
                body = await read_limited(request, MAX_PREVIEW_BYTES, settings.web_request_timeout_seconds)
            except TimeoutError:
                return answer_json(self, {"error": "the body did not arrive in time"}, 408)
            if body is None:
                return too_large(self)
            at: datetime | None = None
            if "at" in request.query:
                at = parse_time(request.query["at"])
                if at is None:
                    return answer_json(self, {"error": "at= is not an ISO-8601 time"}, 400)
            pipeline = preview_pipeline(
                runtime.pipeline.rules,
                runtime.stores,
                topics=runtime.pipeline.topics,
                partitions=settings.partitions,
                validators=runtime.pipeline.validators,
            )
            try:
                document = loads(body)
                record = message_record(
                    document, pipeline.topics, message=request.query.get("message"), at=at
                )
            except ValueError as exc:
                return answer_json(
                    self, {"error": str(exc) if isinstance(exc, PreviewError) else "not JSON"}, 400
                )
            key = pipeline.key_for(record)
            if key is not None:
                forwarded = await owner(self, request, key, body)
                if forwarded is not None:
                    return forwarded
            result = preview(pipeline, record)
            # The child orders and returns it shows carry the customer, addresses and contacts: as
            # /v1/orders, only with ?personal=1, and logged.
            if request.query.get("personal") in ("1", "true"):
                audit_personal_read(settings, request, "preview", key)
                return answer_json(self, result)
            return answer_json(self, redact(result))

    app.page("/health")(Health)
    app.page("/ready")(Ready)
    app.page("/metrics")(Prometheus)
    app.page("/v1/orders/{key}")(Order)
    app.page("/v1/preview")(Preview)


async def read_limited(request: Any, limit: int, timeout: float) -> bytes | None:
    """The request body, read in chunks and never more than `limit` + one chunk held: None when it is
    larger (by its Content-Length, before reading anything, or while reading). A body that does not
    arrive within `timeout` raises TimeoutError."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    parts: list[bytes] = []
    size = 0
    async with asyncio.timeout(timeout):
        while True:
            chunk = await request.content.read(65_536)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
    return b"".join(parts)


# -- the server: connection cap, header deadline, Host check, TLS ------------------------------------


class WebLimits:
    """What GuardedWeb enforces, from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.max_connections = settings.web_max_connections
        self.request_timeout = settings.web_request_timeout_seconds
        self.hosts = allowed_hosts(settings)


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's own protocol inside, closed when it holds no request whose headers
    arrived and none arrives within the deadline (of opening, or of the previous answer)."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.transport: asyncio.BaseTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.busy = 0
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if len(self.guard.open) >= self.guard.limits.max_connections:
            self.refused = True
            self.guard.refused += 1
            transport.abort()  # type: ignore[attr-defined]
            return
        self.guard.open[id(self.inner)] = self
        self.inner.connection_made(transport)
        self.arm()

    def arm(self) -> None:
        self.disarm()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.guard.limits.request_timeout, self.expire)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def expire(self) -> None:
        self.timer = None
        if self.busy == 0 and self.transport is not None:
            self.guard.expired += 1
            self.transport.abort()  # type: ignore[attr-defined]

    def started(self) -> None:
        self.busy += 1
        self.disarm()

    def done(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self.arm()

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self.refused:
            return
        self.guard.open.pop(id(self.inner), None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class ConnectionGuard:
    """The open connections of one server, by aiohttp protocol."""

    def __init__(self, limits: WebLimits) -> None:
        self.limits = limits
        self.open: dict[int, _Guarded] = {}
        self.refused = 0
        self.expired = 0

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(factory(), self)

    def of(self, request: aioweb.Request) -> _Guarded | None:
        return self.open.get(id(request.protocol))


GUARD_KEY = aioweb.AppKey("oms_guard", ConnectionGuard)


class GuardedSite(aioweb.TCPSite):
    """aiohttp's TCP site, with every connection through the guard and the TLS handshake bounded by
    the same deadline."""

    def __init__(self, runner: aioweb.BaseRunner, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self.guard = guard

    async def start(self) -> None:
        await aioweb.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.guard.wrap(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            ssl_handshake_timeout=self.guard.limits.request_timeout if self._ssl_context else None,
        )


@aioweb.middleware
async def _guarded_request(
    request: aioweb.Request, handler: Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]
) -> aioweb.StreamResponse:
    """The headers are in: the connection's deadline waits until the answer; the Host is checked."""
    guard = request.app[GUARD_KEY]
    hosts = guard.limits.hosts
    if hosts is not None and request.headers.get("Host", "").lower() not in hosts:
        return aioweb.json_response({"error": "Host not allowed here"}, status=421)
    connection = guard.of(request)
    if connection is None:
        return await handler(request)
    connection.started()
    try:
        return await handler(request)
    finally:
        connection.done()


class GuardedWeb(faust_aiohttp.Web):
    """faust's aiohttp web driver with GuardedSite and the request middleware."""

    def __init__(self, app: faust.App, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        limits: WebLimits = getattr(app, LIMITS_ATTRIBUTE)
        self.guard = ConnectionGuard(limits)
        self.web_app[GUARD_KEY] = self.guard
        self.web_app.middlewares.append(_guarded_request)

    def _new_transport_tcp(self) -> aioweb.BaseSite:
        return GuardedSite(
            self._runner,
            self.guard,
            host=self.app.conf.web_bind,
            port=self.app.conf.web_port,
            ssl_context=self.app.conf.web_ssl_context,
        )


def register() -> None:
    """Make `oms-aiohttp://` resolve to GuardedWeb in faust's web driver registry."""
    web_drivers.DRIVERS.aliases[WEB_DRIVER_SCHEME] = f"{__name__}:GuardedWeb"


def app_options(settings: Settings) -> dict[str, Any]:
    """faust.App keyword arguments for the web server: the guarded driver, TLS, request limits."""
    register()
    options: dict[str, Any] = {
        "web": f"{WEB_DRIVER_SCHEME}://",
        "web_application_options": {
            # aiohttp's own bound on a body read whole; the preview reads its body in chunks anyway.
            "client_max_size": MAX_PREVIEW_BYTES,
            # An idle kept-alive connection: the guard closes it first, at the same deadline.
            "handler_args": {"keepalive_timeout": settings.web_request_timeout_seconds},
        },
    }
    context = settings.web_server_ssl()
    if context is not None:
        options["web_ssl_context"] = context
        # Other workers reach this one by this URL (the group's assignment metadata): over HTTPS.
        options["canonical_url"] = f"https://{settings.web_host}:{settings.web_port}"
    return options


def set_limits(app: faust.App, settings: Settings) -> None:
    setattr(app, LIMITS_ATTRIBUTE, WebLimits(settings))
