"""Retention: an order whose post-sales life is over leaves state `retain_days` after its last change, on
message time; old creates are archived, not applied again."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain import names
from domain.timeutil import iso, parse_time
from tests.unit.harness import (
    OCTOPUS,
    Harness,
    appeasement,
    events,
    line,
    order,
    rejection,
    return_of,
    shipment,
)
from workers.engine.stores import Stores
from workers.replay.runner import replay


def at(h: Harness, moment: datetime) -> None:
    """The next message arrives at `moment` (the harness adds one minute per message)."""
    h.now = moment - timedelta(minutes=1)


def closed_octopus(**rules: Any) -> Harness:
    """OCTOPUS created and shipped, nothing open: its life is over after the shipment."""
    h = Harness.with_rules(retain_days=30, **rules)
    h.create(OCTOPUS)
    h.ship("1234", [(1, 1), (2, 2), (3, 1)])
    return h


def changed(h: Harness) -> datetime:
    moment = parse_time(h.order("1234").changed_at)
    assert moment is not None
    return moment


def test_an_order_stays_until_retain_days_after_its_last_change_then_is_forgotten() -> None:
    h = closed_octopus()
    last = changed(h)
    at(h, last + timedelta(days=30) - timedelta(seconds=1))
    kept = h.ret("1234", [{"line_number": 1}])
    assert kept.status == "applied" and kept.forgotten is None
    # That return is open: nothing forgets the order while it waits for its goods.
    at(h, changed(h) + timedelta(days=300))
    assert h.send(names.APPEASEMENT_CREATE, appeasement("1234", [(1, "5.00")]), minutes=1).forgotten is None


def test_at_the_end_of_its_retention_the_next_message_finds_the_order_forgotten() -> None:
    h = closed_octopus()
    at(h, changed(h) + timedelta(days=30))
    outcome = h.ret("1234", [{"line_number": 1}])
    assert outcome.forgotten is not None and outcome.forgotten.order_key == "OCTO:1234"
    assert outcome.status == "held"  # as for an order never seen
    assert not h.order("1234").known
    (settled,) = h.settle(minutes=61)
    (refused,) = events(settled, names.ERROR_NOTIFY)
    assert refused["code"] == "UNKNOWN_ORDER" and "archived" in refused["message"]


def test_what_keeps_an_order_alive() -> None:
    # A return awaiting its goods.
    h = closed_octopus(refund_on="receipt")
    h.ret("1234", [{"line_number": 1}])
    at(h, changed(h) + timedelta(days=100))
    assert h.send(names.APPEASEMENT_CREATE, appeasement("1234", [(1, "5.00")])).forgotten is None
    # A held message (an appeasement that came before its order).
    h = Harness.with_rules(retain_days=30)
    early = h.send(names.APPEASEMENT_CREATE, appeasement("1234", [(1, "5.00")]))
    assert early.status == "held"
    h.now += timedelta(days=100)
    assert h.send(names.APPEASEMENT_CREATE, appeasement("1234", [(1, "1.00")])).forgotten is None
    # A credit note waiting for release.
    h = closed_octopus(auto_release_refund=False)
    h.send(names.APPEASEMENT_CREATE, appeasement("1234", [(1, "5.00")]))
    at(h, changed(h) + timedelta(days=100))
    assert h.send(names.APPEASEMENT_CREATE, appeasement("1234", [(1, "1.00")])).forgotten is None


def test_a_refused_message_does_not_extend_the_retention() -> None:
    h = closed_octopus()
    last = changed(h)
    at(h, last + timedelta(days=10))
    assert rejection(h.ret("1234", [{"line_number": 9}])) == "UNKNOWN_LINE"
    assert changed(h) == last
    at(h, last + timedelta(days=30))
    assert h.ret("1234", [{"line_number": 1}]).forgotten is not None


def test_an_old_create_is_archived_and_never_reserves_stock_again() -> None:
    h = Harness.with_rules(retain_days=30)
    created = h.create(OCTOPUS)  # origin_date 2026-11-01T09:00Z, message one minute later
    assert created.status == "applied" and h.ats("DEFAULT", "MS232") == -2
    h.ship("1234", [(1, 1), (2, 2), (3, 1)])
    at(h, changed(h) + timedelta(days=30))
    again = h.create(OCTOPUS)
    assert again.status == "archived" and again.order is None and not again.movements
    assert again.forgotten is not None
    assert "OCTO:1234" not in h.orders or not h.orders["OCTO:1234"].known
    # Just inside the retention, a create of an order never seen is applied.
    fresh = order("77", [line(1, "X1", "10")], origin_date=iso(h.now - timedelta(days=29)))
    assert h.create(fresh).status == "applied"


# -- the purge through replay: what it removes is exactly the orders whose life ended ---------------

RULES = {"defaults": {"retain_days": 10, "unknown_order_hold_minutes": 60}}
START = datetime(2026, 1, 1, tzinfo=UTC)


def _record(name: str, params: dict[str, Any], message_id: str, moment: datetime) -> str:
    envelope = {"jsonrpc": "2.0", "id": message_id, "method": name, "params": params}
    millis = int(moment.timestamp() * 1000)
    return json.dumps({"topic": name, "timestamp": millis, "value": envelope})


def _story(number: int, day: int, shipped: int | None, returned: int | None) -> list[tuple[datetime, str]]:
    order_id = f"O{number}"
    created = START + timedelta(days=day)
    params = order(order_id, [line(1, f"SKU{number}", "10", qty=2)], origin_date=iso(created))
    lines = [(created, _record(names.ORDER_CREATE, params, f"{order_id}-c", created))]
    if shipped is not None:
        moment = created + timedelta(days=shipped)
        ship = shipment(order_id, [(1, 2)])
        lines.append((moment, _record(names.SHIPMENT_DONE, ship, f"{order_id}-s", moment)))
        if returned is not None:
            moment += timedelta(days=returned)
            ret = return_of(order_id, [{"line_number": 1, "quantity": 1}])
            lines.append((moment, _record(names.RETURN_AUTHORIZE, ret, f"{order_id}-r", moment)))
    return lines


def _run(lines: list[str]) -> Stores:
    from domain.rules import parse_rules

    stores = Stores()
    replay(iter(lines), io.StringIO(), parse_rules(RULES), stores=stores)
    return stores


# Each order's messages come less than retain_days apart (a longer gap ends its life, and a later
# message starts another, as for an order never seen); orders start over 60 days.
STORIES = st.lists(
    st.tuples(
        st.integers(0, 60),
        st.one_of(st.none(), st.integers(0, 9)),
        st.one_of(st.none(), st.integers(0, 9)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(stories=STORIES)
def test_the_purge_removes_exactly_the_orders_whose_retention_ended(
    stories: list[tuple[int, int | None, int | None]],
) -> None:
    timed = sorted(
        (entry for number, story in enumerate(stories) for entry in _story(number, *story)),
        key=lambda entry: entry[0],
    )
    end = timed[-1][0]
    state = _run([text for _, text in timed])
    # An order whose last message came more than retain_days + the sweep's grace before the end, and
    # whose life was over then, is gone; every other order is there, as a replay of its own messages
    # (without the purged ones) leaves it.
    purged = set()
    for number, (day, shipped, returned) in enumerate(stories):
        last = START + timedelta(days=day + (shipped or 0) + (returned or 0 if shipped is not None else 0))
        open_return = shipped is not None and returned is not None
        if not open_return and end - last >= timedelta(days=11):
            purged.add(f"OCTO:O{number}")
    assert purged.isdisjoint(state.orders)
    kept_lines = [
        text for _, text in timed if f"OCTO:{json.loads(text)['value']['id'].split('-')[0]}" not in purged
    ]
    alone = _run(kept_lines)
    assert dict(state.orders.items()) == dict(alone.orders.items())
    assert dict(state.taken.items()) == dict(alone.taken.items())
    assert {key for key in state.orders} == {f"OCTO:O{n}" for n in range(len(stories))} - purged


def test_a_settle_dates_the_order_by_the_messages_deadlines_not_by_the_clock_that_settles() -> None:
    # A worker settles held messages on its clock's ticks; retention must still count in message time.
    h = Harness.with_rules(retain_days=30)
    held = h.send(names.APPEASEMENT_CREATE, appeasement("1234", [(1, "5.00")]))
    assert held.status == "held" and held.order is not None
    deadline = held.order.held[0].deadline
    (settled,) = h.settle(minutes=60 * 24 * 100)
    assert [e["code"] for e in events(settled, names.ERROR_NOTIFY)] == ["UNKNOWN_ORDER"]
    assert h.order("1234").changed_at == deadline
