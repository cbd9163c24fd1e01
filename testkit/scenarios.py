"""Ordinary post-sales stories as an upstream would write them, for the real-producer run.

    .venv/bin/python bench/scenarios.py --out /tmp/scenarios.jsonl --rules-out /tmp/rules.toml

Each scenario is one customer's story (order, stock, shipment, returns, refunds …) as a list of
records in the order the upstream systems write them, each a JSON-RPC envelope with its own message
id, and the key a well-behaved producer would give it. The payloads are built on the example log
(`examples/message-log.jsonl`, seed 000's Octopus order) and the seed 004 reshipment
(`tests/seeds.py`). Every id a scenario makes (order ids, SKUs, sources, message ids) carries the
scenario's token, so that the outputs of many scenarios on one worker can be told apart and no
scenario's stock touches another's.

Three behaviours of the rules file (`RULES`): OCTO (shipping refunded with the last return, refunds
at approval, auto approval), ST1 (shipping with the first return, approval only on receipt, credit
notes pending release), and every other channel, here WEB (shipping never refunded, auto approval,
refund on receipt).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from domain import names
from tests.mom_examples import documented_reshipment
from workers.engine.codec import dumps, loads

ROOT = Path(__file__).resolve().parents[1]

EXAMPLE_LOG = ROOT / "examples" / "message-log.jsonl"

RULES = """\
# Two named channels with different rules; any other channel (WEB in the scenarios) takes [defaults].
[defaults]
shipping_refund_rule = "never"
auto_approve_return = true
refund_on = "receipt"
auto_release_refund = true
unknown_order = "reject"
unknown_order_hold_minutes = 60
default_source = "WH-MAIN"

[sales_channels.OCTO]
default_source = "OCTO-STORE"
shipping_refund_rule = "onLast"
auto_approve_return = true
refund_on = "approval"
integration_date = 2026-01-01

[sales_channels.ST1]
default_source = "SOU1"
return_service_order = true
return_service_line = true
shipping_refund_rule = "onFirst"
auto_approve_return = false
refund_on = "approval"
auto_release_refund = false

# A channel with a return window: its refunds decided upstream pass over the window and say so.
[sales_channels.WINDOW]
return_window_days = 30

# A channel whose exchanges ship once the goods are back restockable.
[sales_channels.SWAP]
exchange_ships = "on_receipt"
"""

Json = dict[str, Any]

# Which step a record is, for the variant that writes a shipment after the return it enables.
SHIPMENT = "shipment"
DEPENDS_ON_SHIPMENT = "after-shipment"


@dataclass(frozen=True)
class Step:
    name: str  # message name, also the topic (the worker's default)
    key: str  # what a well-behaved producer would key it with
    value: Json  # JSON-RPC envelope
    role: str = ""

    @property
    def message_id(self) -> str:
        return str(self.value["id"])


@dataclass
class Scenario:
    name: str
    token: str
    steps: list[Step] = field(default_factory=list)

    def step(self, name: str, key: str, params: Json, what: str, role: str = "") -> None:
        message_id = f"{self.token}-{len(self.steps) + 1:02d}-{what}"
        envelope = {"jsonrpc": "2.0", "id": message_id, "method": name, "params": params}
        self.steps.append(Step(name, key, envelope, role))


def _example(index: int) -> Json:
    """The params of the example log's line `index` (0-based), decoded with exact decimals."""
    line = EXAMPLE_LOG.read_text("utf-8").splitlines()[index]
    value: Json = loads(line)["value"]
    params: Json = value["params"]
    return params


# -- payload builders ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    net: str  # 10 % tax on top; nets in tenths keep every figure exact to the cent
    kind: str = "PHYSICAL"
    source: str | None = None
    parent: int | None = None


def order(channel: str, order_id: str, lines: list[Line], currency: str = "AUD") -> Json:
    """An order shaped like the example log's order 1234 (seed 000), with these lines."""
    template = _example(1)["order"]
    built: list[Json] = []
    total = Decimal(0)
    for number, line in enumerate(lines, start=1):
        net = Decimal(line.net)
        tax = net / 10
        gross = net + tax
        total += gross
        entry: Json = {
            "id": f"L{number}",
            "line_number": number,
            "product_type": line.kind,
            "sku": line.sku,
            "product_name": line.sku.split("-")[0],
            "quantity": line.quantity,
            "shipping_address_reference": "B1",
            "payment_reference": "PAY",
            "amount": {
                "net_amount": net,
                "gross_amount": gross,
                "tax_amount": tax,
                "tax_rate": 10,
                "taxes": [{"type": "VAT", "amount": tax, "rate": 10}],
                "currency": currency,
            },
        }
        if line.source is not None:
            entry["source_location"] = line.source
        if line.parent is not None:
            entry["parent_line_number"] = line.parent
        built.append(entry)
    result = copy.deepcopy(template)
    result.update(
        {
            "id": order_id,
            "store": channel,
            "origin_date": "2026-11-20T09:00:00Z",
            "customer": {"id": f"CUST-{order_id}", "type": "guest"},
            "lines": built,
        }
    )
    payment = result["payments"][0]
    payment["reference"] = f"PAY-{order_id}"
    payment["currency"] = currency
    payment["transactions"][0]["amount"] = total
    payment["transactions"][0]["gateway_information"]["transaction_id"] = f"ch_{order_id}"
    return {"order": result}


def shipment(channel: str, order_id: str, source: str, items: list[tuple[int, int]]) -> Json:
    return {
        "shipment": {
            "store_id": channel,
            "order_id": order_id,
            "source_id": source,
            "method": "standard",
            "items": [
                {"order_line_id": f"L{line}", "order_line_number": line, "quantity": quantity}
                for line, quantity in items
            ],
            "packages": [{"id": "P1", "items": [line for line, _ in items]}],
        }
    }


def ret(
    channel: str,
    order_id: str,
    lines: list[tuple[int, int | None, str | None]],
    skus: dict[int, str],
    source: str,
    rma: str | None = None,
) -> Json:
    """A return (authorize / request / received): (line number, quantity or all, condition)."""
    body: Json = {"sales_channel_id": channel, "order_id": order_id, "source_id": source}
    body["user"] = "returns-desk"
    if rma is not None:
        body["rma"] = rma
    body["lines"] = []
    for line, quantity, condition in lines:
        entry: Json = {"id": f"L{line}", "line_number": line, "sku": skus[line], "reason": "CHANGED_MIND"}
        entry["reason_description"] = "Customer changed mind"
        if quantity is not None:
            entry["quantity"] = quantity
        if condition is not None:
            entry["condition"] = condition
        body["lines"].append(entry)
    return {"return": body}


def appeasement(channel: str, order_id: str, line: int, amount: str) -> Json:
    return {
        "appeasement": {
            "sales_channel_id": channel,
            "order_id": order_id,
            "user": "cs-agent-3",
            "lines": [
                {"line_number": line, "amount": amount, "reason": "GOODWILL", "reason_description": "Sorry"}
            ],
        }
    }


def upstream_refund(
    channel: str,
    order_id: str,
    lines: list[tuple[int, int | None, str, bool]],
    mode: str | None,
    number: str | None,
    client: str = "shopify",
) -> Json:
    """A refund decided upstream: (line, quantity or remaining, gross, restock)."""
    body: Json = {
        "client": client,
        "order_id": order_id,
        "store_id": channel,
        "sales_channel_id": channel,
        "status": {"date": "2026-11-21T10:00:00Z"},
        "lines": [],
    }
    if number is not None:
        body["credit_note_number"] = number
    if mode is not None:
        body["refund_mode"] = mode
    for line, quantity, gross, restock in lines:
        entry: Json = {
            "order_line": str(line),
            "reason_description": "Refunded upstream",
            "restock": restock,
            "payments": [{"ref": f"PAY-{order_id}", "details": {"cost_gross": gross}}],
        }
        if quantity is not None:
            entry["quantity"] = quantity
        body["lines"].append(entry)
    return {"refund": body}


def snapshot(source: str, mode: str, stock: list[tuple[str, int]]) -> Json:
    return {
        "snapshot": {
            "source_id": source,
            "mode": mode,
            "created_on": "2026-11-20T08:00:00Z",
            "stock": [{"sku": sku, "quantity": quantity} for sku, quantity in stock],
        }
    }


# -- the stories ------------------------------------------------------------------------------------


class Story:
    """One scenario being written: its ids carry the token."""

    DEFAULT_SOURCES: ClassVar[dict[str, str]] = {"OCTO": "OCTO-STORE", "ST1": "SOU1"}

    def __init__(self, scenario: Scenario, channel: str) -> None:
        self.s = scenario
        self.channel = channel
        self.skus: dict[int, str] = {}
        self.home = self.DEFAULT_SOURCES.get(channel, "WH-MAIN")
        self.order_id = f"{scenario.token}-1001"
        self.key = f"{channel}:{self.order_id}"

    def sku(self, base: str) -> str:
        return f"{base}-{self.s.token}"

    def source(self, base: str) -> str:
        return f"{base}-{self.s.token}"

    def create(self, lines: list[Line], currency: str = "AUD") -> None:
        params = order(self.channel, self.order_id, lines, currency)
        self.skus = {number: line.sku for number, line in enumerate(lines, start=1)}
        self.home = next((line.source for line in lines if line.source), self.home)
        self.s.step(names.ORDER_CREATE, self.key, params, "create")

    def ship(self, source: str, items: list[tuple[int, int]], shipped: str | None = None) -> None:
        params = shipment(self.channel, self.order_id, source, items)
        if shipped is not None:
            params["shipment"]["shipment_date"] = shipped
        self.s.step(names.SHIPMENT_DONE, self.key, params, "ship", SHIPMENT)

    def authorize(self, lines: list[tuple[int, int | None, str | None]], source: str | None = None) -> None:
        params = ret(self.channel, self.order_id, lines, self.skus, source or self.home)
        self.s.step(names.RETURN_AUTHORIZE, self.key, params, "authorize", DEPENDS_ON_SHIPMENT)

    def request(self, lines: list[tuple[int, int | None, str | None]], source: str | None = None) -> None:
        params = ret(self.channel, self.order_id, lines, self.skus, source or self.home)
        self.s.step(names.RETURN_REQUEST, self.key, params, "request", DEPENDS_ON_SHIPMENT)

    def received(
        self, lines: list[tuple[int, int | None, str | None]], rma: str | None, source: str | None = None
    ) -> None:
        params = ret(self.channel, self.order_id, lines, self.skus, source or self.home, rma)
        self.s.step(names.RETURN_RECEIVED, self.key, params, "received", DEPENDS_ON_SHIPMENT)

    def update_return(self, rma: str, **fields: Any) -> None:
        params = {
            "sales_channel_id": self.channel,
            "order_id": self.order_id,
            "source_id": self.home,
            "rma": rma,
        }
        self.s.step(
            names.RETURN_UPDATE, self.key, {"return": {**params, **fields}}, "update", DEPENDS_ON_SHIPMENT
        )

    def exchange(self, lines: list[tuple[int, str]], new_order_id: str | None = None) -> None:
        """An exchange of whole lines for new SKUs: (line number, new SKU) each."""
        swaps = [{"id": f"L{n}", "line_number": n, "new_sku": sku, "reason": "SIZE"} for n, sku in lines]
        params: Json = {"sales_channel_id": self.channel, "order_id": self.order_id, "lines": swaps}
        if new_order_id is not None:
            params["new_order_id"] = new_order_id
        self.s.step(names.EXCHANGE_CREATE, self.key, {"exchange": params}, "exchange", DEPENDS_ON_SHIPMENT)

    def rma(self, number: int) -> str:
        return f"{self.channel}-{self.order_id}-R{number:02d}"

    def appease(self, line: int, amount: str) -> None:
        params = appeasement(self.channel, self.order_id, line, amount)
        self.s.step(names.APPEASEMENT_CREATE, self.key, params, "appease")

    def refund(
        self, lines: list[tuple[int, int | None, str, bool]], mode: str | None, number: str | None = None
    ) -> None:
        params = upstream_refund(self.channel, self.order_id, lines, mode, number)
        self.s.step(names.REFUND_CREATE, self.key, params, "refund", DEPENDS_ON_SHIPMENT)

    def settle_note(self, name: str, number: str, **extra: Any) -> None:
        """A credit note's release or cancel by finance, by its number."""
        params = {"sales_channel_id": self.channel, "order_id": self.order_id, "credit_note_number": number}
        self.s.step(name, self.key, {**params, "user": "finance-1", **extra}, name.rsplit(".", 1)[-1])

    def stock(self, source: str, mode: str, stock: list[tuple[str, int]]) -> None:
        self.s.step(names.STOCK_UPDATE, source, snapshot(source, mode, stock), "stock")

    def cancel(self) -> None:
        params = {"order_id": self.order_id, "sales_channel_id": self.channel, "reason": "CUSTOMER_REQUEST"}
        self.s.step(names.ORDER_CANCEL, self.key, params, "cancel")

    def cancel_line(self, line: int, quantity: int | None) -> None:
        params: Json = {
            "order_id": self.order_id,
            "sales_channel_id": self.channel,
            "line_number": line,
            "reason": "OUT_OF_STOCK",
        }
        if quantity is not None:
            params["quantity"] = quantity
        self.s.step(names.ORDER_CANCEL_LINE, self.key, params, "cancel-line")


def seed_000_octopus(s: Scenario) -> None:
    """The example log's Octopus story (seed 000) as written: FULL stock, order, shipment, a return
    refunded at approval, its receipt, the Shopify refund with its own credit note number, and an
    appeasement; ids, SKUs and the source carry the scenario's token."""
    st = Story(s, "OCTO")
    source = st.source("OCTO-STORE")
    renames = {'"1234"': f'"{st.order_id}"', "OCTO-STORE": source, "SHOP-RF-1001": f"SHOP-RF-{s.token}"}
    renames.update({f'"{sku}"': f'"{st.sku(sku)}"' for sku in ("WE234", "MS232", "CD785")})
    renames.update({"PAY-1234": f"PAY-{st.order_id}", "OCTO-1234-R01": st.rma(1)})

    def renamed(params: Json) -> Json:
        text = dumps(params)
        for old, new in renames.items():
            text = text.replace(old, new)
        result: Json = loads(text)
        return result

    st.s.step(names.STOCK_UPDATE, source, renamed(_example(0)), "stock")
    created = renamed(_example(1))
    for line in created["order"]["lines"]:
        if line["product_type"] == "PHYSICAL":
            line["source_location"] = source
    st.s.step(names.ORDER_CREATE, st.key, created, "create")
    st.s.step(names.SHIPMENT_DONE, st.key, renamed(_example(2)), "ship", SHIPMENT)
    st.s.step(names.RETURN_AUTHORIZE, st.key, renamed(_example(3)), "authorize", DEPENDS_ON_SHIPMENT)
    st.s.step(names.RETURN_RECEIVED, st.key, renamed(_example(4)), "received", DEPENDS_ON_SHIPMENT)
    st.s.step(names.REFUND_CREATE, st.key, renamed(_example(6)), "refund", DEPENDS_ON_SHIPMENT)
    st.s.step(names.APPEASEMENT_CREATE, st.key, renamed(_example(7)), "appease")


def _two_items_and_shipping(st: Story, source: str | None = None) -> None:
    st.create(
        [
            Line(st.sku("BAG"), 1, "75.0", source=source),
            Line(st.sku("WATCH"), 1, "120.0", source=source),
            Line("STANDARD", 1, "10.0", kind="SHIPPING"),
        ]
    )


def shipping_on_last(s: Scenario) -> None:
    st = Story(s, "OCTO")
    _two_items_and_shipping(st)
    st.ship("OCTO-STORE", [(1, 1), (2, 1)])
    st.authorize([(1, None, "GOOD")])
    st.authorize([(2, None, "GOOD")])


def shipping_on_first(s: Scenario) -> None:
    st = Story(s, "ST1")
    _two_items_and_shipping(st)
    st.ship("SOU1", [(1, 1), (2, 1)])
    st.request([(1, None, None)])
    st.received([(1, None, "GOOD")], st.rma(1))
    st.request([(2, None, None)])
    st.received([(2, None, "GOOD")], st.rma(2))


def shipping_never(s: Scenario) -> None:
    st = Story(s, "WEB")
    _two_items_and_shipping(st)
    st.ship("WH-MAIN", [(1, 1), (2, 1)])
    st.authorize([(1, None, None), (2, None, None)])
    st.received([(1, None, "GOOD"), (2, None, "GOOD")], st.rma(1))


def multi_source(s: Scenario) -> None:
    st = Story(s, "OCTO")
    north, south = st.source("NORTH"), st.source("SOUTH")
    st.create(
        [
            Line(st.sku("BAG"), 1, "75.0", source=north),
            Line(st.sku("WATCH"), 2, "240.0", source=south),
            Line("STANDARD", 1, "10.0", kind="SHIPPING"),
        ]
    )
    st.ship(north, [(1, 1)])
    st.ship(south, [(2, 2)])
    st.authorize([(2, 1, "GOOD")], source=south)


def ships_from_another_source(s: Scenario) -> None:
    st = Story(s, "WEB")
    north, south = st.source("NORTH"), st.source("SOUTH")
    st.create([Line(st.sku("LAMP"), 2, "50.0", source=north)])
    st.ship(south, [(1, 2)])
    st.authorize([(1, 1, None)], source=north)
    st.received([(1, 1, "GOOD")], st.rma(1), source=north)


def approve_on_receipt(s: Scenario) -> None:
    """ST1 approves only on receipt; refunds follow approval, so money moves at receipt."""
    st = Story(s, "ST1")
    st.create(
        [
            Line(st.sku("DUFFLE"), 1, "34.0", source="SOU1"),
            Line(st.sku("ITEM"), 1, "32.5", source="SOU1"),
            Line(st.sku("GIFTWRAP"), 1, "5.0", kind="SERVICE", parent=2),
            Line("STANDARD", 1, "7.0", kind="SHIPPING"),
        ],
        currency="USD",
    )
    st.ship("SOU1", [(1, 1), (2, 1)])
    st.request([(2, None, None)])
    st.received([(2, None, "GOOD")], st.rma(1))


def refund_on_receipt(s: Scenario) -> None:
    """WEB refunds on receipt, with the condition reported there (one restocked, one written off)."""
    st = Story(s, "WEB")
    st.create([Line(st.sku("MUG"), 2, "20.0"), Line(st.sku("PLATE"), 1, "30.0")])
    st.ship("WH-MAIN", [(1, 2), (2, 1)])
    st.authorize([(1, 2, None), (2, None, None)])
    st.received([(1, 2, "GOOD"), (2, None, "DAMAGED")], st.rma(1))


def partial_returns(s: Scenario) -> None:
    """1+1+1 units of a three-unit line: 3.33, 3.34, 3.33 of tax-rounded money."""
    st = Story(s, "OCTO")
    st.create([Line(st.sku("SOCKS"), 3, "9.1")])
    st.ship("OCTO-STORE", [(1, 3)])
    for _ in range(3):
        st.authorize([(1, 1, "GOOD")])


def blind_return(s: Scenario) -> None:
    st = Story(s, "WEB")
    st.create([Line(st.sku("HAT"), 1, "40.0"), Line(st.sku("SCARF"), 1, "25.0")])
    st.ship("WH-MAIN", [(1, 1), (2, 1)])
    st.received([(2, None, "GOOD")], None)


def appeasements(s: Scenario) -> None:
    st = Story(s, "OCTO")
    st.create([Line(st.sku("DESK"), 1, "300.0"), Line("STANDARD", 1, "10.0", kind="SHIPPING")])
    st.ship("OCTO-STORE", [(1, 1)])
    st.appease(1, "15.00")
    st.appease(1, "5.50")


def _upstream_refund_after_shipment(s: Scenario, mode: str | None, restock: bool) -> None:
    st = Story(s, "OCTO")
    st.create([Line(st.sku("CHAIR"), 2, "100.0"), Line(st.sku("CUSHION"), 1, "20.0")])
    st.ship("OCTO-STORE", [(1, 2), (2, 1)])
    st.refund([(1, 1, "110.00", restock)], mode, f"SHOP-{s.token}-1")
    st.refund([(2, None, "22.00", restock)], mode, f"SHOP-{s.token}-2")


def upstream_refund_after_the_return_window(s: Scenario) -> None:
    """Shipped long before the channel's 30-day return window: a POS refund still applies, and its line
    says the window was passed over."""
    st = Story(s, "WINDOW")
    st.create([Line(st.sku("LAMP"), 1, "50.0")])
    st.ship("WH-MAIN", [(1, 1)], shipped="2025-01-15T10:00:00Z")
    st.refund([(1, 1, "55.00", True)], None, f"POS-{s.token}-1")


def upstream_quantity_and_amount(s: Scenario) -> None:
    _upstream_refund_after_shipment(s, "QUANTITY_AND_AMOUNT", True)


def upstream_quantity_only(s: Scenario) -> None:
    _upstream_refund_after_shipment(s, "QUANTITY_ONLY", True)


def upstream_amount_only(s: Scenario) -> None:
    _upstream_refund_after_shipment(s, "AMOUNT_ONLY", False)


def upstream_default_mode_pos(s: Scenario) -> None:
    """A POS refund of the whole shipped order, no mode and no credit note number (seed 001's shape)."""
    st = Story(s, "WEB")
    st.create([Line(st.sku("COFFEE"), 2, "20.0"), Line(st.sku("OMELETTE"), 1, "17.0")])
    st.ship("WH-MAIN", [(1, 2), (2, 1)])
    st.refund([(1, None, "22.00", False), (2, None, "18.70", False)], None)


def cancel_order(s: Scenario) -> None:
    st = Story(s, "OCTO")
    st.create([Line(st.sku("TENT"), 1, "200.0"), Line("STANDARD", 1, "10.0", kind="SHIPPING")])
    st.cancel()


def cancel_lines_then_ship(s: Scenario) -> None:
    st = Story(s, "WEB")
    st.create([Line(st.sku("CUP"), 3, "5.0"), Line(st.sku("SAUCER"), 1, "4.0")])
    st.cancel_line(1, 1)
    st.cancel_line(2, None)
    st.ship("WH-MAIN", [(1, 2)])
    st.authorize([(1, 1, None)])
    st.received([(1, 1, "GOOD")], st.rma(1))


def partial_shipment_then_cancel(s: Scenario) -> None:
    st = Story(s, "OCTO")
    st.create([Line(st.sku("BOOK"), 2, "15.0"), Line(st.sku("PEN"), 1, "3.0")])
    st.ship("OCTO-STORE", [(1, 1)])
    st.authorize([(1, 1, "GOOD")])
    st.cancel()


def reshipment(s: Scenario) -> None:
    """Seed 004's reshipment (its own spelling of the message name) after the shipment."""
    st = Story(s, "ST1")
    st.create(
        [Line(st.sku("DUFFLE"), 1, "34.0", source="SOU1"), Line(st.sku("ITEM"), 1, "32.5", source="SOU1")]
    )
    st.ship("SOU1", [(1, 1), (2, 1)])
    params = documented_reshipment(order_id=st.order_id, new_order_id=f"R-{s.token}")
    s.step(names.RESHIPMENT_CREATE_SEED, st.key, params, "reship", DEPENDS_ON_SHIPMENT)


def reshipment_then_return(s: Scenario) -> None:
    st = Story(s, "OCTO")
    st.create([Line(st.sku("VASE"), 1, "60.0"), Line(st.sku("BOWL"), 1, "40.0")])
    st.ship("OCTO-STORE", [(1, 1), (2, 1)])
    params = documented_reshipment(sales_channel_id="OCTO", order_id=st.order_id)
    params["reshipment"]["lines"] = [
        {"line_number": 1, "reason": "Broken", "reason_description": "In transit"}
    ]
    s.step(names.RESHIPMENT_CREATE, st.key, params, "reship", DEPENDS_ON_SHIPMENT)
    st.authorize([(2, None, "GOOD")])


def stock_full_then_return(s: Scenario) -> None:
    st = Story(s, "OCTO")
    shop = st.source("SHOP")
    st.stock(shop, "FULL", [(st.sku("KETTLE"), 4), (st.sku("TOASTER"), 2)])
    st.create([Line(st.sku("KETTLE"), 1, "45.0", source=shop)])
    st.ship(shop, [(1, 1)])
    st.authorize([(1, None, "GOOD")], source=shop)


def stock_delta_and_full(s: Scenario) -> None:
    st = Story(s, "WEB")
    depot = st.source("DEPOT")
    st.stock(depot, "FULL", [(st.sku("RUG"), 3), (st.sku("MAT"), 8)])
    st.create([Line(st.sku("RUG"), 2, "80.0", source=depot)])
    st.stock(depot, "DELTA", [(st.sku("MAT"), 6)])
    st.ship(depot, [(1, 2)])
    st.stock(depot, "FULL", [(st.sku("RUG"), 1)])


def return_cancelled_then_other_line(s: Scenario) -> None:
    """The example log's order 12346: a request cancelled, then another line authorized."""
    st = Story(s, "ST1")
    st.create(
        [Line(st.sku("DUFFLE"), 1, "34.0", source="SOU1"), Line(st.sku("ITEM"), 1, "32.5", source="SOU1")]
    )
    st.ship("SOU1", [(1, 1), (2, 1)])
    st.request([(1, None, None)])
    s.step(
        names.RETURN_CANCEL,
        st.key,
        {
            "return": {
                "sales_channel_id": "ST1",
                "order_id": st.order_id,
                "source_id": "SOU1",
                "rma": st.rma(1),
            }
        },
        "cancel-return",
    )
    st.authorize([(2, None, None)])
    st.received([(2, None, "GOOD")], st.rma(2))


def damaged_write_off(s: Scenario) -> None:
    st = Story(s, "OCTO")
    st.create([Line(st.sku("GLASS"), 2, "12.0")])
    st.ship("OCTO-STORE", [(1, 2)])
    st.authorize([(1, 2, "DAMAGED")])


def two_shipments_on_last(s: Scenario) -> None:
    st = Story(s, "OCTO")
    _two_items_and_shipping(st)
    st.ship("OCTO-STORE", [(1, 1)])
    st.ship("OCTO-STORE", [(2, 1)])
    st.authorize([(2, None, "GOOD")])
    st.authorize([(1, None, "GOOD")])


def upstream_refund_with_tax(s: Scenario) -> None:
    st = Story(s, "ST1")
    st.create([Line(st.sku("JACKET"), 1, "150.0", source="SOU1")])
    st.ship("SOU1", [(1, 1)])
    params = upstream_refund("ST1", st.order_id, [(1, None, "165.00", True)], None, f"POS-{s.token}")
    params["refund"]["lines"][0]["payments"][0]["details"].update({"cost_net": "150.00", "cost_vat": "15.00"})
    s.step(names.REFUND_CREATE, st.key, params, "refund", DEPENDS_ON_SHIPMENT)


def return_tracking(s: Scenario) -> None:
    """The carrier's tracking number and a drop-off point reach an open return before its parcel does."""
    st = Story(s, "WEB")
    st.create([Line(st.sku("TENT"), 1, "120.0")])
    st.ship("WH-MAIN", [(1, 1)])
    st.authorize([(1, None, None)])
    st.update_return(st.rma(1), return_tracking_number=f"1Z-{s.token}", return_tracking_carrier="UPS")
    st.update_return(st.rma(1), custom_attributes=[{"name": "drop_off_point", "value": "Store 12"}])
    st.received([(1, None, "GOOD")], st.rma(1))


def split_tender(s: Scenario) -> None:
    """Paid 50.00 with a gift card (the boots' line) and the rest by card: the boots' return goes back
    to the gift card as far as it paid and the rest to the card; an appeasement to the gift card first."""
    st = Story(s, "WEB")
    st.create([Line(st.sku("BOOTS"), 1, "90.0"), Line(st.sku("SOCKS"), 2, "20.0")])
    params = st.s.steps[-1].value["params"]["order"]
    card = params["payments"][0]
    gift = copy.deepcopy(card)
    gift["reference"] = f"GC-{st.order_id}"
    gift["transactions"][0].update(payment_method="giftcard", amount=Decimal("50.00"))
    card["transactions"][0]["amount"] -= Decimal("50.00")
    params["payments"].append(gift)
    params["lines"][0]["payment_reference"] = gift["reference"]
    params["lines"][1]["payment_reference"] = card["reference"]
    st.ship("WH-MAIN", [(1, 1), (2, 2)])
    st.appease(2, "5.00")
    st.authorize([(1, None, None)])
    st.received([(1, None, "GOOD")], st.rma(1))


def release_and_cancel(s: Scenario) -> None:
    """ST1 issues credit notes PENDINGRELEASE: finance releases one (paid offline) and cancels the other.
    (Nothing here depends on the cancel's give-back: producers on several topics may write a later
    message first; the unit and replay tests prove the give-back.)"""
    st = Story(s, "ST1")
    st.create([Line(st.sku("KETTLE"), 2, "80.0", source="SOU1")])
    st.ship("SOU1", [(1, 2)])
    first, second = f"POS-{s.token}-1", f"POS-{s.token}-2"
    st.refund([(1, 1, "44.00", True)], None, first)
    st.refund([(1, None, "10.00", False)], "AMOUNT_ONLY", second)
    st.settle_note(names.REFUND_RELEASE, first, offline=True)
    st.settle_note(names.REFUND_CANCEL, second)


def appeasement_then_return(s: Scenario) -> None:
    st = Story(s, "WEB")
    st.create([Line(st.sku("BOOTS"), 1, "90.0")])
    st.ship("WH-MAIN", [(1, 1)])
    st.appease(1, "10.00")
    st.authorize([(1, None, None)])
    st.received([(1, None, "GOOD")], st.rma(1))


def exchange_at_once(s: Scenario) -> None:
    """An exchange whose child order ships at once and reserves the new SKU; the goods come back."""
    st = Story(s, "WEB")
    bigger = st.sku("BOOTS-44")
    st.stock("WH-MAIN", "DELTA", [(bigger, 5)])
    st.create([Line(st.sku("BOOTS-42"), 1, "90.0"), Line(st.sku("SOCKS"), 2, "10.0")])
    st.ship("WH-MAIN", [(1, 1), (2, 2)])
    st.exchange([(1, bigger)], new_order_id=f"EX-{s.token}")
    st.received([(1, None, "GOOD")], st.rma(1))


def exchange_on_receipt(s: Scenario) -> None:
    """On SWAP the child ships when the goods are back restockable: one exchange comes back good (its
    shipment is requested), the other damaged (its child is cancelled, the reservation released)."""
    st = Story(s, "SWAP")
    st.create([Line(st.sku("SHIRT-M"), 1, "40.0"), Line(st.sku("SHIRT-S"), 1, "40.0")])
    st.ship("WH-MAIN", [(1, 1), (2, 1)])
    st.exchange([(1, st.sku("SHIRT-L"))])
    st.exchange([(2, st.sku("SHIRT-XS"))])
    st.received([(1, None, "GOOD")], st.rma(1))
    st.received([(2, None, "DAMAGED")], st.rma(2))


STORIES: dict[str, Callable[[Scenario], None]] = {
    "seed-000-octopus": seed_000_octopus,
    "shipping-on-last": shipping_on_last,
    "shipping-on-first": shipping_on_first,
    "shipping-never": shipping_never,
    "multi-source": multi_source,
    "ships-from-another-source": ships_from_another_source,
    "approve-on-receipt": approve_on_receipt,
    "refund-on-receipt": refund_on_receipt,
    "partial-returns-1-1-1": partial_returns,
    "blind-return": blind_return,
    "appeasements": appeasements,
    "upstream-quantity-and-amount": upstream_quantity_and_amount,
    "upstream-quantity-only": upstream_quantity_only,
    "upstream-amount-only": upstream_amount_only,
    "upstream-pos-default-mode": upstream_default_mode_pos,
    "upstream-refund-with-tax": upstream_refund_with_tax,
    "upstream-refund-after-the-return-window": upstream_refund_after_the_return_window,
    "cancel-order": cancel_order,
    "cancel-lines-then-ship": cancel_lines_then_ship,
    "partial-shipment-then-cancel": partial_shipment_then_cancel,
    "reshipment-seed-004": reshipment,
    "reshipment-then-return": reshipment_then_return,
    "stock-full-then-return": stock_full_then_return,
    "stock-delta-and-full": stock_delta_and_full,
    "return-cancelled-then-other-line": return_cancelled_then_other_line,
    "damaged-write-off": damaged_write_off,
    "two-shipments-on-last": two_shipments_on_last,
    "appeasement-then-return": appeasement_then_return,
    "release-and-cancel": release_and_cancel,
    "return-tracking": return_tracking,
    "split-tender": split_tender,
    "exchange-at-once": exchange_at_once,
    "exchange-on-receipt": exchange_on_receipt,
}


def build(names_wanted: list[str] | None, prefix: str) -> list[Scenario]:
    """The scenarios named (all when None), tokens `<prefix><nn>` (nn = position in STORIES)."""
    chosen = list(STORIES) if names_wanted is None else names_wanted
    unknown = [n for n in chosen if n not in STORIES]
    if unknown:
        raise ValueError(f"unknown scenarios: {', '.join(unknown)} (known: {', '.join(STORIES)})")
    built = []
    for name in chosen:
        scenario = Scenario(name, f"{prefix}{list(STORIES).index(name):02d}")
        STORIES[name](scenario)
        built.append(scenario)
    return built


def log_line(step: Step, key: str | None, timestamp_ms: int | None) -> str:
    """One replay input line (README, `oms-postsales replay`)."""
    item: Json = {"topic": step.name}
    if key is not None:
        item["key"] = key
    if timestamp_ms is not None:
        item["timestamp"] = timestamp_ms
    item["value"] = step.value
    return dumps(item)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="replay input (JSONL), written in story order"
    )
    parser.add_argument("--rules-out", type=Path, help="write the rules file the stories need")
    parser.add_argument("--scenario", action="append", help="only these (repeatable); default all")
    parser.add_argument("--keys", action="store_true", help="give each record its well-behaved key")
    args = parser.parse_args(argv)
    stories = build(args.scenario, "s")
    with args.out.open("w", encoding="utf-8") as out:
        for scenario in stories:
            for step in scenario.steps:
                out.write(log_line(step, step.key if args.keys else None, None) + "\n")
    if args.rules_out is not None:
        args.rules_out.write_text(RULES, "utf-8")
    steps = sum(len(s.steps) for s in stories)
    print(json.dumps({"scenarios": len(stories), "records": steps, "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
