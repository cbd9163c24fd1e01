"""Contract tests for the shapes real producers send: what is taken (and what it means once read), and
what is still refused, with the JSON pointer a dead letter would carry.

The rule: a value the worker computes with or keys by (ids, keys, line numbers, amounts, quantities it
needs, the structure around them) must be there and well formed; every other member may be null, "" or
absent, an empty object may come as PHP's [], and numbers may come as numeric strings.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from domain import names
from domain.handlers import parse
from tests.contract.test_schemas import _DELETE, EXAMPLES, _set
from workers.engine.validation import Validators

ROOT = Path(__file__).resolve().parents[2]
VALIDATORS = Validators()
MAGENTO = {
    json.loads(line)["topic"]: json.loads(line)["value"]["params"]
    for line in (ROOT / "examples" / "magento-shaped.jsonl").read_text().splitlines()
}

ORDER = {
    "order": {
        "id": "1",
        "store": "S",
        "ip": "",
        "vat_country": "AU",
        "origin": "WEB",
        "origin_date": "2026-11-01T09:00:00Z",
        "customer": {"id": "C1"},
        "addresses": [],
        "payments": [
            {
                "reference": "P",
                "currency": "AUD",
                "transactions": [
                    {
                        "payment_method": "CARD",
                        "amount": "11.00",
                        "billing_address_reference": "A",
                        "gateway_information": {"gateway_id": "g", "account": "a", "transaction_id": "t"},
                    }
                ],
            }
        ],
        "lines": [
            {
                "id": "L1",
                "line_number": 1,
                "product_type": "PHYSICAL",
                "sku": "A",
                "quantity": 2,
                "shipping_address_reference": "A",
                "payment_reference": "P",
                "amount": {
                    "gross_amount": "11.00",
                    "net_amount": "10.00",
                    "tax_amount": "1.00",
                    "tax_rate": "10",
                    "taxes": [],
                },
            }
        ],
    }
}
SHIPMENT = {
    "shipment": {
        "store_id": "S",
        "order_id": "1",
        "source_id": "WH",
        "method": "std",
        "packages": [],
        "items": [{"order_line_id": "L1", "order_line_number": 1, "quantity": 1}],
    }
}
RECEIVED = {
    "return": {
        "sales_channel_id": "S",
        "order_id": "1",
        "source_id": "WH",
        "user": "u",
        "rma": "S-1-R01",
        "lines": [{"id": "L1", "line_number": 1, "sku": "A", "reason": "R", "reason_description": "d"}],
    }
}
REFUND = {
    "refund": {
        "client": "pos",
        "order_id": "1",
        "store_id": "S",
        "credit_note_number": "RF-1",
        "status": {"date": "2026-11-04T10:00:00Z"},
        "lines": [
            {
                "order_line": "1",
                "reason_description": "r",
                "quantity": 1,
                "payments": [{"ref": "P", "details": {"cost_gross": "5.50"}}],
            }
        ],
    }
}
CANCEL_LINE = {"order_id": "1", "sales_channel_id": "S", "line_number": 1, "reason": "OOS", "quantity": 1}
APPEASEMENT = {
    "appeasement": {
        "sales_channel_id": "S",
        "order_id": "1",
        "user": "u",
        "lines": [{"line_number": 1, "amount": "1.00", "reason": "R", "reason_description": "d"}],
    }
}
STOCK = {"snapshot": {"source_id": "WH", "mode": "DELTA", "created_on": "2026-11-01", "stock": []}}
BASE = {
    **{
        name: EXAMPLES[name]
        for name in (
            names.ORDER_CANCEL,
            names.RETURN_AUTHORIZE,
            names.RETURN_REQUEST,
            names.RETURN_CANCEL,
            names.RETURN_UPDATE,
            names.RESHIPMENT_CREATE,
            names.RESHIPMENT_CREATE_SEED,
            names.REFUND_RELEASE,
            names.REFUND_CANCEL,
        )
    },
    names.ORDER_CREATE: ORDER,
    names.SHIPMENT_DONE: SHIPMENT,
    names.RETURN_RECEIVED: RECEIVED,
    names.REFUND_CREATE: REFUND,
    names.ORDER_CANCEL_LINE: CANCEL_LINE,
    names.APPEASEMENT_CREATE: APPEASEMENT,
    names.STOCK_UPDATE: STOCK,
}


def _doc(name: str, path: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE[name])
    _set(path, value)(document)
    return document


def test_the_base_documents_are_valid() -> None:
    for name, document in BASE.items():
        assert VALIDATORS.check(name, document) is None, name


@pytest.mark.parametrize("name", sorted(MAGENTO))
def test_the_magento_shaped_example_is_valid_and_readable(name: str) -> None:
    assert VALIDATORS.check(name, MAGENTO[name]) is None
    assert VALIDATORS.explain(name, MAGENTO[name]) is None
    parse(name, MAGENTO[name])


# (message, path, value sent, attribute path of the parsed command, what the domain reads)
TAKEN = [
    # Offline payments (check / money order): the gateway has no account and no transaction id.
    (names.ORDER_CREATE, "order/payments/0/transactions/0/gateway_information/account", None, None, None),
    (
        names.ORDER_CREATE,
        "order/payments/0/transactions/0/gateway_information/transaction_id",
        "",
        None,
        None,
    ),
    (names.ORDER_CREATE, "order/payments/0/transactions/0/gateway_information", [], None, None),
    (names.ORDER_CREATE, "order/customer/id", None, None, None),
    (names.ORDER_CREATE, "order/ip", None, None, None),
    (names.ORDER_CREATE, "order/language", "", None, None),
    (names.ORDER_CREATE, "order/customer", [], None, None),
    (names.ORDER_CREATE, "order/promotions_info", [], None, None),
    (
        names.ORDER_CREATE,
        "order/lines/0/custom_attributes",
        [{"name": "c", "value": 1, "attribute_code": "c"}],
        None,
        None,
    ),
    (names.ORDER_CREATE, "order/lines/0/line_number", "1", "order.lines.0.line_number", 1),
    (names.ORDER_CREATE, "order/lines/0/quantity", "2.0000", "order.lines.0.quantity", 2),
    (names.ORDER_CREATE, "order/lines/0/quantity", None, "order.lines.0.quantity", 1),
    (names.ORDER_CREATE, "order/lines/0/quantity", "", "order.lines.0.quantity", 1),
    (names.ORDER_CREATE, "order/lines/0/source_location", "", "order.lines.0.source_location", None),
    (names.ORDER_CREATE, "order/lines/0/parent_line_number", "", "order.lines.0.parent_line_number", None),
    (
        names.ORDER_CREATE,
        "order/lines/0/amount/gross_amount",
        "11.0000",
        "order.lines.0.amount.gross_amount",
        Decimal("11"),
    ),
    (names.ORDER_CREATE, "order/lines/0/amount/net_amount", "", "order.lines.0.amount.net_amount", None),
    (names.ORDER_CREATE, "order/lines/0/amount/taxes", None, "order.lines.0.amount.taxes", ()),
    (
        names.ORDER_CREATE,
        "order/payments/0/transactions/0/amount",
        "11.00",
        "order.payments.0.transactions.0.amount",
        Decimal("11.00"),
    ),
    (names.ORDER_CREATE, "order/origin_date", None, "order.origin_date", None),
    (names.SHIPMENT_DONE, "shipment/shipment_id", "", None, None),
    (names.SHIPMENT_DONE, "shipment/method", None, "shipment.method", None),
    (names.SHIPMENT_DONE, "shipment/address", [], None, None),
    (names.SHIPMENT_DONE, "shipment/items/0/quantity", _DELETE, "shipment.items.0.quantity", None),
    (names.SHIPMENT_DONE, "shipment/items/0/quantity", "1.0000", "shipment.items.0.quantity", 1),
    (names.SHIPMENT_DONE, "shipment/items/0/order_line_number", "1", "shipment.items.0.order_line_number", 1),
    (names.RETURN_RECEIVED, "return/rma", "", "return_.rma", None),
    (names.RETURN_RECEIVED, "return/user", "", "return_.user", None),
    (names.RETURN_RECEIVED, "return/source_id", None, "return_.source_id", None),
    (names.RETURN_RECEIVED, "return/lines/0/quantity", "1.0000", "return_.lines.0.quantity", 1),
    (names.RETURN_RECEIVED, "return/lines/0/condition", "", "return_.lines.0.condition", None),
    (names.RETURN_RECEIVED, "return/lines/0/restock", None, "return_.lines.0.restock", None),
    (names.RETURN_RECEIVED, "return/refund_mode", "", "return_.refund_mode", None),
    (names.REFUND_CREATE, "refund/credit_note_number", "", "refund.credit_note_number", None),
    (names.REFUND_CREATE, "refund/refund_mode", None, "refund.refund_mode", None),
    (names.REFUND_CREATE, "refund/rma", "", "refund.rma", None),
    (names.REFUND_CREATE, "refund/lines/0/quantity", "1.000", "refund.lines.0.quantity", 1),
    (
        names.REFUND_CREATE,
        "refund/lines/0/payments/0/details/cost_vat",
        "",
        "refund.lines.0.payments.0.details.cost_vat",
        None,
    ),
    (
        names.REFUND_CREATE,
        "refund/lines/0/payments/0/details/cost_gross",
        5.5,
        "refund.lines.0.payments.0.details.cost_gross",
        Decimal("5.5"),
    ),
    (names.ORDER_CANCEL_LINE, "quantity", "", "quantity", None),
    (names.ORDER_CANCEL_LINE, "user", None, "user", None),
    (names.APPEASEMENT_CREATE, "appeasement/credit_note_number", "", "appeasement.credit_note_number", None),
    (names.STOCK_UPDATE, "snapshot/created_on", "", "snapshot.created_on", None),
    (names.ORDER_CANCEL, "sales_channel_id", "", "sales_channel_id", None),
    (names.ORDER_CANCEL, "reason", None, "reason", None),
    (names.RETURN_AUTHORIZE, "return/source_id", "", "return_.source_id", None),
    (names.RETURN_AUTHORIZE, "return/lines/0/line_number", "2", "return_.lines.0.line_number", 2),
    (names.RETURN_AUTHORIZE, "return/lines/0/quantity", "1.0", "return_.lines.0.quantity", 1),
    (
        names.RETURN_AUTHORIZE,
        "return/custom_attributes",
        [{"name": "a", "value": None, "attribute_code": "a"}],
        None,
        None,
    ),
    (names.RETURN_REQUEST, "return/user", None, "return_.user", None),
    (names.RETURN_REQUEST, "return/lines/0/sku", "", "return_.lines.0.sku", None),
    (names.RETURN_CANCEL, "return/rma", "ST1-12346-R01", "return_.rma", "ST1-12346-R01"),
    (names.RETURN_CANCEL, "return/source_id", None, "return_.source_id", None),
    (names.RETURN_UPDATE, "return/return_tracking_url", "", "return_.return_tracking_url", None),
    (names.RETURN_UPDATE, "return/custom_attributes", None, "return_.custom_attributes", ()),
    (names.REFUND_RELEASE, "offline", None, "offline", None),
    (names.REFUND_RELEASE, "user", "", "user", None),
    (names.REFUND_CANCEL, "user", None, "user", None),
    (names.RESHIPMENT_CREATE, "reshipment/new_shipping_address", [], "reshipment.new_shipping_address", None),
    (names.RESHIPMENT_CREATE, "reshipment/new_order_id", "", "reshipment.new_order_id", None),
    (names.RESHIPMENT_CREATE_SEED, "reshipment/lines/0/quantity", "1.0000", "reshipment.lines.0.quantity", 1),
    (names.RESHIPMENT_CREATE_SEED, "user", "", "user", None),
]


def _read(command: Any, path: str) -> Any:
    value = command
    for part in path.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


@pytest.mark.parametrize(("name", "path", "value", "attribute", "meaning"), TAKEN)
def test_what_real_producers_send_is_taken_and_read_as_meant(
    name: str, path: str, value: Any, attribute: str | None, meaning: Any
) -> None:
    document = _doc(name, path, value)
    assert VALIDATORS.check(name, document) is None
    assert VALIDATORS.explain(name, document) is None
    if name == names.STOCK_UPDATE:
        from domain.commands import StockUpdate

        command: Any = StockUpdate.model_validate(document)
    else:
        command = parse(name, document).command
    if attribute is not None:
        assert _read(command, attribute) == meaning


# (message, path, value, the JSON pointer the dead letter names)
REFUSED = [
    (names.ORDER_CREATE, "order/id", "", "/order/id"),
    (names.ORDER_CREATE, "order/store", None, "/order/store"),
    (names.ORDER_CREATE, "order/lines/0/line_number", None, "/order/lines/0/line_number"),
    (names.ORDER_CREATE, "order/lines/0/line_number", "", "/order/lines/0/line_number"),
    (names.ORDER_CREATE, "order/lines/0/line_number", "1.5", "/order/lines/0/line_number"),
    (names.ORDER_CREATE, "order/lines/0/sku", "", "/order/lines/0/sku"),
    (names.ORDER_CREATE, "order/lines/0/quantity", "1.5000", "/order/lines/0/quantity"),
    (names.ORDER_CREATE, "order/lines/0/quantity", 1.5, "/order/lines/0/quantity"),
    (names.ORDER_CREATE, "order/lines/0/quantity", "two", "/order/lines/0/quantity"),
    (names.ORDER_CREATE, "order/lines/0/amount", [], "/order/lines/0/amount"),
    (names.ORDER_CREATE, "order/lines/0/amount/gross_amount", None, "/order/lines/0/amount/gross_amount"),
    (names.ORDER_CREATE, "order/lines/0/amount/gross_amount", "", "/order/lines/0/amount/gross_amount"),
    (names.ORDER_CREATE, "order/lines/0/amount/net_amount", "ten", "/order/lines/0/amount/net_amount"),
    (
        names.ORDER_CREATE,
        "order/payments/0/transactions/0/amount",
        None,
        "/order/payments/0/transactions/0/amount",
    ),
    (names.ORDER_CREATE, "order/payments/0/reference", "", "/order/payments/0/reference"),
    (names.ORDER_CREATE, "order/lines/0", [], "/order/lines/0"),
    (names.ORDER_CREATE, "order/lines", {"0": {}}, "/order/lines"),
    (names.SHIPMENT_DONE, "shipment/order_id", None, "/shipment/order_id"),
    (names.SHIPMENT_DONE, "shipment/source_id", "", "/shipment/source_id"),
    (names.SHIPMENT_DONE, "shipment/items/0/order_line_number", None, "/shipment/items/0/order_line_number"),
    (names.SHIPMENT_DONE, "shipment/items/0/quantity", "0.5", "/shipment/items/0/quantity"),
    (names.SHIPMENT_DONE, "shipment/items", None, "/shipment/items"),
    (names.RETURN_RECEIVED, "return/order_id", "", "/return/order_id"),
    (names.RETURN_RECEIVED, "return/sales_channel_id", None, "/return/sales_channel_id"),
    (names.RETURN_RECEIVED, "return/lines/0/line_number", "", "/return/lines/0/line_number"),
    (names.RETURN_RECEIVED, "return/lines/0/quantity", "1.25", "/return/lines/0/quantity"),
    (names.REFUND_CREATE, "refund/lines/0/order_line", "", "/refund/lines/0/order_line"),
    (
        names.REFUND_CREATE,
        "refund/lines/0/payments/0/details/cost_gross",
        "",
        "/refund/lines/0/payments/0/details/cost_gross",
    ),
    (
        names.REFUND_CREATE,
        "refund/lines/0/payments/0/details/cost_gross",
        None,
        "/refund/lines/0/payments/0/details/cost_gross",
    ),
    (names.REFUND_CREATE, "refund/status", [], "/refund/status"),
    (names.REFUND_CREATE, "refund/store_id", "", "/refund/store_id"),
    (names.ORDER_CANCEL_LINE, "line_number", None, "/line_number"),
    (names.APPEASEMENT_CREATE, "appeasement/lines/0/amount", "", "/appeasement/lines/0/amount"),
    (names.STOCK_UPDATE, "snapshot/source_id", "", "/snapshot/source_id"),
    (names.ORDER_CANCEL, "order_id", None, "/order_id"),
    (names.RETURN_AUTHORIZE, "return/lines/0/line_number", "two", "/return/lines/0/line_number"),
    (names.RETURN_AUTHORIZE, "return/lines/0/quantity", "0.5", "/return/lines/0/quantity"),
    (names.RETURN_REQUEST, "return/order_id", None, "/return/order_id"),
    (names.RETURN_CANCEL, "return/sales_channel_id", "", "/return/sales_channel_id"),
    (names.RETURN_UPDATE, "return/order_id", "", "/return/order_id"),
    (names.REFUND_RELEASE, "credit_note_number", "", "/credit_note_number"),
    (names.REFUND_CANCEL, "credit_note_number", None, "/credit_note_number"),
    (names.RESHIPMENT_CREATE, "reshipment/lines/0/line_number", None, "/reshipment/lines/0/line_number"),
    (names.RESHIPMENT_CREATE, "reshipment/lines", [{}], "/reshipment/lines/0"),
    (names.RESHIPMENT_CREATE_SEED, "reshipment/order_id", "", "/reshipment/order_id"),
]


@pytest.mark.parametrize(("name", "path", "value", "pointer"), REFUSED)
def test_what_the_worker_cannot_do_without_is_refused_at_its_place(
    name: str, path: str, value: Any, pointer: str
) -> None:
    document = _doc(name, path, value)
    failure = VALIDATORS.check(name, document)
    assert failure is not None and failure.pointer == pointer, failure
    assert VALIDATORS.fast_valid(name, document) is False


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _members(schema: dict[str, Any]) -> dict[str, Any]:
    """The properties of an object schema, looking through anyOf and array items."""
    if "properties" in schema:
        return dict(schema["properties"])
    if "items" in schema:
        return _members(schema["items"])
    merged: dict[str, Any] = {}
    for branch in schema.get("anyOf", []):
        merged.update(_members(branch))
    return merged


def _check_members(schema: dict[str, Any], model: type[BaseModel] | None, where: str) -> list[str]:
    wrong = []
    fields = {(f.alias or n): f for n, f in model.model_fields.items()} if model else {}
    for member, sub in _members(schema).items():
        field = fields.get(member)
        needed = field is not None and field.is_required()
        takes_null = Draft202012Validator(sub).is_valid(None)
        if needed and (takes_null or Draft202012Validator(sub).is_valid("")):
            wrong.append(f'{where}/{member}: the worker needs it, the schema takes null or ""')
        if not needed and not takes_null:
            wrong.append(f"{where}/{member}: the worker can do without it, the schema refuses null")
        wrong.extend(
            _check_members(sub, _inner_model(field.annotation) if field else None, f"{where}/{member}")
        )
    return wrong


@pytest.mark.parametrize("name", names.INBOUND)
def test_a_member_is_refused_when_null_exactly_when_the_worker_needs_it(name: str) -> None:
    from domain.commands import OrderCreate, StockUpdate
    from domain.handlers import ROUTES

    model = {names.ORDER_CREATE: OrderCreate, names.STOCK_UPDATE: StockUpdate}.get(name) or ROUTES[
        name
    ].command
    inlined = json.loads(json.dumps(VALIDATORS._by_name[name].schema))
    assert _check_members(inlined, model, "") == []
