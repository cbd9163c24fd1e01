"""Dead letters keep personal data out of what anyone reading the DLQ sees first: `dlq.error.message`
never quotes a personal value and is bounded, and `dlq show` redacts the original unless `--personal`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from domain import names
from domain.rules import RuleBook
from workers.engine.codec import DecodeError, InboundRecord, dumps, loads
from workers.engine.personal import MAX_ERROR_CHARS, REDACTED, safe_error
from workers.engine.pipeline import Pipeline
from workers.ops import dlq
from workers.ops.reading import Fetched

ROOT = Path(__file__).resolve().parents[2]
LOG = [json.loads(line) for line in (ROOT / "examples" / "message-log.jsonl").read_text().splitlines()]
CREATE = next(
    line["value"]
    for line in LOG
    if isinstance(line["value"], dict) and line["value"].get("method") == names.ORDER_CREATE
)
SECRET = "secret.person@example.com"


def dead_of(envelope: dict[str, Any]) -> dict[str, str]:
    processed = Pipeline(RuleBook()).process(InboundRecord(names.ORDER_CREATE, dumps(envelope).encode()))
    assert processed.status == "dead_letter"
    return processed.records[0].headers


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda o: o["addresses"][0].update(email={"x": SECRET}), "/params/order/addresses/0/email"),
        (lambda o: o["addresses"][0].update(first_name=[SECRET]), "/params/order/addresses/0/first_name"),
        (lambda o: o.update(addresses=[{"email": SECRET}] * 3), "/params/order/addresses"),
        (lambda o: o.update(ip={"v": SECRET}), "/params/order/ip"),
    ],
)
def test_a_schema_error_on_a_personal_member_does_not_quote_the_value(change: Any, path: str) -> None:
    envelope = copy.deepcopy(CREATE)
    change(envelope["params"]["order"])
    headers = dead_of(envelope)
    assert headers["dlq.error.class"] == "SchemaValidation"
    assert headers["dlq.error.path"] == path
    assert SECRET not in headers["dlq.error.message"]
    assert "personal data" in headers["dlq.error.message"]


def test_an_error_on_a_value_holding_personal_members_does_not_quote_it() -> None:
    error = DecodeError("SchemaValidation", f"{{'email': '{SECRET}'}} is not valid", "/params/order")
    safe = safe_error(error, {"params": {"order": {"email": SECRET}}})
    assert SECRET not in safe.message and safe.path == "/params/order"


def test_other_errors_keep_their_text_and_every_text_is_capped() -> None:
    plain = DecodeError("SchemaValidation", "'-5.00' does not match", "/params/appeasement/lines/0/amount")
    assert safe_error(plain) is plain
    long = safe_error(DecodeError("SchemaValidation", "x" * 5000, "/params/order/lines/0/sku"))
    assert len(long.message) == MAX_ERROR_CHARS
    envelope = copy.deepcopy(CREATE)
    envelope["params"]["order"]["lines"][0]["sku"] = "y" * 5000
    assert len(dead_of(envelope)["dlq.error.message"]) <= MAX_ERROR_CHARS


def letter(value: bytes, path: str = "/params/order/addresses/0/email") -> dlq.DeadLetter:
    headers = [
        ("dlq.error.class", b"SchemaValidation"),
        ("dlq.error.path", path.encode()),
        ("dlq.original.topic", names.ORDER_CREATE.encode()),
    ]
    return dlq.DeadLetter(Fetched("oms.dlq", 0, 3, None, b"OCTO:1234", value, headers))


def test_dlq_show_redacts_the_personal_members_of_the_original_unless_asked() -> None:
    envelope = copy.deepcopy(CREATE)
    envelope["params"]["order"]["addresses"][0]["email"] = SECRET
    raw = dumps(envelope).encode()
    shown = letter(raw).detail()
    text = json.dumps(shown)
    for value in (SECRET, "Alex", "1 Sample Street", "0400 000 000", "203.0.113.7"):
        assert value not in text, value
    assert shown["personal_data"] == "redacted"
    assert shown["value_at_pointer"] == REDACTED
    original = loads(shown["original_value"])
    address = original["params"]["order"]["addresses"][0]
    assert address["email"] == REDACTED and address["first_name"] == REDACTED
    assert original["params"]["order"]["lines"][0]["sku"] == "WE234"  # what is not personal stays
    full = letter(raw).detail(personal=True)
    assert full["original_value"] == raw.decode() and full["value_at_pointer"] == SECRET
    assert full["personal_data"] == "shown"


def test_dlq_show_withholds_a_value_that_is_not_json_unless_asked() -> None:
    raw = f'{{"order": {{"email": "{SECRET}"'.encode()
    shown = letter(raw, "").detail()
    assert SECRET not in json.dumps(shown) and shown["original_withheld"]
    assert SECRET in letter(raw, "").detail(personal=True)["original_value"]
    binary = letter(b"\xff" + SECRET.encode(), "").detail()
    assert SECRET not in json.dumps(binary)
