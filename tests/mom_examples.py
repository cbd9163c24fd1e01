"""Payloads quoted verbatim from the archived Magento Order Management documentation, for the tests that
check the worker takes them as published."""

from __future__ import annotations

import copy
from typing import Any

# "Example of a magento.postsales.reshipment.management.create message" (its spelling of the name).
_DOCUMENTED_RESHIPMENT: dict[str, Any] = {
    "reshipment": {
        "sales_channel_id": "ST1",
        "order_id": "12345",
        "new_shipping_method": "flatrate Fixed",
        "new_shipping_address": {
            "first_name": "Veronica",
            "last_name": "Costello",
            "company_name": "",
            "address1": "6146 Honey Bluff Parkway",
            "address2": "",
            "city": "Calder",
            "zip": "49628-797",
            "state": "MI",
        },
        "lines": [{"line_number": 2, "reason": "Warehouse mistake", "reason_description": "Wrong item"}],
    },
    "user": "you@youremail.com",
}


def documented_reshipment(**reshipment: Any) -> dict[str, Any]:
    """A fresh copy of the seed's reshipment, with members of `reshipment` added or replaced."""
    params = copy.deepcopy(_DOCUMENTED_RESHIPMENT)
    params["reshipment"].update(reshipment)
    return params
