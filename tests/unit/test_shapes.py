"""What the domain makes of the loose shapes: a shipment item without quantity, empty strings."""

from domain import names
from tests.unit.harness import Harness, line, order, rejection, the_refund


def _ship(h: Harness, order_id: str, items: list[dict[str, object]]) -> None:
    h.send(
        names.SHIPMENT_DONE,
        {
            "shipment": {
                "store_id": "OCTO",
                "order_id": order_id,
                "source_id": "DEFAULT",
                "method": "std",
                "packages": [],
                "items": items,
            }
        },
    )


def test_an_item_without_quantity_ships_every_open_unit_of_its_line() -> None:
    h = Harness()
    h.create(order("1", [line(1, "A", "30", qty=3), line(2, "B", "20", qty=2)]))
    h.ship("1", [(1, 1)])
    _ship(h, "1", [{"order_line_number": 1}, {"order_line_number": 2, "quantity": 1}])
    state = h.order("1")
    assert (state.lines[1].shipped, state.lines[1].reserved) == (3, 0)  # the 2 still open, not 1
    assert (state.lines[2].shipped, state.lines[2].reserved) == (1, 1)  # with quantity: just that
    assert h.stock["DEFAULT:A"].on_hand == -3


def test_an_item_without_quantity_for_a_line_with_nothing_left_is_refused() -> None:
    h = Harness()
    h.create(order("2", [line(1, "A", "10", qty=2)]))
    h.ship("2", [(1, 2)])
    outcome = h.send(
        names.SHIPMENT_DONE,
        {
            "shipment": {
                "store_id": "OCTO",
                "order_id": "2",
                "source_id": "DEFAULT",
                "method": None,
                "items": [{"order_line_number": "1", "quantity": None}],
            }
        },
    )
    assert rejection(outcome) == "NOT_ALLOWED"
    assert h.order("2").lines[1].shipped == 2


def _refund(h: Harness, number: str) -> dict[str, object]:
    return the_refund(
        h.send(
            names.REFUND_CREATE,
            {
                "refund": {
                    "client": "",
                    "order_id": "3",
                    "store_id": "OCTO",
                    "credit_note_number": number,
                    "status": {"date": "2026-11-05T10:00:00Z"},
                    "refund_mode": "AMOUNT_ONLY",
                    "lines": [
                        {
                            "order_line": "1",
                            "reason_description": "",
                            "payments": [{"ref": "PAY1", "details": {"cost_gross": "1.00"}}],
                        }
                    ],
                }
            },
        )
    )


def test_an_empty_upstream_credit_note_number_is_absent_and_the_worker_numbers_the_note() -> None:
    h = Harness()
    h.create(order("3", [line(1, "A", "10")]))
    first, second = _refund(h, ""), _refund(h, "")  # two "" are not the same upstream number
    assert [first["credit_note_number"], second["credit_note_number"]] == [
        "CN-OCTO-0-000001",
        "CN-OCTO-0-000002",
    ]
    assert h.series["OCTO-0"].upstream_numbers == {}


def test_an_empty_source_location_reserves_at_the_default_source() -> None:
    h = Harness.with_rules(default_source="WH")
    h.create(order("4", [line(1, "A", "10", source_location="")]))
    assert h.stock["WH:A"].reserved == 1 and "" not in {key.split(":")[0] for key in h.stock}
