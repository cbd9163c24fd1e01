"""A pure harness around the domain: messages in as dicts, events out, state in plain dicts.

It builds MOM orders with the amounts a test states, so tests read as figures (net, tax rate, units).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from domain import names
from domain.credit_notes import Ledger
from domain.handlers import handle, parse, settle_expired
from domain.outcome import Event, MessageMeta, Outcome
from domain.rule_versions import RuleVersions
from domain.rules import RuleBook, parse_rules
from domain.state import OrderState, Series, StockItem, TakenNumbers
from domain.stock import apply_movement

START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def price(net: str, rate: str = "10", *, taxes: Iterable[tuple[str, str]] | None = None) -> dict[str, Any]:
    """A MOM price for a line total of `net` with tax components [(type, rate)] (default one VAT)."""
    components = list(taxes) if taxes is not None else [("VAT", rate)]
    net_d = Decimal(net)
    amounts = [
        (kind, Decimal(r), (net_d * Decimal(r) / 100).quantize(Decimal("0.01"))) for kind, r in components
    ]
    tax = sum((a for _, _, a in amounts), Decimal(0))
    return {
        "net_amount": str(net_d),
        "gross_amount": str(net_d + tax),
        "tax_amount": str(tax),
        "tax_rate": str(sum((r for _, r, _ in amounts), Decimal(0))),
        "taxes": [{"type": kind, "amount": str(a), "rate": str(r)} for kind, r, a in amounts],
        "currency": "AUD",
    }


def line(
    number: int, sku: str, net: str, *, qty: int = 1, kind: str = "PHYSICAL", rate: str = "10", **extra: Any
) -> dict[str, Any]:
    return {
        "id": f"L{number}",
        "line_number": number,
        "product_type": kind,
        "sku": sku,
        "quantity": qty,
        "shipping_address_reference": "A1",
        "payment_reference": "PAY1",
        "amount": price(net, rate),
        **extra,
    }


def order(
    order_id: str,
    lines: list[dict[str, Any]],
    *,
    store: str = "OCTO",
    origin_date: str = "2026-11-01T09:00:00Z",
    paid: str | None = None,
) -> dict[str, Any]:
    total = paid or str(sum((Decimal(ln["amount"]["gross_amount"]) for ln in lines), Decimal(0)))
    return {
        "order": {
            "id": order_id,
            "store": store,
            "ip": "203.0.113.7",
            "vat_country": "AU",
            "origin": "WEB",
            "origin_date": origin_date,
            "customer": {"id": "C1"},
            "addresses": [
                {
                    "reference": "A1",
                    "address_type": "billing",
                    "first_name": "Alex",
                    "last_name": "Example",
                    "address1": "1 Sample St",
                    "city": "Melbourne",
                    "country_code": "AU",
                    "email": "alex@example.com",
                }
            ],
            "payments": [
                {
                    "reference": "PAY1",
                    "currency": "AUD",
                    "transactions": [
                        {
                            "payment_method": "CARD",
                            "amount": total,
                            "billing_address_reference": "A1",
                            "gateway_information": {"gateway_id": "g", "account": "a", "transaction_id": "t"},
                        }
                    ],
                }
            ],
            "lines": lines,
        }
    }


OCTOPUS = order(
    "1234",
    [
        line(1, "WE234", "75"),
        line(2, "MS232", "246", qty=2),
        line(3, "CD785", "25"),
    ],
)


def shipment(
    order_id: str, items: list[tuple[int, int]], *, store: str = "OCTO", source: str = "DEFAULT", **extra: Any
) -> dict[str, Any]:
    """shipment_management params: (line number, units) per item."""
    return {
        "shipment": {
            "store_id": store,
            "order_id": order_id,
            "source_id": source,
            "method": "std",
            "packages": [],
            "items": [{"order_line_id": f"L{n}", "order_line_number": n, "quantity": q} for n, q in items],
            **extra,
        }
    }


def return_of(
    order_id: str, lines: list[dict[str, Any]], *, store: str = "OCTO", **header: Any
) -> dict[str, Any]:
    """return_management params; each line needs at least its `line_number`."""
    full = [
        {"id": f"L{ln['line_number']}", "sku": "x", "reason": "R", "reason_description": "d", **ln}
        for ln in lines
    ]
    return {
        "return": {
            "sales_channel_id": store,
            "order_id": order_id,
            "source_id": "DEFAULT",
            "user": "u",
            "lines": full,
            **header,
        }
    }


def appeasement(order_id: str, amounts: list[tuple[int, str]], *, store: str = "OCTO") -> dict[str, Any]:
    """appeasement_management params: (line number, amount) per line."""
    return {
        "appeasement": {
            "sales_channel_id": store,
            "order_id": order_id,
            "user": "cs",
            "lines": [
                {"line_number": n, "amount": amount, "reason": "R", "reason_description": "d"}
                for n, amount in amounts
            ],
        }
    }


@dataclass
class Harness:
    # A rules file's book is version 1 of each of its keys, from the start of time (a RuleBook given
    # is taken as that).
    rules: RuleVersions = field(default_factory=lambda: RuleVersions.from_book(parse_rules({})))
    orders: dict[str, OrderState] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)
    taken: dict[str, TakenNumbers] = field(default_factory=dict)
    upstream: dict[str, str] = field(default_factory=dict)
    stock: dict[str, StockItem] = field(default_factory=dict)
    now: datetime = START
    log: list[Event] = field(default_factory=list)
    # What the follow-up messages (an exchange's child order) did, in the order they were handled.
    follow_ups: list[Outcome] = field(default_factory=list)
    _ids: Iterable[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        given: RuleVersions | RuleBook = self.rules
        if isinstance(given, RuleBook):
            self.rules = RuleVersions.from_book(given)

    @classmethod
    def with_rules(cls, **channel: Any) -> Harness:
        return cls(rules=RuleVersions.from_book(parse_rules({"defaults": channel})))

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.series, self.taken, self.upstream)

    def send(
        self,
        name: str,
        params: dict[str, Any],
        *,
        message_id: str | None = None,
        minutes: int = 1,
        partition: int = 0,
    ) -> Outcome:
        self.now += timedelta(minutes=minutes)
        message_id = message_id or f"m{next(iter(self._ids))}"
        parsed = parse(name, params)
        key = parsed.key
        stored = self.orders.get(key) if key else None
        meta = MessageMeta(name, message_id, self.now, partition)
        outcome = handle(parsed, json.dumps(params), stored, self.ledger, self.rules, meta)
        self._absorb(outcome)
        self._follow(outcome)
        return outcome

    def _follow(self, outcome: Outcome) -> None:
        """Follow-ups are handled right after their cause, at its time, as replay does."""
        for follow in outcome.follow_ups:
            text = json.dumps(follow.params, default=str)
            parsed = parse(follow.name, json.loads(text))
            stored = self.orders.get(parsed.key) if parsed.key else None
            meta = MessageMeta(follow.name, follow.message_id, follow.at, 0)
            done = handle(parsed, text, stored, self.ledger, self.rules, meta)
            self._absorb(done)
            self.follow_ups.append(done)
            self._follow(done)

    def settle(self, *, minutes: int = 0, everything: bool = False) -> list[Outcome]:
        self.now += timedelta(minutes=minutes)
        results = []
        for key in [k for k, o in self.orders.items() if o.held]:
            outcome = settle_expired(
                self.orders[key], self.ledger, self.rules, self.now, everything=everything
            )
            self._absorb(outcome)
            self._follow(outcome)
            results.append(outcome)
        return results

    def _absorb(self, outcome: Outcome) -> None:
        if outcome.forgotten is not None:
            self.orders.pop(outcome.forgotten.order_key, None)
            self.taken.pop(outcome.forgotten.order_key, None)
            for key in outcome.forgotten.upstream_keys:
                self.upstream.pop(key, None)
        if outcome.order is not None:
            self.orders[outcome.order.key] = outcome.order
        self.series.update(outcome.series)
        self.taken.update(outcome.taken)
        self.upstream.update(outcome.upstream)
        self.log.extend(outcome.events)
        for movement in outcome.movements:
            item, event = apply_movement(self.stock.get(movement.key), movement)
            self.stock[movement.key] = item
            if event is not None:
                self.log.append(event)

    # -- convenience -----------------------------------------------------------------------------

    def create(self, params: dict[str, Any]) -> Outcome:
        return self.send(names.ORDER_CREATE, params)

    def ship(
        self, order_id: str, items: list[tuple[int, int]], *, store: str = "OCTO", source: str = "DEFAULT"
    ) -> Outcome:
        return self.send(names.SHIPMENT_DONE, shipment(order_id, items, store=store, source=source))

    def ret(
        self,
        order_id: str,
        lines: list[dict[str, Any]],
        *,
        name: str = names.RETURN_AUTHORIZE,
        store: str = "OCTO",
        **header: Any,
    ) -> Outcome:
        return self.send(name, return_of(order_id, lines, store=store, **header))

    def order(self, order_id: str, store: str = "OCTO") -> OrderState:
        return self.orders[f"{store}:{order_id}"]

    def ats(self, source: str, sku: str) -> int:
        item = self.stock.get(f"{source}:{sku}")
        return item.available_to_sell if item else 0


def events(outcome: Outcome, name: str) -> list[dict[str, Any]]:
    return [event.params for event in outcome.events if event.name == name]


def refunds(outcome: Outcome) -> list[dict[str, Any]]:
    return [params["refund"] for params in events(outcome, names.REFUND_UPDATED)]


def the_refund(outcome: Outcome) -> dict[str, Any]:
    found = refunds(outcome)
    assert len(found) == 1, f"expected one refund, got {len(found)}: {outcome.status} {outcome.detail}"
    return found[0]


def refund_lines(refund: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ln["order_line"]: ln["payments"][0]["details"] for ln in refund["lines"]}


def rejection(outcome: Outcome) -> str:
    found = events(outcome, names.ERROR_NOTIFY)
    assert outcome.status == "rejected" and len(found) == 1, f"not rejected: {outcome.status}"
    return str(found[0]["code"])
