"""The chaos run's message log: orders with their whole post-sales life, in waves.

Kafka keeps order within a partition only, and one order's messages travel on several topics. So the log
is cut into waves of one topic each (stock snapshots, creates, line cancels, cancels, shipments,
exchanges, returns, receipts, appeasements, reshipments, upstream refunds, their credit notes' releases and
cancels); the runner publishes a wave only once
the worker has committed the one before. Within a wave, one partition is read in order, so every
series of credit note numbers (one per store and partition) comes out in the same order as `replay`
numbers it, however often a worker is killed. What is left to chance is what production leaves to
chance: where the kills land, which worker owns which partition, redeliveries, and the interleaving of
stock movements that come from different order partitions.

Also in the log: duplicates (the same record again, later in its wave, and a few creates again in a
later wave), appeasements that arrive before their order (held, then settled when the create comes),
returns that are full, partial, quantity-only or of damaged goods, orders paid with a gift card and a
card (split tender), credit notes pending release that finance releases or cancels (channel B),
exchanges (whose child orders reserve stock; on channel B they ship on a good receipt and a damaged one
cancels them), and messages the rules refuse.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from domain import names

Record = dict[str, Any]
CHANNELS = {"CHAOS-A": "SRC-A", "CHAOS-B": "SRC-B"}
SKUS = [f"SKU-{n:03d}" for n in range(30)]
START_STOCK = 1_000

# Channel A refunds on approval (returns approved at once); channel B approves on receipt, refunds
# shipping with the first return and keeps service lines: both rule paths are in the run.
RULES_TOML = """\
[defaults]
shipping_refund_rule = "onLast"
auto_approve_return = true
refund_on = "approval"
unknown_order = "reject"
unknown_order_hold_minutes = 60

[sales_channels.CHAOS-A]
default_source = "SRC-A"

[sales_channels.CHAOS-B]
default_source = "SRC-B"
shipping_refund_rule = "onFirst"
auto_approve_return = false
refund_on = "receipt"
return_service_order = true
auto_release_refund = false
# A release of a refund the rules refused waits for the reorder window before UNKNOWN_REFUND: 30 s on
# the worker's clock, but never in replay's expectation, whose log spans seconds of message time. The
# waves already publish each kind after the one before is committed, so nothing needs to wait here.
reorder_window_seconds = 0
# An exchange's child order ships once the goods are back restockable; damaged ones cancel it.
exchange_ships = "on_receipt"
"""

WAVES = [
    ("stock", names.STOCK_UPDATE),
    ("early", names.APPEASEMENT_CREATE),
    ("create", names.ORDER_CREATE),
    ("cancel_line", names.ORDER_CANCEL_LINE),
    ("cancel", names.ORDER_CANCEL),
    ("ship", names.SHIPMENT_DONE),
    ("exchange", names.EXCHANGE_CREATE),
    ("return", names.RETURN_AUTHORIZE),
    ("receive", names.RETURN_RECEIVED),
    ("appease", names.APPEASEMENT_CREATE),
    ("reship", names.RESHIPMENT_CREATE),
    ("refund", names.REFUND_CREATE),
    ("release", names.REFUND_RELEASE),
    ("cancel_note", names.REFUND_CANCEL),
    ("recount", names.STOCK_UPDATE),
    ("late_duplicates", names.ORDER_CREATE),
]


@dataclass
class Wave:
    name: str
    topic: str
    records: list[Record] = field(default_factory=list)


@dataclass
class Line:
    number: int
    sku: str
    quantity: int
    gross: Decimal


def _message(name: str, message_id: str, params: dict[str, Any]) -> Record:
    return {"topic": name, "value": {"jsonrpc": "2.0", "id": message_id, "method": name, "params": params}}


def _money(rng: random.Random) -> tuple[Decimal, Decimal, Decimal]:
    net = Decimal(rng.randint(100, 40_000)) / 100
    rate = Decimal(rng.choice([0, 10, 21]))
    tax = (net * rate / 100).quantize(Decimal("0.01"))
    return net, rate, tax


def _order(rng: random.Random, channel: str, order_id: str) -> tuple[dict[str, Any], list[Line]]:
    lines: list[dict[str, Any]] = []
    kept: list[Line] = []
    total = Decimal(0)
    physical = rng.randint(1, 3)
    for number in range(1, physical + 2):
        shipping = number == physical + 1
        if shipping and rng.random() < 0.5:
            break
        net, rate, tax = _money(rng)
        quantity = 1 if shipping else rng.randint(1, 3)
        sku = "SHIP-STD" if shipping else rng.choice(SKUS)
        lines.append(
            {
                "id": f"L{number}",
                "line_number": number,
                "product_type": "SHIPPING" if shipping else "PHYSICAL",
                "sku": sku,
                "quantity": quantity,
                "shipping_address_reference": "A1",
                "payment_reference": "PAY1",
                "amount": {
                    "net_amount": str(net),
                    "gross_amount": str(net + tax),
                    "tax_amount": str(tax),
                    "tax_rate": str(rate),
                    "taxes": [{"type": "VAT", "amount": str(tax), "rate": str(rate)}],
                    "currency": "EUR",
                },
            }
        )
        total += net + tax
        if not shipping:
            kept.append(Line(number, sku, quantity, net + tax))
    params: dict[str, Any] = {
        "order": {
            "id": order_id,
            "store": channel,
            "ip": "203.0.113.9",
            "vat_country": "NL",
            "origin": "WEB",
            "origin_date": "2026-11-01T09:00:00Z",
            "customer": {"id": f"C-{order_id}"},
            "addresses": [
                {
                    "reference": "A1",
                    "address_type": "billing",
                    "first_name": "Sam",
                    "last_name": "Chaos",
                    "address1": "1 Test Lane",
                    "city": "Utrecht",
                    "country_code": "NL",
                    "email": "sam.chaos@example.com",
                }
            ],
            "payments": [
                {
                    "reference": "PAY1",
                    "currency": "EUR",
                    "transactions": [
                        {
                            "payment_method": "CARD",
                            "amount": str(total),
                            "billing_address_reference": "A1",
                            "gateway_information": {"gateway_id": "g", "account": "a", "transaction_id": "t"},
                        }
                    ],
                }
            ],
            "lines": lines,
        }
    }
    if rng.random() < 0.3:  # split tender: a gift card paid part (the first line's), the card the rest
        gift = min(total, Decimal(rng.randint(100, 20_000)) / 100)
        payments = params["order"]["payments"]
        card = payments[0]["transactions"][0]
        card["amount"] = str(total - gift)
        payments.append(
            {
                "reference": "GC1",
                "currency": "EUR",
                "transactions": [{**card, "payment_method": "GIFT_CARD", "amount": str(gift)}],
            }
        )
        lines[0]["payment_reference"] = "GC1"
    return params, kept


def _return_line(line: Line, quantity: int | None, condition: str) -> dict[str, Any]:
    return {
        "id": f"L{line.number}",
        "line_number": line.number,
        "sku": line.sku,
        "quantity": quantity,
        "reason": "CHAOS",
        "reason_description": "chaos run",
        "condition": condition,
    }


def _story(rng: random.Random, n: int, waves: dict[str, Wave]) -> None:
    """One order's messages, each put in the wave of its kind."""
    channel = rng.choice(sorted(CHANNELS))
    order_id = f"CH{n:06d}"
    ids = f"{channel}-{order_id}"
    params, lines = _order(rng, channel, order_id)
    first = lines[0]

    def add(wave: str, kind: str, body: dict[str, Any]) -> None:
        waves[wave].records.append(_message(waves[wave].topic, f"{ids}-{kind}", body))

    def appeasement(percent: int) -> dict[str, Any]:
        amount = (first.gross * percent / 100).quantize(Decimal("0.01"))
        line = {"line_number": first.number, "amount": str(amount), "reason": "R", "reason_description": "d"}
        return {
            "appeasement": {"sales_channel_id": channel, "order_id": order_id, "user": "u", "lines": [line]}
        }

    if rng.random() < 0.03:  # post-sales before its order: held, settled when the create arrives
        add("early", "early-appeasement", appeasement(5))
    add("create", "create", params)
    roll = rng.random()
    if roll < 0.06:
        add("cancel", "cancel", {"order_id": order_id, "sales_channel_id": channel})
        return
    cancelled = 0
    if roll < 0.14 and first.quantity > 1:
        cancelled = 1
        body = {"order_id": order_id, "sales_channel_id": channel, "line_number": first.number}
        add("cancel_line", "cancel-line", {**body, "reason": "r", "quantity": 1})
    if rng.random() < 0.08:
        return  # never shipped
    partial = rng.random() < 0.3
    shipped = [first] if partial else lines
    units = {line.number: line.quantity - (cancelled if line is first else 0) for line in shipped}
    shipment = {
        "store_id": channel,
        "order_id": order_id,
        "source_id": CHANNELS[channel],
        "method": "std",
        "packages": [],
        "items": [
            {"order_line_id": f"L{number}", "order_line_number": number, "quantity": quantity}
            for number, quantity in units.items()
        ],
    }
    add("ship", "ship", {"shipment": shipment})
    if rng.random() < 0.08:  # the first line exchanged for another SKU instead of returned
        swap = {"id": f"L{first.number}", "line_number": first.number, "new_sku": rng.choice(SKUS)}
        exchange = {"sales_channel_id": channel, "order_id": order_id, "user": "u", "lines": [swap]}
        if rng.random() < 0.5:
            exchange["new_order_id"] = f"{order_id}-EX"
        add("exchange", "exchange", {"exchange": exchange})
        if rng.random() < 0.7:
            back = _return_line(first, None, rng.choice(["GOOD", "GOOD", "DAMAGED"]))
            where = {"sales_channel_id": channel, "order_id": order_id, "source_id": "RET"}
            received = {**where, "user": "desk", "rma": f"{channel}-{order_id}-R01", "lines": [back]}
            add("receive", "exchange-received", {"return": received})
    elif rng.random() < 0.45:
        kind = rng.choice(["full", "partial", "quantity-only", "damaged"])
        condition = "DAMAGED" if kind == "damaged" else "GOOD"
        returned = [_return_line(first, 1 if kind == "partial" else None, condition)]
        if kind == "full":
            returned += [_return_line(line, None, condition) for line in shipped[1:]]
        header: dict[str, Any] = {"sales_channel_id": channel, "order_id": order_id, "source_id": "RET"}
        if kind == "quantity-only":
            header["refund_mode"] = "QUANTITY_ONLY"
        add("return", "return", {"return": {**header, "user": "u", "lines": returned}})
        if rng.random() < 0.6:
            received = {**header, "user": "desk", "rma": f"{channel}-{order_id}-R01", "lines": returned}
            add("receive", "received", {"return": received})
    if rng.random() < 0.25:  # sometimes more than is left: the rules refuse it (OVER_REFUND)
        add("appease", "appeasement", appeasement(rng.choice([10, 30, 120])))
    if rng.random() < 0.08:
        reship = {
            "sales_channel_id": channel,
            "order_id": order_id,
            "new_order_id": f"{order_id}-RS",
            "new_shipping_method": "std",
            "lines": [{"line_number": first.number, "reason": "LOST", "reason_description": "lost"}],
        }
        add("reship", "reship", {"reshipment": reship, "user": "u"})
    if rng.random() < 0.08:
        target = shipped[-1]
        amount = (target.gross / target.quantity).quantize(Decimal("0.01"))
        refund_line = {
            "order_line": str(target.number),
            "quantity": 1,
            "restock": rng.random() < 0.5,
            "reason_description": "upstream",
            "payments": [{"ref": "PAY1", "details": {"cost_gross": str(amount)}}],
        }
        refund = {
            "client": "shop",
            "order_id": order_id,
            "store_id": channel,
            "status": {"date": "2026-11-05"},
            "refund_mode": rng.choice(["QUANTITY_AND_AMOUNT", "QUANTITY_ONLY", "AMOUNT_ONLY"]),
            "lines": [refund_line],
        }
        if channel == "CHAOS-B":  # notes wait for release there: finance releases or cancels this one
            number = f"UP-{order_id}"
            refund["credit_note_number"] = number
            settle = {"sales_channel_id": channel, "order_id": order_id, "credit_note_number": number}
            if rng.random() < 0.6:
                add("release", "release", {**settle, "user": "finance", "offline": rng.random() < 0.5})
            else:
                add("cancel_note", "cancel-note", {**settle, "user": "finance"})
        add("refund", "upstream-refund", {"refund": refund})


def _snapshot(message_id: str, source: str, mode: str, stock: dict[str, int]) -> Record:
    body = {
        "source_id": source,
        "mode": mode,
        "created_on": "2026-11-01T08:00:00Z",
        "stock": [{"sku": sku, "quantity": quantity} for sku, quantity in stock.items()],
    }
    return _message(names.STOCK_UPDATE, message_id, {"snapshot": body})


def chaos_waves(messages: int, seed: int) -> list[Wave]:
    """About `messages` records (whole order stories, so a few more), duplicates included."""
    rng = random.Random(seed)
    waves = {name: Wave(name, topic) for name, topic in WAVES}
    for source in sorted(set(CHANNELS.values())):
        waves["stock"].records.append(
            _snapshot(f"snapshot-{source}", source, "FULL", dict.fromkeys(SKUS, START_STOCK))
        )
        recount = {sku: START_STOCK + rng.randint(-50, 50) for sku in rng.sample(SKUS, 5)}
        waves["recount"].records.append(_snapshot(f"recount-{source}", source, "DELTA", recount))
    n = 0
    while sum(len(w.records) for w in waves.values()) * 1.03 < messages:
        _story(rng, n, waves)
        n += 1
    creates = waves["create"].records
    waves["late_duplicates"].records = [dict(r) for r in rng.sample(creates, max(1, len(creates) // 200))]
    for wave in waves.values():
        if wave.name == "late_duplicates":
            continue
        records = wave.records
        for _ in range(round(len(records) * 0.03)):  # the same record again, later in its wave
            at = rng.randrange(len(records))
            records.insert(rng.randint(at + 1, len(records)), dict(records[at]))
    return [wave for wave in waves.values() if wave.records]


# Order numbers of the spare traffic: far above any log's own (a story per number, from 0 up).
SPARE_FIRST_ORDER = 900_000


def spare_waves(seed: int, rounds: int, orders: int = 4) -> list[Wave]:
    """Traffic a crash-point run publishes after the log's own while a point it armed has not been
    reached yet (a point taken the N-th time needs N batches in one worker life, and how many batches
    a wave makes depends on how fast the worker takes it): `rounds` pairs of waves, the creates of
    `orders` fresh orders then their shipments. Every prefix of the list is a log replay can take
    whole, so the run appends to its log exactly the spare waves it published."""
    rng = random.Random(f"spare-{seed}")
    out: list[Wave] = []
    for number in range(rounds):
        waves = {name: Wave(name, topic) for name, topic in WAVES}
        for n in range(orders):
            _story(rng, SPARE_FIRST_ORDER + number * orders + n, waves)
        for kind in ("create", "ship"):
            if waves[kind].records:
                out.append(Wave(f"spare_{kind}_{number + 1}", waves[kind].topic, waves[kind].records))
    return out
