"""return_management.update: the tracking and custom attributes of an open return."""

from __future__ import annotations

from typing import Any

from domain import names
from tests.unit.harness import Harness, events, line, order, rejection, return_of


def update(rma: str | None, **fields: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"sales_channel_id": "OCTO", "order_id": "1", "source_id": "DEFAULT", **fields}
    if rma is not None:
        header["rma"] = rma
    return {"return": header}


def opened(h: Harness, **header: Any) -> str:
    h.create(order("1", [line(1, "A", "10.00"), line(2, "B", "20.00")]))
    h.ship("1", [(1, 1), (2, 1)])
    ret = events(h.ret("1", [{"line_number": 1}], **header), names.RETURN_UPDATED)[-1]
    return str(ret["return"]["rma"])


def test_tracking_and_attributes_of_an_open_return_are_kept_and_published() -> None:
    h = Harness.with_rules(auto_approve_return=False, reorder_window_seconds=0)
    rma = opened(h)
    done = h.send(
        names.RETURN_UPDATE,
        update(
            rma,
            return_tracking_number="1Z9",
            return_tracking_carrier="UPS",
            custom_attributes=[
                {"name": "drop_off", "value": "Store 12"},
                {"attribute_code": "bag", "value": 2},
            ],
        ),
    )
    (published,) = events(done, names.RETURN_UPDATED)
    ret = published["return"]
    assert (ret["rma"], ret["status"]["code"]) == (rma, "REQUESTED")
    assert (ret["return_tracking_number"], ret["return_tracking_carrier"]) == ("1Z9", "UPS")
    assert ret["return_tracking_url"] is None
    assert ret["custom_attributes"] == [
        {"name": "drop_off", "value": "Store 12"},
        {"name": "bag", "value": 2},
    ]
    # A later update changes what it sends and keeps the rest.
    later = h.send(
        names.RETURN_UPDATE,
        update(rma, return_tracking_url="https://t/1Z9", custom_attributes=[{"name": "bag", "value": 3}]),
    )
    ret = events(later, names.RETURN_UPDATED)[0]["return"]
    assert (ret["return_tracking_number"], ret["return_tracking_url"]) == ("1Z9", "https://t/1Z9")
    assert ret["custom_attributes"] == [
        {"name": "drop_off", "value": "Store 12"},
        {"name": "bag", "value": 3},
    ]
    same = h.send(names.RETURN_UPDATE, update(rma, return_tracking_url="https://t/1Z9"))
    assert same.status == "skipped" and same.events == []
    # The receipt's return document still carries them.
    received = h.ret("1", [{"line_number": 1, "condition": "GOOD"}], name=names.RETURN_RECEIVED, rma=rma)
    assert events(received, names.RETURN_UPDATED)[-1]["return"]["return_tracking_number"] == "1Z9"


def test_the_tracking_of_an_authorization_is_kept_and_a_return_without_any_shows_none() -> None:
    h = Harness.with_rules(reorder_window_seconds=0)
    h.create(order("1", [line(1, "A", "10.00"), line(2, "B", "20.00")]))
    h.ship("1", [(1, 1), (2, 1)])
    plain = events(h.ret("1", [{"line_number": 2}]), names.RETURN_UPDATED)[0]["return"]
    assert "return_tracking_number" not in plain and "custom_attributes" not in plain
    tracked = h.send(
        names.RETURN_AUTHORIZE, return_of("1", [{"line_number": 1}], return_tracking_number="T-1")
    )
    assert events(tracked, names.RETURN_UPDATED)[0]["return"]["return_tracking_number"] == "T-1"


def test_a_closed_or_unknown_return_is_refused() -> None:
    h = Harness.with_rules(refund_on="receipt", reorder_window_seconds=0)
    rma = opened(h)
    h.ret("1", [{"line_number": 1, "condition": "GOOD"}], name=names.RETURN_RECEIVED, rma=rma)
    assert h.order("1").returns[rma].status == "CLOSED"
    assert (
        rejection(h.send(names.RETURN_UPDATE, update(rma, return_tracking_number="X"))) == "RETURN_NOT_OPEN"
    )
    assert (
        rejection(h.send(names.RETURN_UPDATE, update("NOPE", return_tracking_number="X")))
        == "RETURN_NOT_OPEN"
    )


def test_an_update_that_overtook_its_authorization_waits_for_it() -> None:
    h = Harness.with_rules(auto_approve_return=False, reorder_window_seconds=600)
    h.create(order("1", [line(1, "A", "10.00")]))
    h.ship("1", [(1, 1)])
    held = h.send(names.RETURN_UPDATE, update("OCTO-1-R01", return_tracking_number="EARLY"))
    assert held.status == "held"
    after = h.ret("1", [{"line_number": 1}], rma="OCTO-1-R01")
    assert [
        e.params["return"].get("return_tracking_number")
        for e in after.events
        if e.name == names.RETURN_UPDATED
    ][-1] == "EARLY"
