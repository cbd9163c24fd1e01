"""Order lookup: one order's post-sales state as an operator reads it, without personal data unless asked.

Sources, in order: the worker's own HTTP API (`GET /v1/orders/<key>`, which answers for keys owned by
another worker too), else the `orders` table's changelog topic on the broker (`<consumer group>-orders-
changelog`, where the last value per key wins).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal
from typing import Any

from domain.state import OrderState
from workers.config.settings import Settings
from workers.engine.codec import loads
from workers.engine.values import JsonValues
from workers.ops.reading import OpsError, read_topic


class WorkerUnreachable(OpsError):
    """No worker answered at the URL: the caller may fall back to the changelog."""


def _money(value: Decimal) -> str:
    return format(value, "f")


def order_view(order: OrderState, *, with_personal_data: bool = False) -> dict[str, Any]:
    """Counts, returns, credit notes, ledger and held messages. Personal data (the upstream order with
    its customer, addresses and contacts, return users and free-text reasons, held payloads) only when
    `with_personal_data`."""
    view: dict[str, Any] = {
        "key": order.key,
        "sales_channel": order.sales_channel,
        "order_id": order.order_id,
        "known": order.known,
        "skipped_before_integration": order.skipped_before_integration,
        "store": order.store,
        "currency": order.currency,
        "cancelled": order.cancelled,
        "lines": [
            {
                "line_number": line.line_number,
                "kind": line.kind,
                "sku": line.sku,
                "quantity": line.quantity,
                "open": line.open_units,
                "shipped": line.shipped,
                "cancelled": line.cancelled,
                "returned": line.returned,
                "refunded": line.refunded_units,
                "reshipped": line.reshipped,
                "restocked": line.restocked,
                "written_off": line.written_off,
                "gross": _money(line.gross),
                "refunded_gross": _money(line.refunded_gross),
            }
            for line in sorted(order.lines.values(), key=lambda item: item.line_number)
        ],
        "returns": [
            {
                "rma": ret.rma,
                "status": ret.status,
                "source_id": ret.source_id,
                "refund_mode": ret.refund_mode,
                "reshipment": ret.reshipment,
                "refunded": ret.refunded,
                "lines": [
                    {
                        "line_number": line.line_number,
                        "sku": line.sku,
                        "quantity": line.quantity,
                        "status": line.status,
                        "reason": line.reason,
                        "condition": line.condition,
                        "added_by_rule": line.added_by_rule,
                        "restock": line.restock,
                    }
                    | ({"reason_description": line.reason_description} if with_personal_data else {})
                    for line in ret.lines
                ],
            }
            | ({"user": ret.user} if with_personal_data else {})
            for ret in order.returns.values()
        ],
        "credit_notes": list(order.credit_notes),
        "ledger": {
            "paid": _money(order.paid),
            "refunded": _money(order.refunded_gross),
            "refundable": _money(order.refundable),
            "transactions": [
                {
                    "type": t.type,
                    "amount": _money(t.amount),
                    "reference": t.reference,
                    "credit_note_number": t.credit_note_number,
                }
                for t in order.transactions
            ],
        },
        "held": [
            {
                "message_name": h.message_name,
                "message_id": h.message_id,
                "arrived": h.arrived,
                "deadline": h.deadline,
            }
            | ({"params": loads(h.params_json)} if with_personal_data else {})
            for h in order.held
        ],
    }
    if with_personal_data:
        view["upstream_order"] = loads(order.upstream_json) if order.upstream_json else None
    return view


def from_api(
    base_url: str, key: str, token: str | None, *, with_personal_data: bool = False, timeout: float = 5.0
) -> dict[str, Any] | None:
    """The order from a worker's API; None when the worker answers that it has no such order."""
    query = "?personal=1" if with_personal_data else ""
    url = f"{base_url.rstrip('/')}/v1/orders/{urllib.parse.quote(key, safe=':')}{query}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            found: dict[str, Any] = json.loads(response.read())
            return found
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        if error.code == 401:
            raise OpsError(f"{base_url} refused the token (401): set OMS_API_TOKEN to the worker's") from None
        raise OpsError(f"{base_url} answered {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        raise WorkerUnreachable(f"no worker answers at {base_url} ({error})") from None


def changelog_topic(settings: Settings) -> str:
    return f"{settings.consumer_group}-orders-changelog"


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
    records = asyncio.run(read_topic(settings, changelog_topic(settings)))
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
