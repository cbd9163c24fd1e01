"""The worker's web doors: /health, /ready, /metrics (no personal data, no token), and the order and
preview API (`GET /v1/orders/<key>`, `POST /v1/preview`) behind a bearer token.

faust's own pages are switched off: its `/table/<name>/<key>/` route served whole orders (names,
addresses, contacts) to anyone, `/router` tells which host owns which key, and the statistics and
graph pages describe the process. What stays is faust's empty index at `/`.

A key owned by another worker of the group is answered by forwarding the request to that worker's
web server (the group assignment tells which), token and body included.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from datetime import datetime
from typing import Any

import aiohttp
import faust
import structlog
from faust.web import Request, Response, View
from yarl import URL

from domain.timeutil import parse_time
from workers.config.settings import Settings
from workers.engine.codec import dumps, loads
from workers.engine.order_view import order_view
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
    for flag in FAUST_PAGES:
        setattr(app.conf, flag, False)

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
        url = URL(str(request.url)).with_host(str(destination.host)).with_port(destination.port)
        try:
            async with app.http_client.request(request.method, url, headers=headers, data=body) as answer:
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
            rules = runtime.rules.for_channel(order.sales_channel)
            return answer_json(self, order_view(order, with_personal_data=personal, rules=rules))

    class Preview(View):
        async def post(self, request: Request) -> Response:
            if not authorized(settings, request.headers.get("Authorization")):
                return refused(self)
            body = await self.read_request_content(request)
            if len(body) > MAX_PREVIEW_BYTES:
                return answer_json(self, {"error": "message too large"}, 413)
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
            return answer_json(self, preview(pipeline, record))

    app.page("/health")(Health)
    app.page("/ready")(Ready)
    app.page("/metrics")(Prometheus)
    app.page("/v1/orders/{key}")(Order)
    app.page("/v1/preview")(Preview)
