"""The crash-point run's spare traffic (testkit/chaos_traffic.py): fresh orders whose every wave prefix
is a log replay takes whole, and that does real work (orders written, stock moved) in each wave."""

from __future__ import annotations

import io
import json
import tomllib

from domain import names
from testkit.chaos_traffic import RULES_TOML, chaos_waves, spare_waves
from workers.config.rules_file import parse_rules
from workers.replay.runner import replay


def _order(record: dict) -> str:
    params = record["value"]["params"]
    return str(params["order"]["id"] if "order" in params else params["shipment"]["order_id"])


def test_spare_waves_are_fresh_orders_created_before_they_ship() -> None:
    main = chaos_waves(300, seed=11)
    spare = spare_waves(11, rounds=5)
    main_ids = {r["value"]["id"] for w in main for r in w.records}
    main_orders = {_order(r) for w in main for r in w.records if r["topic"] == names.ORDER_CREATE}
    assert [w.topic for w in spare] == [names.ORDER_CREATE, names.SHIPMENT_DONE] * 5
    created: set[str] = set()
    for wave in spare:
        assert not {r["value"]["id"] for r in wave.records} & main_ids
        orders = {_order(r) for r in wave.records}
        assert not orders & main_orders
        if wave.topic == names.ORDER_CREATE:
            created |= orders
        else:  # a prefix that ends here ships only what it created
            assert orders <= created


def test_each_spare_create_moves_stock_and_each_spare_shipment_updates_its_order() -> None:
    main, spare = chaos_waves(100, seed=11), spare_waves(11, rounds=3)
    log = [json.dumps(r) + "\n" for w in [*main, *spare] for r in w.records]
    out = io.StringIO()
    replay(iter(log), out, parse_rules(tomllib.loads(RULES_TOML)), partitions=4, settle_at_end=False)
    outputs = [json.loads(line) for line in out.getvalue().splitlines()]
    caused = {(r["topic"], r["headers"]["causation_id"]) for r in outputs}
    for wave in spare:
        for record in wave.records:
            wanted = names.STOCK_ADJUSTED if wave.topic == names.ORDER_CREATE else names.ORDER_UPDATED
            assert (wanted, record["value"]["id"]) in caused
