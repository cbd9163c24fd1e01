"""Values stored by an earlier version (pydantic models, release 0.1.0) read by this one: tables and
changelogs outlive an upgrade, so the new reader must take the old bytes and write them back the same.
The files in tests/data/stored-values were written by that version's `model_dump_json()`."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from domain.state import HeldMessage, OrderState, Series, StockItem
from workers.engine.values import JsonValues

STORED = Path(__file__).resolve().parent.parent / "data" / "stored-values"


def test_an_order_written_by_the_pydantic_version_reads_and_writes_back_all_it_held() -> None:
    old = (STORED / "order.json").read_bytes().strip()
    order = JsonValues(OrderState).decode(old)
    assert order.returns and len(order.transactions) > 1 and order.lines
    assert all(isinstance(number, int) for number in order.lines)
    # Written back: every member as it was, in its place, plus what was added since at the end of the
    # order, its lines, transactions and returns: dates (return window, retention; unknown for an order
    # of that version), the credit notes' statuses (none pending), payment methods, return tracking,
    # exchanges, return fees.
    expected = json.loads(old)
    for line in expected["lines"].values():
        line["shipped_at"] = None
        line["exchanged"] = 0
        line["fees"] = None
    expected["ordered_at"] = None
    expected["changed_at"] = None
    expected["pending_notes"] = {}
    expected["cancelled_notes"] = []
    for transaction in expected["transactions"]:
        transaction["method"] = None
    for ret in expected["returns"].values():
        ret["tracking"] = None
        ret["custom_attributes"] = []
        ret["exchange_order_id"] = None
        ret["exchange_child_json"] = None
        for rline in ret["lines"]:
            rline["new_sku"] = None
    written = JsonValues(OrderState).encode(order)
    assert list(json.loads(written).items()) == list(expected.items())
    assert written == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode()


def test_a_stock_item_written_by_the_pydantic_version_reads_and_writes_back_byte_for_byte() -> None:
    old = (STORED / "stock-item.json").read_bytes().strip()
    item = JsonValues(StockItem).decode(old)
    assert item.since_count and all(isinstance(change, tuple) for change in item.since_count)
    assert JsonValues(StockItem).encode(item) == old


def test_held_messages_and_a_series_of_the_older_layout_still_read() -> None:
    document = json.loads((STORED / "order.json").read_text())
    document["held"] = [
        {
            "message_name": "magento.postsales.appeasement_management.create",
            "message_id": "early-1",
            "params_json": "{}",
            "arrived": "2026-11-01T08:00:00Z",
            "deadline": "2026-11-01T09:00:00Z",
            "waits_for": None,
        }
    ]
    order = JsonValues(OrderState).decode(json.dumps(document))
    assert order.held == [
        HeldMessage(
            message_name="magento.postsales.appeasement_management.create",
            message_id="early-1",
            params_json="{}",
            arrived="2026-11-01T08:00:00Z",
            deadline="2026-11-01T09:00:00Z",
        )
    ]
    legacy = JsonValues(Series).decode(
        '{"name":"OCTO-0","last":3,"issued":{"m1":["CN-OCTO-0-000003"]},"upstream_numbers":{"U-9":"m2"}}'
    )
    assert legacy.issued == {"m1": ["CN-OCTO-0-000003"]} and legacy.upstream_numbers == {"U-9": "m2"}


def test_a_value_that_is_not_one_is_refused() -> None:
    document = json.loads((STORED / "stock-item.json").read_text())
    with pytest.raises(msgspec.ValidationError):
        JsonValues(StockItem).decode(json.dumps({**document, "colour": "red"}))
    with pytest.raises(msgspec.ValidationError):
        JsonValues(StockItem).decode(json.dumps({**document, "on_hand": "many"}))
