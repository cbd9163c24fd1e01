"""A Magento-shaped order through `oms-postsales replay`: offline payment with null gateway fields, nulls,
"", "1.0000", [] for empty objects, extra members; then its shipment (items without quantity) and a
blind return receipt (rma ""). Everything is applied; the figures below are worked out by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from domain import names
from workers.engine.validation import default_validators

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "magento-shaped.jsonl"
CLI = str(Path(sys.executable).parent / "oms-postsales")


@pytest.fixture(scope="module")
def outputs() -> list[dict[str, Any]]:
    done = subprocess.run(
        [CLI, "replay", str(LOG), "--rules", str(ROOT / "examples" / "rules.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "emitted 12 (applied=3)" in done.stderr, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def of(outputs: list[dict[str, Any]], name: str, cause: str | None = None) -> list[dict[str, Any]]:
    return [
        r["value"]["params"]
        for r in outputs
        if r["topic"] == name and (cause is None or r["headers"]["causation_id"] == cause)
    ]


def test_the_log_really_carries_the_loose_shapes() -> None:
    create, shipment, receipt = (json.loads(line)["value"]["params"] for line in LOG.read_text().splitlines())
    tx = create["order"]["payments"][0]["transactions"][0]
    assert tx["payment_method"] == "checkmo"
    assert (
        tx["gateway_information"]["account"] is None and tx["gateway_information"]["transaction_id"] is None
    )
    assert (
        create["order"]["lines"][0]["quantity"] == "2.0000"
        and create["order"]["lines"][0]["source_location"] == ""
    )
    assert create["order"]["promotions_info"] == [] and create["order"]["customer"]["id"] is None
    assert shipment["shipment"]["shipment_id"] == "" and shipment["shipment"]["address"] == []
    assert all("quantity" not in item for item in shipment["shipment"]["items"])
    assert receipt["return"]["rma"] == "" and receipt["return"]["lines"][0]["quantity"] == "1.0000"


def test_nothing_is_dead_lettered_and_every_output_is_valid(outputs: list[dict[str, Any]]) -> None:
    assert not [r for r in outputs if r["topic"] == names.DEFAULT_DLQ_TOPIC]
    assert not of(outputs, names.ERROR_NOTIFY)
    validators = default_validators()
    for record in outputs:
        assert validators.check(record["topic"], record["value"]["params"]) is None, record["topic"]


def test_stock_is_reserved_at_the_default_source_shipped_in_full_and_restocked(
    outputs: list[dict[str, Any]],
) -> None:
    moves = [
        (p["adjustment"]["source_id"], p["adjustment"]["reason"], a["sku"], a["on_hand"], a["reserved"])
        for p in of(outputs, names.STOCK_ADJUSTED)
        for a in p["adjustment"]["adjustments"]
    ]
    # source_location "" is absent: the channel's default source (WH-MAIN), not a source named "".
    assert moves == [
        ("WH-MAIN", "RESERVATION", "24-MB01", 0, 2),  # quantity "2.0000" is 2 units
        ("WH-MAIN", "RESERVATION", "24-WB04", 0, 1),
        ("WH-MAIN", "SHIPMENT", "24-MB01", -2, 0),  # an item without quantity ships every open unit
        ("WH-MAIN", "SHIPMENT", "24-WB04", -1, 0),
        ("WH-MAIN", "RETURN_RESTOCK", "24-MB01", -1, 0),  # condition GOOD: back on sale
    ]


def test_the_order_is_updated_after_the_shipment_and_the_return(outputs: list[dict[str, Any]]) -> None:
    (shipped,) = of(outputs, names.ORDER_UPDATED, "mage-42-ship")
    (returned,) = of(outputs, names.ORDER_UPDATED, "mage-42-received")
    counts = {
        ln["line_number"]: (ln["shipped"], ln["returned"]) for ln in shipped["order"]["postsales"]["lines"]
    }
    assert counts == {1: (2, 0), 2: (1, 0), 3: (0, 0)}
    assert returned["order"]["postsales"]["status"] == "PARTIALLY_REFUNDED"
    assert returned["order"]["postsales"]["refunded"] == {
        "cost_gross": "59.50",
        "cost_net": "50.00",
        "cost_vat": "9.50",
    }
    assert [t["amount"] for t in returned["order"]["postsales"]["transactions"]] == ["184.45", "-59.50"]


def test_the_blind_receipt_opens_a_return_and_refunds_one_of_two_units(outputs: list[dict[str, Any]]) -> None:
    statuses = [p["return"]["status"]["code"] for p in of(outputs, names.RETURN_UPDATED)]
    assert statuses == ["REQUESTED", "APPROVED", "RECEIVED", "CLOSED"]
    (note,) = [p["refund"] for p in of(outputs, names.REFUND_UPDATED)]
    # rma "" is no RMA: one is assigned. 1 of 2 units of a 119.00 line with 19.00 VAT: 59.50, of it 9.50 tax.
    assert note["rma"] == "MAGENTO-000000042-R01"
    assert note["credit_note_number"] == "CN-MAGENTO-0-000001"
    assert note["user"] is None  # user "" is absent
    assert (note["refund_type"], note["document_type"]) == ("return", "INVENTORY_CREDIT_MEMO")
    assert note["totals"] == {"cost_gross": "59.50", "cost_net": "50.00", "cost_vat": "9.50"}
    (line,) = note["lines"]
    assert (line["order_line"], line["quantity"], line["restock"]) == ("1", 1, True)
