"""Order lookup: one order's post-sales state as an operator reads it, without personal data unless asked.

Sources, in order: the worker's own HTTP API (`GET /v1/orders/<key>`, which answers for keys owned by
another worker too), else the `orders` table's changelog topic on the broker (`<consumer group>-orders-
changelog`, where the last value per key wins).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

from domain.state import OrderState
from workers.config.settings import Settings
from workers.engine.values import JsonValues
from workers.kafka.topics import changelog_topic
from workers.ops.reading import OpsError, read_topic


class WorkerUnreachable(OpsError):
    """No worker answered at the URL: the caller may fall back to the changelog."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, never followed: the request carries the token, which goes only to the
    URL the operator gave."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener(ssl_context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    """http and https only (no file:, ftp: or data:), no redirects, no proxies from the environment
    (the token must not go through one unasked)."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=ssl_context),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        _NoRedirects(),
    ):
        opener.add_handler(handler)
    return opener


def from_api(
    base_url: str,
    key: str,
    token: str | None,
    *,
    with_personal_data: bool = False,
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, Any] | None:
    """The order from a worker's API; None when the worker answers that it has no such order.
    `base_url` must be http:// or https://; `ssl_context` checks an https worker (default: the
    system's CAs)."""
    scheme = urllib.parse.urlsplit(base_url).scheme.lower()
    if scheme not in ("http", "https"):
        raise OpsError(f"--url must be an http:// or https:// URL, not {scheme or 'no'} scheme")
    query = "?personal=1" if with_personal_data else ""
    url = f"{base_url.rstrip('/')}/v1/orders/{urllib.parse.quote(key, safe=':')}{query}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with _opener(ssl_context).open(request, timeout=timeout) as response:
            found: dict[str, Any] = json.loads(response.read())
            return found
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        if 300 <= error.code < 400:
            raise OpsError(
                f"{base_url} answered {error.code} (a redirect): not followed, the request carries the "
                "token; give the worker's own URL"
            ) from None
        if error.code == 401:
            raise OpsError(f"{base_url} refused the token (401): set OMS_API_TOKEN to the worker's") from None
        raise OpsError(f"{base_url} answered {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        raise WorkerUnreachable(f"no worker answers at {base_url} ({error})") from None


def _text(raw: bytes | None) -> str | None:
    """faust writes table keys and values of type str as JSON strings; accept bare text too."""
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace")
    if text.startswith('"'):
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text


def latest_states(settings: Settings, keys: set[str] | None = None) -> dict[str, OrderState]:
    """The orders as the changelog has them now (last value per key; a tombstone deletes)."""
    records = asyncio.run(read_topic(settings, changelog_topic(settings, "orders")))
    states: dict[str, str | None] = {}
    for record in records:
        key = _text(record.key)
        if key is None or (keys is not None and key not in keys):
            continue
        states[key] = _text(record.value)
    orders = JsonValues(OrderState)
    return {key: orders.decode(value) for key, value in states.items() if value is not None}


def from_changelog(settings: Settings, key: str) -> OrderState | None:
    return latest_states(settings, {key}).get(key)


def archived_at(settings: Settings, key: str) -> datetime | None:
    """When the order left state (retention), from the tombstone that ends its changelog records;
    None when the changelog holds it, or never held it."""
    records = asyncio.run(read_topic(settings, changelog_topic(settings, "orders")))
    last = None
    for record in records:
        if _text(record.key) == key:
            last = record
    if last is None or last.value is not None:
        return None
    return last.timestamp
