"""A crash can persist the credit note numbering (series, numbers taken, upstream numbers) without the
order that used it: separate table writes. Re-applying the same message must then give the same
numbers, not new ones; and what a credit note writes must not grow with the store's history."""

import json
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import names
from domain.credit_notes import Ledger
from domain.handlers import handle, parse
from domain.outcome import MessageMeta, Outcome
from domain.state import APPLIED_IDS_KEPT, Series, upstream_key
from tests.unit.harness import OCTOPUS, START, Harness, order, refunds


def _layered(h: Harness, *outcomes: Outcome) -> Ledger:
    """The harness's ledger with the numbering of these outcomes stored, but not their orders."""
    series, taken, upstream = dict(h.series), dict(h.taken), dict(h.upstream)
    for outcome in outcomes:
        series.update(outcome.series)
        taken.update(outcome.taken)
        upstream.update(outcome.upstream)
    return Ledger(series, taken, upstream)


def _upstream_refund(order_id: str, number: str | None, amount: str = "5.00") -> dict[str, Any]:
    refund: dict[str, Any] = {
        "client": "shop",
        "order_id": order_id,
        "store_id": "OCTO",
        "status": {"date": "2026-11-05"},
        "refund_mode": "AMOUNT_ONLY",
        "lines": [
            {
                "order_line": "1",
                "reason_description": "d",
                "payments": [{"ref": "PAY1", "details": {"cost_gross": amount}}],
            }
        ],
    }
    if number is not None:
        refund["credit_note_number"] = number
    return {"refund": refund}


def test_reapplying_after_a_partial_write_reuses_the_credit_note_number() -> None:
    h = Harness()
    h.create(OCTOPUS)
    h.ship("1234", [(2, 2)])
    params = {"return": {"sales_channel_id": "OCTO", "order_id": "1234", "lines": [{"line_number": 2}]}}
    order_before = h.order("1234")
    meta = MessageMeta(names.RETURN_AUTHORIZE, "ret-1", START)
    first = handle(
        parse(names.RETURN_AUTHORIZE, params), json.dumps(params), order_before, h.ledger, h.rules, meta
    )
    assert first.series["OCTO-0"].last == 1
    # Only the numbering reached the store; the order write was lost, so the message comes again.
    again = handle(
        parse(names.RETURN_AUTHORIZE, params),
        json.dumps(params),
        order_before,
        _layered(h, first),
        h.rules,
        meta,
    )
    assert [r["credit_note_number"] for r in refunds(again)] == [
        r["credit_note_number"] for r in refunds(first)
    ]
    assert _layered(h, first, again).series["OCTO-0"].last == 1
    # A message that finds its numbers takes no new one: the series is not even written.
    assert "OCTO-0" not in again.series


def test_without_the_numbers_taken_a_reapplied_message_would_take_new_ones() -> None:
    """The counter-check of the test above: the numbers taken, not the series, make the redelivery safe."""
    h = Harness()
    h.create(OCTOPUS)
    h.ship("1234", [(2, 2)])
    params = {"return": {"sales_channel_id": "OCTO", "order_id": "1234", "lines": [{"line_number": 2}]}}
    meta = MessageMeta(names.RETURN_AUTHORIZE, "ret-1", START)
    command = parse(names.RETURN_AUTHORIZE, params)
    first = handle(command, json.dumps(params), h.order("1234"), h.ledger, h.rules, meta)
    series_only = Ledger({**h.series, **first.series}, h.taken, h.upstream)
    again = handle(command, json.dumps(params), h.order("1234"), series_only, h.rules, meta)
    assert refunds(again)[0]["credit_note_number"] == "CN-OCTO-0-000002"


def test_reapplied_upstream_refund_is_not_its_own_duplicate() -> None:
    h = Harness()
    h.create(OCTOPUS)
    params = _upstream_refund("1234", "UP-1")
    order_before = h.order("1234")
    meta = MessageMeta(names.REFUND_CREATE, "up-1", START)
    command = parse(names.REFUND_CREATE, params)
    first = handle(command, json.dumps(params), order_before, h.ledger, h.rules, meta)
    again = handle(command, json.dumps(params), order_before, _layered(h, first), h.rules, meta)
    assert again.status == "applied" and refunds(again)[0]["credit_note_number"] == "UP-1"
    other = MessageMeta(names.REFUND_CREATE, "up-2", START)
    reused = handle(command, json.dumps(params), again.order, _layered(h, first, again), h.rules, other)
    assert reused.status == "rejected" and reused.events[0].params["code"] == "DUPLICATE_REFUND"


def test_an_upstream_number_is_a_duplicate_on_another_order_of_the_store() -> None:
    h = Harness()
    h.create(OCTOPUS)
    h.create(order("5678", OCTOPUS["order"]["lines"]))
    assert h.send(names.REFUND_CREATE, _upstream_refund("1234", "UP-7")).status == "applied"
    refused = h.send(names.REFUND_CREATE, _upstream_refund("5678", "UP-7"))
    assert refused.status == "rejected" and refused.events[0].params["code"] == "DUPLICATE_REFUND"
    assert h.upstream == {upstream_key("OCTO-0", "UP-7"): "m2"}


def test_an_upstream_number_is_checked_among_the_orders_of_one_partition_only() -> None:
    """Each partition keeps its own index of upstream numbers, next to its orders (README, known
    limits): the same number on an order of another partition is not seen as a duplicate."""
    h = Harness()
    h.create(OCTOPUS)
    h.create(order("5678", OCTOPUS["order"]["lines"]))
    first = h.send(names.REFUND_CREATE, _upstream_refund("1234", "UP-9"), partition=0)
    other = h.send(names.REFUND_CREATE, _upstream_refund("5678", "UP-9"), partition=1)
    assert first.status == other.status == "applied"
    assert refunds(other)[0]["credit_note_number"] == "UP-9"
    assert set(h.upstream) == {upstream_key("OCTO-0", "UP-9"), upstream_key("OCTO-1", "UP-9")}


def test_what_a_credit_note_writes_does_not_grow_with_the_history() -> None:
    h = Harness()
    h.create(OCTOPUS)
    sizes: list[tuple[int, int]] = []
    for n in range(APPLIED_IDS_KEPT + 40):
        outcome = h.send(names.REFUND_CREATE, _upstream_refund("1234", None, "0.01"))
        assert refunds(outcome)[0]["credit_note_number"] == f"CN-OCTO-0-{n + 1:06d}"
        (series,) = outcome.series.values()
        (taken,) = outcome.taken.values()
        sizes.append((len(msgspec.json.encode(series)), len(taken)))
    # The series is its counter: a few bytes more per digit, never more per credit note issued.
    assert max(series_bytes for series_bytes, _ in sizes) <= sizes[0][0] + len(str(len(sizes)))
    # The numbers an order's messages took: as many messages as the order remembers, then no more.
    assert [entries for _, entries in sizes][-41:] == [APPLIED_IDS_KEPT] * 41


def test_a_series_written_by_the_older_layout_is_still_honoured_then_moved_out() -> None:
    h = Harness()
    h.create(OCTOPUS)
    h.ship("1234", [(2, 2)])
    h.series["OCTO-0"] = Series(
        name="OCTO-0", last=7, issued={"ret-1": ["CN-OCTO-0-000007"]}, upstream_numbers={"UP-1": "old"}
    )
    duplicate = h.send(names.REFUND_CREATE, _upstream_refund("1234", "UP-1"))
    assert duplicate.status == "rejected" and duplicate.events[0].params["code"] == "DUPLICATE_REFUND"
    # A crashed message redelivered after the upgrade gets the number the older layout recorded.
    one_unit = {
        "return": {
            "sales_channel_id": "OCTO",
            "order_id": "1234",
            "lines": [{"line_number": 2, "quantity": 1}],
        }
    }
    redelivered = h.send(names.RETURN_AUTHORIZE, one_unit, message_id="ret-1")
    assert refunds(redelivered)[0]["credit_note_number"] == "CN-OCTO-0-000007"
    fresh = h.send(names.RETURN_AUTHORIZE, one_unit)
    assert refunds(fresh)[0]["credit_note_number"] == "CN-OCTO-0-000008"
    assert h.series["OCTO-0"] == Series(name="OCTO-0", last=8)
    assert h.upstream[upstream_key("OCTO-0", "UP-1")] == "old"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["appease", "upstream"]), st.booleans()), min_size=1, max_size=12))
def test_crashes_between_numbering_and_order_writes_keep_numbers_gap_free_and_stable(
    steps: list[tuple[str, bool]],
) -> None:
    h = Harness()
    h.create(OCTOPUS)
    issued: dict[str, list[str]] = {}
    for n, (kind, crash) in enumerate(steps):
        if kind == "appease":
            line = {"line_number": 2, "amount": "1.00", "reason": "R", "reason_description": "d"}
            name, params = (
                names.APPEASEMENT_CREATE,
                {
                    "appeasement": {
                        "sales_channel_id": "OCTO",
                        "order_id": "1234",
                        "user": "u",
                        "lines": [line],
                    }
                },
            )
        else:
            name, params = names.REFUND_CREATE, _upstream_refund("1234", None, "1.00")
        meta = MessageMeta(name, f"msg-{n}", START)
        command = parse(name, params)
        outcome = handle(command, json.dumps(params), h.order("1234"), h.ledger, h.rules, meta)
        if crash:  # the numbering is stored, the order is not: the broker delivers the message again
            h.series.update(outcome.series)
            h.taken.update(outcome.taken)
            h.upstream.update(outcome.upstream)
            again = handle(command, json.dumps(params), h.order("1234"), h.ledger, h.rules, meta)
            assert [r["credit_note_number"] for r in refunds(again)] == [
                r["credit_note_number"] for r in refunds(outcome)
            ]
            outcome = again
        h._absorb(outcome)
        issued[meta.message_id] = [r["credit_note_number"] for r in refunds(outcome)]
    numbers = [number for taken in issued.values() for number in taken]
    assert numbers == [f"CN-OCTO-0-{i:06d}" for i in range(1, len(numbers) + 1)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([None, "taken", "numbering"]), min_size=1, max_size=12))
def test_a_crash_that_kept_the_numbers_taken_but_not_the_counter_takes_no_number_twice(
    crashes: list[str | None],
) -> None:
    """The worker makes the numbers taken durable before the series counters: a crash in between
    keeps the first without the second. The message redelivered takes its numbers again and moves
    the counter past them, so the next message does not take one of them."""
    h = Harness()
    h.create(OCTOPUS)
    issued: list[str] = []
    for n, crash in enumerate(crashes):
        params = _upstream_refund("1234", None, "1.00")
        command = parse(names.REFUND_CREATE, params)
        meta = MessageMeta(names.REFUND_CREATE, f"msg-{n}", START)
        outcome = handle(command, json.dumps(params), h.order("1234"), h.ledger, h.rules, meta)
        if crash is not None:
            h.taken.update(outcome.taken)
            h.upstream.update(outcome.upstream)
            if crash == "numbering":
                h.series.update(outcome.series)
            again = handle(command, json.dumps(params), h.order("1234"), h.ledger, h.rules, meta)
            assert refunds(again)[0]["credit_note_number"] == refunds(outcome)[0]["credit_note_number"]
            outcome = again
        h._absorb(outcome)
        issued.append(refunds(outcome)[0]["credit_note_number"])
    assert issued == [f"CN-OCTO-0-{i:06d}" for i in range(1, len(issued) + 1)]
    assert h.series["OCTO-0"].last == len(issued)
