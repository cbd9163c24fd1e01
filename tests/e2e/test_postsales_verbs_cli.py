"""`oms-postsales replay` end to end with the post-sales verbs: a credit note released and one cancelled,
a return's tracking updated, a POS refund of an order never seen, an order paid by gift card and card."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain import names
from tests.e2e.test_replay_cli import EXAMPLES, params, replay_examples, run


def test_the_example_log_releases_one_pending_note_and_cancels_another() -> None:
    out = replay_examples()
    notes = [
        p["refund"] for p in params(out, names.REFUND_UPDATED) if p["refund"]["sales_channel_id"] == "ST1"
    ]
    statuses = [(n["credit_note_number"], n["status"]["code"]) for n in notes]
    assert statuses[:2] == [("CN-ST1-0-000001", "PENDINGRELEASE"), ("CN-ST1-0-000002", "PENDINGRELEASE")]
    assert ("CN-ST1-0-000002", "CANCELLED") in statuses and ("CN-ST1-0-000001", "RELEASED") in statuses
    st1 = [p["order"] for p in params(out, names.ORDER_UPDATED) if p["order"]["id"] == "12135"]
    after_cancel = st1[-1]["postsales"]["transactions"]
    assert [t["credit_note_number"] for t in after_cancel if t["type"] == "REFUND"] == ["CN-ST1-0-000001"]
    tracked = [
        p["return"] for p in params(out, names.RETURN_UPDATED) if "return_tracking_number" in p["return"]
    ]
    assert tracked and tracked[0]["rma"] == "ST1-12135-R02" and tracked[0]["return_tracking_carrier"] == "UPS"
    assert tracked[0]["custom_attributes"] == [{"name": "drop_off_point", "value": "Store 12"}]


def _record(topic: str, ms: int, message_id: str, params: dict[str, Any]) -> str:
    value = {"jsonrpc": "2.0", "id": message_id, "method": topic, "params": params}
    return json.dumps({"topic": topic, "timestamp": ms, "value": value})


def test_a_pos_refund_of_an_order_never_seen_is_a_standalone_note_that_restocks(tmp_path: Path) -> None:
    refund = {
        "client": "pos",
        "order_id": "pos-77",
        "store_id": "DOSHII",
        "source_id": "VENUE-1",
        "status": {"date": "2026-11-01T10:00:00Z"},
        "lines": [
            {
                "order_line": "1",
                "sku": "FLAT-WHITE",
                "quantity": 2,
                "restock": True,
                "reason_description": "spilled",
                "payments": [{"ref": "CASH", "details": {"cost_gross": "9.00"}}],
            }
        ],
    }
    log = tmp_path / "pos.jsonl"
    start = 1_793_523_600_000
    # The refund, then any later message: the hold (30 minutes on DOSHII) ends on message time.
    later = {
        "snapshot": {
            "source_id": "VENUE-2",
            "mode": "DELTA",
            "created_on": "2026-11-01T11:00:00Z",
            "stock": [],
        }
    }
    log.write_text(
        _record(names.REFUND_CREATE, start, "pos-77-refund", {"refund": refund})
        + "\n"
        + _record(names.STOCK_UPDATE, start + 3_600_000, "later", later)
        + "\n"
    )
    done = run("replay", str(log), "--rules", str(EXAMPLES / "rules.toml"))
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    (note,) = [p["refund"] for p in params(out, names.REFUND_UPDATED)]
    assert note["standalone"] is True and note["totals"]["cost_gross"] == "9.00"
    assert note["lines"][0]["sku"] == "FLAT-WHITE" and note["document_type"] == "INVENTORY_CREDIT_MEMO"
    assert params(out, names.ERROR_NOTIFY) == []
    (adjusted,) = params(out, names.STOCK_ADJUSTED)
    assert adjusted["adjustment"]["source_id"] == "VENUE-1"
    assert adjusted["adjustment"]["adjustments"][0]["on_hand"] == 2


def test_a_split_tender_order_refunds_to_each_payment(tmp_path: Path) -> None:
    log_lines = (EXAMPLES / "message-log.jsonl").read_text().splitlines()
    create = json.loads(log_lines[1])  # the Octopus order 1234, one payment
    order = create["value"]["order"] if "order" in create["value"] else create["value"]["params"]["order"]
    order = json.loads(json.dumps(order))
    order["id"] = "split-1"
    total = sum(Decimal(str(line["amount"]["gross_amount"])) for line in order["lines"])
    card = order["payments"][0]
    card["transactions"][0]["amount"] = str(total - Decimal("20.00"))
    gift = json.loads(json.dumps(card))
    gift["reference"] = "GIFT-1"
    gift["transactions"][0].update(payment_method="gift card", amount="20.00")
    order["payments"].append(gift)
    appeasement = {
        "appeasement": {
            "sales_channel_id": order["store"],
            "order_id": "split-1",
            "user": "cs",
            "lines": [{"line_number": 1, "amount": "25.00", "reason": "R", "reason_description": "late"}],
        }
    }
    log = tmp_path / "split.jsonl"
    log.write_text(
        _record(names.ORDER_CREATE, 1_793_523_600_000, "split-create", {"order": order})
        + "\n"
        + _record(names.APPEASEMENT_CREATE, 1_793_523_660_000, "split-appease", appeasement)
        + "\n"
    )
    done = run("replay", str(log), "--rules", str(EXAMPLES / "rules.toml"))
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    (note,) = [p["refund"] for p in params(out, names.REFUND_UPDATED)]
    # An appeasement belongs to no one line's payment: the gift card first, the rest to the card.
    assert note["payments"] == [
        {
            "ref": card["reference"],
            "payment_method": card["transactions"][0]["payment_method"],
            "amount": "5.00",
        },
        {"ref": "GIFT-1", "payment_method": "gift card", "amount": "20.00"},
    ]
    (updated,) = [p["order"] for p in params(out, names.ORDER_UPDATED)]
    refunds = [t for t in updated["postsales"]["transactions"] if t["type"] == "REFUND"]
    assert sorted((t["reference"], t["amount"]) for t in refunds) == sorted(
        [(card["reference"], "-5.00"), ("GIFT-1", "-20.00")]
    )
