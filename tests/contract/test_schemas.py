"""Contract tests: every schema file is sound, every message has valid and invalid examples, and the
looseness real producers need (docs/contract.md, "Wire format") is accepted while what is ambiguous
is refused."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from domain import names
from schemas import SCHEMA_BASE, SCHEMA_DIR
from tests.mom_examples import documented_reshipment
from tests.unit import harness
from workers.engine.validation import Validators, default_validators

ROOT = Path(__file__).resolve().parents[2]
VALIDATORS = Validators()


def _examples() -> dict[str, dict[str, Any]]:
    """The first params of each message in the bundled log: realistic, seed-based payloads."""
    found: dict[str, dict[str, Any]] = {}
    for line in (ROOT / "examples" / "message-log.jsonl").read_text().splitlines():
        record = json.loads(line)
        value = record["value"]
        if isinstance(value, str):
            continue
        name, params = (value["method"], value["params"]) if "jsonrpc" in value else (record["topic"], value)
        if name in names.INBOUND and VALIDATORS.check(name, params) is None:
            found.setdefault(name, params)
    found.setdefault(names.RESHIPMENT_CREATE, found[names.RESHIPMENT_CREATE_SEED])
    return found


EXAMPLES = _examples()


def _outputs() -> dict[str, dict[str, Any]]:
    import subprocess
    import sys

    cli = str(Path(sys.executable).parent / "oms-postsales")
    done = subprocess.run(
        [
            cli,
            "replay",
            str(ROOT / "examples" / "message-log.jsonl"),
            "--rules",
            str(ROOT / "examples" / "rules.toml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, dict[str, Any]] = {}
    for line in done.stdout.splitlines():
        value = json.loads(line)["value"]
        if isinstance(value, dict):
            found.setdefault(value["method"], value["params"])
    return found


@pytest.fixture(scope="module")
def outputs() -> dict[str, dict[str, Any]]:
    return _outputs()


def test_every_schema_file_is_a_sound_draft_2020_12_schema_with_id_and_version() -> None:
    ids = set()
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == SCHEMA_BASE + path.name and schema["$id"] not in ids
        assert schema["x-version"] == 1 and schema["title"] and schema["description"]
        ids.add(schema["$id"])


@pytest.mark.parametrize(
    "name", [*names.INBOUND, *names.OUTBOUND, "jsonrpc-envelope", "dead-letter", "replay-record"]
)
def test_every_message_has_a_schema(name: str) -> None:
    assert name in VALIDATORS


@pytest.mark.parametrize("name", names.INBOUND)
def test_every_inbound_message_has_a_valid_example(name: str) -> None:
    assert name in EXAMPLES, f"examples/message-log.jsonl has no valid {name}"
    assert VALIDATORS.check(name, EXAMPLES[name]) is None
    assert VALIDATORS.explain(name, EXAMPLES[name]) is None


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is _DELETE:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


_DELETE = object()

INVALID = [
    (names.ORDER_CREATE, "order/id", _DELETE, "/order"),
    (names.ORDER_CREATE, "order/id", None, "/order/id"),
    (names.ORDER_CREATE, "order/lines/0/amount/gross_amount", "twelve", "/order/lines/0/amount/gross_amount"),
    (names.ORDER_CREATE, "order/lines/0/amount/gross_amount", -1, "/order/lines/0/amount/gross_amount"),
    (names.ORDER_CREATE, "order/lines/0/quantity", 0, "/order/lines/0/quantity"),
    (names.ORDER_CREATE, "order/lines/0/quantity", 10**7, "/order/lines/0/quantity"),
    (names.ORDER_CREATE, "order/lines", "many", "/order/lines"),
    (names.ORDER_CREATE, "order/store", "x" * 300, "/order/store"),
    (names.ORDER_CANCEL, "order_id", _DELETE, ""),
    (names.ORDER_CANCEL_LINE, "line_number", "one", "/line_number"),
    (names.SHIPMENT_DONE, "shipment/items", [], "/shipment/items"),
    (names.SHIPMENT_DONE, "shipment/items/0/order_line_number", -2, "/shipment/items/0/order_line_number"),
    (names.RETURN_AUTHORIZE, "return/lines/0/line_number", None, "/return/lines/0/line_number"),
    (names.RETURN_AUTHORIZE, "return/refund_mode", "MONEY_BACK", "/return/refund_mode"),
    (names.RETURN_REQUEST, "return/source_id", _DELETE, "/return"),
    (names.RETURN_RECEIVED, "return/user", _DELETE, "/return"),
    (names.RETURN_CANCEL, "return/order_id", 42, "/return/order_id"),
    (names.RESHIPMENT_CREATE_SEED, "reshipment/lines", [], "/reshipment/lines"),
    (
        names.RESHIPMENT_CREATE,
        "reshipment/new_shipping_address/city",
        _DELETE,
        "/reshipment/new_shipping_address",
    ),
    (names.APPEASEMENT_CREATE, "appeasement/lines/0/amount", "-5.00", "/appeasement/lines/0/amount"),
    (names.APPEASEMENT_CREATE, "appeasement/lines/0/amount", 0, "/appeasement/lines/0/amount"),
    (names.APPEASEMENT_CREATE, "appeasement/lines/0/amount", "1e3", "/appeasement/lines/0/amount"),
    (names.REFUND_CREATE, "refund/status/date", _DELETE, "/refund/status"),
    (names.REFUND_CREATE, "refund/refund_mode", "BOTH", "/refund/refund_mode"),
    (
        names.REFUND_CREATE,
        "refund/lines/0/payments/0/details/cost_gross",
        "12,50",
        "/refund/lines/0/payments/0/details/cost_gross",
    ),
    (names.REFUND_CREATE, "refund/lines/0/restock", "yes", "/refund/lines/0/restock"),
    (names.STOCK_UPDATE, "snapshot/mode", "PARTIAL", "/snapshot/mode"),
    (names.STOCK_UPDATE, "snapshot/stock/0/quantity", 1.5, "/snapshot/stock/0/quantity"),
    (names.REFUND_RELEASE, "credit_note_number", _DELETE, ""),
    (names.REFUND_RELEASE, "offline", "yes", "/offline"),
    (names.REFUND_CANCEL, "order_id", 42, "/order_id"),
    (names.REFUND_CANCEL, "sales_channel_id", _DELETE, ""),
    (names.RETURN_UPDATE, "return/source_id", _DELETE, "/return"),
    (names.RETURN_UPDATE, "return/return_tracking_number", 12, "/return/return_tracking_number"),
    (names.REFUND_CREATE, "refund/lines/0/sku", 5, "/refund/lines/0/sku"),
    (names.EXCHANGE_CREATE, "exchange/lines/0/new_sku", _DELETE, "/exchange/lines/0"),
    (names.EXCHANGE_CREATE, "exchange/lines/0/new_sku", "", "/exchange/lines/0/new_sku"),
    (names.EXCHANGE_CREATE, "exchange/lines", [], "/exchange/lines"),
    (names.EXCHANGE_CREATE, "exchange/lines/0/quantity", 0, "/exchange/lines/0/quantity"),
]


@pytest.mark.parametrize(("name", "path", "value", "pointer"), INVALID)
def test_invalid_inbound_examples_are_refused_at_the_right_place(
    name: str, path: str, value: Any, pointer: str
) -> None:
    document = copy.deepcopy(EXAMPLES[name])
    _set(path, value)(document)
    failure = VALIDATORS.check(name, document)
    assert failure is not None
    assert failure.pointer == pointer, failure
    # The compiled fast path and the explaining validator agree.
    assert VALIDATORS.fast_valid(name, document) is False and VALIDATORS.explain(name, document) is not None


LOOSE = [
    (names.ORDER_CREATE, "order/lines/0/line_number", "1"),
    (names.ORDER_CREATE, "order/lines/0/amount/gross_amount", "82.50"),
    (names.ORDER_CREATE, "order/lines/0/product_name", None),
    (names.ORDER_CREATE, "order/lines/0/promotions_info", []),
    (names.ORDER_CREATE, "order/custom_attributes", [{"name": "a", "value": "b", "attribute_code": "a"}]),
    (names.ORDER_CREATE, "order/unknown_extension", {"kept": True}),
    (names.SHIPMENT_DONE, "shipment/address", []),
    (names.RETURN_AUTHORIZE, "return/lines/0/quantity", "2"),
    (names.APPEASEMENT_CREATE, "appeasement/lines/0/amount", 5),
    (names.REFUND_CREATE, "refund/credit_note_number", None),
]


@pytest.mark.parametrize(("name", "path", "value"), LOOSE)
def test_what_real_producers_send_is_accepted(name: str, path: str, value: Any) -> None:
    document = copy.deepcopy(EXAMPLES[name])
    _set(path, value)(document)
    assert VALIDATORS.check(name, document) is None
    assert VALIDATORS.explain(name, document) is None


def test_the_documented_reshipment_example_is_valid_verbatim() -> None:
    seed = documented_reshipment()
    assert VALIDATORS.check(names.RESHIPMENT_CREATE_SEED, seed) is None


@pytest.mark.parametrize("name", names.OUTBOUND)
def test_every_outbound_message_produced_by_the_code_is_valid(name: str, outputs: dict[str, Any]) -> None:
    assert VALIDATORS.check(name, outputs[name]) is None


OUT_INVALID = [
    (names.REFUND_UPDATED, "refund/totals/cost_gross", 270.6, "/refund/totals/cost_gross"),
    (names.REFUND_UPDATED, "refund/lines/0/explanation", "", "/refund/lines/0/explanation"),
    (names.REFUND_UPDATED, "refund/document_type", "INVOICE", "/refund/document_type"),
    (names.REFUND_UPDATED, "refund/surprise", 1, "/refund"),
    (names.RETURN_UPDATED, "return/status/code", "LOST", "/return/status/code"),
    (names.ORDER_UPDATED, "order/postsales/status", "REFUNDED", "/order/postsales/status"),
    (names.STOCK_ADJUSTED, "adjustment/adjustments/0/quantity", "1", "/adjustment/adjustments/0/quantity"),
    (names.ERROR_NOTIFY, "code", "OOPS", "/code"),
    (names.SHIPMENT_REQUESTED, "shipment_request/status", "DONE", "/shipment_request/status"),
    (names.ORDER_CREATED, "order/origin", "WEB", "/order/origin"),
]


@pytest.mark.parametrize(("name", "path", "value", "pointer"), OUT_INVALID)
def test_invalid_outbound_examples_are_refused(
    name: str, path: str, value: Any, pointer: str, outputs: dict[str, Any]
) -> None:
    document = copy.deepcopy(outputs[name])
    _set(path, value)(document)
    failure = VALIDATORS.check(name, document)
    assert failure is not None and failure.pointer == pointer, failure


def test_envelope_and_dead_letter_shapes() -> None:
    assert (
        VALIDATORS.check("jsonrpc-envelope", {"jsonrpc": "2.0", "id": "1", "method": "m", "params": {}})
        is None
    )
    assert VALIDATORS.check("jsonrpc-envelope", {"jsonrpc": "1.0", "id": "1", "method": "m", "params": {}})
    headers = {
        h: "x"
        for h in (
            "dlq.error.class",
            "dlq.error.message",
            "dlq.error.path",
            "dlq.original.topic",
            "dlq.original.partition",
            "dlq.original.offset",
            "dlq.failed_at",
        )
    }
    record = {"topic": "oms-postsales.dlq", "key": None, "headers": headers, "value": "raw"}
    assert VALIDATORS.check("dead-letter", record) is None
    del headers["dlq.failed_at"]
    assert VALIDATORS.check("dead-letter", record) is not None


def _object_subschemas(node: Any) -> list[str]:
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append(json.dumps(node, sort_keys=True))
        for value in node.values():
            found.extend(_object_subschemas(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_object_subschemas(value))
    return found


def test_structures_are_defined_once_and_shared_through_defs() -> None:
    seen: dict[str, str] = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        for text in _object_subschemas(json.loads(path.read_text())):
            if len(text) > 200:  # an object with a few members: worth a shared definition
                assert text not in seen, (
                    f"{path.name} repeats a structure of {seen[text]}: move it to defs.json"
                )
                seen[text] = path.name
    refs = {json.loads(path.read_text()).get("$id") for path in SCHEMA_DIR.glob("*.json")}
    assert SCHEMA_BASE + "defs.json" in refs


def test_the_messages_an_exchange_makes_for_its_child_pass_their_schemas() -> None:
    """Replay and the worker both check a follow-up against its schema: a child create that failed it
    would be a dead letter instead of an order."""
    validators = default_validators()
    h = harness.Harness.with_rules(exchange_ships="on_receipt", auto_approve_return=False)
    h.create(
        harness.order(
            "1",
            [
                harness.line(1, "A", "10.00", qty=2),
                harness.line(2, "B", "20.00"),
                harness.line(3, "SHIP", "5.00", kind="SHIPPING"),
            ],
        )
    )
    h.ship("1", [(1, 2), (2, 1)])
    address = {
        "first_name": "A",
        "last_name": "B",
        "address1": "2 Road",
        "city": "Perth",
        "country_code": "AU",
    }
    made = []
    for number, extra in ((1, {"new_shipping_address": address, "new_shipping_method": "EXPRESS"}), (2, {})):
        swap = {"line_number": number, "new_sku": f"N{number}", "quantity": 1}
        params = {"exchange": {"sales_channel_id": "OCTO", "order_id": "1", "lines": [swap], **extra}}
        made += h.send(names.EXCHANGE_CREATE, params).follow_ups
    rma = "OCTO-1-R02"
    back = {
        "return": {
            "sales_channel_id": "OCTO",
            "order_id": "1",
            "source_id": "DEFAULT",
            "user": "u",
            "rma": rma,
            "lines": [{"line_number": 2, "condition": "DAMAGED"}],
        }
    }
    made += h.send(names.RETURN_RECEIVED, back).follow_ups
    assert [f.name for f in made] == [names.ORDER_CREATE, names.ORDER_CREATE, names.ORDER_CANCEL]
    for follow in made:
        params = json.loads(json.dumps(follow.params, default=str))
        assert validators.check(follow.name, params) is None, follow.name


def test_a_failed_value_keeps_the_validators_text_and_says_the_rule_in_words() -> None:
    line = {"line_number": 1, "amount": "-5.00", "reason": "R", "reason_description": "d"}
    params = {"appeasement": {"sales_channel_id": "A", "order_id": "1", "user": "u", "lines": [line]}}
    failure = default_validators().check(names.APPEASEMENT_CREATE, params)
    assert failure is not None and failure.pointer == "/appeasement/lines/0/amount"
    text, rule = failure.message.split("; the rule: ")
    assert text.startswith("'-5.00' does not match '^[0-9]")
    assert "amounts are positive decimal text" in rule and "negative amount is refused" in rule


def test_a_shared_definition_gives_its_rule_too() -> None:
    line = {"order_line_id": "L1", "order_line_number": 1, "quantity": "1.5"}
    shipment = {"store_id": "A", "order_id": "1", "source_id": "S", "method": "m", "items": [line]}
    failure = default_validators().check(names.SHIPMENT_DONE, {"shipment": {**shipment, "packages": []}})
    assert failure is not None, "a quantity of 1.5 units must fail"
    assert "; the rule: A positive number of units" in failure.message, failure


def test_a_missing_member_gets_no_rule() -> None:
    line = {"line_number": 1, "amount": "5.00", "reason": "R"}
    params = {"appeasement": {"sales_channel_id": "A", "order_id": "1", "user": "u", "lines": [line]}}
    failure = default_validators().check(names.APPEASEMENT_CREATE, params)
    assert failure is not None and failure.message == "'reason_description' is a required property"
