"""A crash can persist the credit note series without the order that used it (two table writes).
Re-applying the same message must then give the same numbers, not new ones."""

import json

from domain import names
from domain.handlers import handle, parse
from domain.outcome import MessageMeta
from tests.unit.harness import OCTOPUS, START, Harness, refunds


def test_reapplying_after_a_partial_write_reuses_the_credit_note_number() -> None:
    h = Harness()
    h.create(OCTOPUS)
    h.ship("1234", [(2, 2)])
    params = {"return": {"sales_channel_id": "OCTO", "order_id": "1234", "lines": [{"line_number": 2}]}}
    order_before = h.order("1234")
    meta = MessageMeta(names.RETURN_AUTHORIZE, "ret-1", START)
    first = handle(
        parse(names.RETURN_AUTHORIZE, params), json.dumps(params), order_before, h.series, h.rules, meta
    )
    # Only the series reached the store; the order write was lost, so the message comes again.
    series_after = {**h.series, **first.series}
    again = handle(
        parse(names.RETURN_AUTHORIZE, params), json.dumps(params), order_before, series_after, h.rules, meta
    )
    assert [r["credit_note_number"] for r in refunds(again)] == [
        r["credit_note_number"] for r in refunds(first)
    ]
    assert again.series["OCTO-0"].last == 1


def test_reapplied_upstream_refund_is_not_its_own_duplicate() -> None:
    h = Harness()
    h.create(OCTOPUS)
    params = {
        "refund": {
            "client": "shop",
            "order_id": "1234",
            "store_id": "OCTO",
            "credit_note_number": "UP-1",
            "status": {"date": "2026-11-05"},
            "refund_mode": "AMOUNT_ONLY",
            "lines": [
                {
                    "order_line": "1",
                    "reason_description": "d",
                    "payments": [{"ref": "PAY1", "details": {"cost_gross": "5.00"}}],
                }
            ],
        }
    }
    order_before = h.order("1234")
    meta = MessageMeta(names.REFUND_CREATE, "up-1", START)
    first = handle(
        parse(names.REFUND_CREATE, params), json.dumps(params), order_before, h.series, h.rules, meta
    )
    again = handle(
        parse(names.REFUND_CREATE, params),
        json.dumps(params),
        order_before,
        {**h.series, **first.series},
        h.rules,
        meta,
    )
    assert again.status == "applied" and refunds(again)[0]["credit_note_number"] == "UP-1"
    other = MessageMeta(names.REFUND_CREATE, "up-2", START)
    reused = handle(
        parse(names.REFUND_CREATE, params),
        json.dumps(params),
        again.order,
        {**h.series, **again.series},
        h.rules,
        other,
    )
    assert reused.status == "rejected" and reused.events[0].params["code"] == "DUPLICATE_REFUND"
