"""Refund preview: what a return, appeasement or upstream refund message WOULD produce, changing nothing.

The message goes through the same `Pipeline.process` as a real record, on stores that refuse writes,
and `Pipeline.store` is never called: no order, series or stock changes, and the credit note number
shown is the one the series would hand out next (provisional: another message may take it first).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from domain import names
from domain.money import ZERO
from domain.rule_versions import RuleVersions
from domain.rules import RuleBook
from workers.engine.codec import InboundRecord, dumps, loads
from workers.engine.order_view import order_view
from workers.engine.pipeline import Pipeline, Processed, Topics
from workers.engine.stores import Stores
from workers.engine.validation import Validators

V = TypeVar("V")


class PreviewError(ValueError):
    """The message cannot be previewed as given (one line for the caller)."""


class ReadOnly(MutableMapping[str, V]):
    """A store seen through a window: lookups pass, any write is a bug and raises."""

    def __init__(self, base: Mapping[str, V]) -> None:
        self._base = base

    def __getitem__(self, key: str) -> V:
        return self._base[key]

    def __setitem__(self, key: str, value: V) -> None:
        raise TypeError("preview must not change state")

    def __delitem__(self, key: str) -> None:
        raise TypeError("preview must not change state")

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


def read_only(stores: Stores) -> Stores:
    """Every store behind a window: a preview sees all the worker sees (the numbers other messages took
    and the upstream numbers used too, or it would miss a duplicate the worker refuses)."""
    return Stores.over(lambda store: ReadOnly(store.of(stores)))


def preview_pipeline(
    rules: RuleBook | RuleVersions,
    stores: Stores,
    *,
    topics: Topics | None = None,
    partitions: int = 1,
    validators: Validators | None = None,
) -> Pipeline:
    """`partitions`: how many partitions the order topics have, so that the credit note series is the
    one the worker would use ("<store>-<partition of the order key>")."""
    return Pipeline(
        rules, stores=read_only(stores), topics=topics, validators=validators, partitions=partitions
    )


def message_record(
    document: Any, topics: Topics, *, message: str | None = None, at: datetime | None = None
) -> InboundRecord:
    """A record for a JSON-RPC envelope, or for bare params of the message named `message`."""
    if isinstance(document, dict) and isinstance(document.get("method"), str):
        name = document["method"]
    elif message is not None:
        name = message
    else:
        raise PreviewError("bare params: name the message (--message / ?message=)")
    if name not in names.INBOUND:
        raise PreviewError(f"{name!r} is not an inbound message")
    return InboundRecord(
        topics.topic(name), dumps(document).encode("utf-8"), timestamp=at or datetime.now(UTC)
    )


def preview(pipeline: Pipeline, record: InboundRecord) -> dict[str, Any]:
    key = pipeline.key_for(record)
    before = pipeline.stores.orders.get(key) if key else None
    issued = set(before.credit_notes) if before is not None else set()
    processed = pipeline.process(record)
    result = {"order_key": key} | explain(processed, pipeline.topics, _sent_number(record), issued)
    # An exchange's child order: what its own create would do (the new SKUs reserved) is shown too.
    for follow_up in processed.follow_ups:
        result["follow_ups"].append({"message_name": follow_up.topic, "order_key": follow_up.key})
        result["restock"] += _movements(pipeline.process(follow_up))
    order = pipeline.stores.orders.get(key) if key else None
    # The rule set the message is decided by (its outputs name it too): the channel's at its time.
    channel = (
        order.sales_channel if order is not None else (key.split(":", 1)[0] if key and ":" in key else None)
    )
    version = pipeline.rules.version_for(channel, record.timestamp or pipeline.clock)
    result["rules_version"] = version.label
    if order is not None:
        # Each line's return deadline under the channel's window, as `orders show` gives it.
        lines = order_view(order, rules=version.rules)["lines"]
        result["return_deadlines"] = {str(line["line_number"]): line["return_deadline"] for line in lines}
    return result


def _movements(processed: Processed) -> list[dict[str, Any]]:
    return [
        {
            "source_id": m.source_id,
            "sku": m.sku,
            "reason": m.reason,
            "on_hand_delta": m.on_hand_delta,
            "reserved_delta": m.reserved_delta,
        }
        for m in processed.movements
    ]


def _sent_number(record: InboundRecord) -> str | None:
    try:
        document = loads(record.value)
    except ValueError:
        return None
    params = document.get("params", document) if isinstance(document, dict) else {}
    refund = params.get("refund") if isinstance(params, dict) else None
    number = refund.get("credit_note_number") if isinstance(refund, dict) else None
    return str(number) if number is not None else None


def explain(
    processed: Processed,
    topics: Topics,
    upstream_number: str | None = None,
    issued: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """`issued`: the numbers of the order's notes before the message. Such a note published again was
    released (no new money: it counts 0 in the totals) or cancelled (its amounts count negative)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for out in processed.records:
        name = out.headers.get("message_name", "")
        if out.topic == topics.dlq:
            continue
        by_name.setdefault(name, []).append(loads(out.value)["params"])
    notes = []
    gross = net = tax = ZERO
    per_tax: dict[tuple[str, str], Decimal] = {}
    explanations: list[dict[str, Any]] = []
    for params in by_name.get(names.REFUND_UPDATED, []):
        note = dict(params["refund"])
        known = note["credit_note_number"] in issued
        note["credit_note_number_provisional"] = not known and note["credit_note_number"] != upstream_number
        notes.append(note)
        sign = Decimal(-1 if note["status"]["code"] == "CANCELLED" else 0) if known else Decimal(1)
        gross += sign * Decimal(note["totals"]["cost_gross"])
        net += sign * Decimal(note["totals"]["cost_net"])
        tax += sign * Decimal(note["totals"]["cost_vat"])
        for line in note["lines"]:
            explanations.append(
                {"credit_note_number": note["credit_note_number"], "order_line": line["order_line"]}
                | {"explanation": line["explanation"]}
            )
            for payment in line["payments"]:
                for part in payment["details"]["vat_detail"]:
                    slot = (part["type"], part["rate"])
                    per_tax[slot] = per_tax.get(slot, ZERO) + sign * Decimal(part["amount"])
    result: dict[str, Any] = {
        "status": processed.status,
        "detail": processed.detail,
        "message_name": processed.message_name,
        "message_id": processed.message_id,
        "credit_notes": notes,
        "totals": {"gross": str(gross), "net": str(net), "tax": str(tax)},
        "tax": [
            {"type": kind, "rate": rate, "amount": str(amount)}
            for (kind, rate), amount in sorted(per_tax.items())
        ],
        "explanations": explanations,
        "restock": _movements(processed),
        "returns": [params["return"] for params in by_name.get(names.RETURN_UPDATED, [])],
        "child_orders": [params["order"] for params in by_name.get(names.ORDER_CREATED, [])],
        "follow_ups": [],
        "rejection": None,
        "dead_letter": None,
    }
    for params in by_name.get(names.ERROR_NOTIFY, []):
        result["rejection"] = {"code": params["code"], "message": params["message"]}
    for out in processed.records:
        if out.topic == topics.dlq:
            result["dead_letter"] = {
                "error_class": out.headers.get("dlq.error.class"),
                "message": out.headers.get("dlq.error.message"),
                "path": out.headers.get("dlq.error.path"),
            }
    return result
