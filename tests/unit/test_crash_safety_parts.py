"""The small parts of crash safety that need no broker: crash point parsing, store selection and the
fingerprint a RocksDB folder is checked with (the whole protocol runs in tests/integration)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from workers.kafka import crashpoints
from workers.kafka.durable_tables import SCHEME, fingerprint, store_url


def test_a_crash_point_is_named_and_optionally_counted() -> None:
    assert crashpoints._parse("orders.series-written") == ("orders.series-written", 1)
    assert crashpoints._parse("stock.stock-settled@8") == ("stock.stock-settled", 8)
    assert crashpoints._parse("") == ("", 1)
    with pytest.raises(SystemExit, match="no such point"):
        crashpoints._parse("orders.somewhere")


def test_several_points_are_armed_together_each_with_its_count() -> None:
    assert crashpoints._parse_all("intake.outputs-sent, stock.stock-settled@8") == {
        "intake.outputs-sent": 1,
        "stock.stock-settled": 8,
    }
    assert crashpoints._parse_all("") == {}
    with pytest.raises(SystemExit, match="armed twice"):
        crashpoints._parse_all("orders.orders-written,orders.orders-written@8")
    with pytest.raises(SystemExit, match="no such point"):
        crashpoints._parse_all("intake.outputs-sent,orders.somewhere")


def test_a_point_nobody_asked_for_does_nothing() -> None:
    # This process has no OMS_TEST_CRASH_AT: reaching every point must leave it alive.
    assert not os.environ.get(crashpoints.VARIABLE)
    for point in crashpoints.POINTS:
        crashpoints.reach(point)


def test_the_asked_point_kills_the_process_the_nth_time_with_sigkill() -> None:
    code = (
        "from workers.kafka import crashpoints\n"
        "crashpoints.reach('orders.orders-written')\n"
        "print('first passed', flush=True)\n"
        "crashpoints.reach('orders.orders-written')\n"
        "print('second passed', flush=True)\n"
    )
    env = {**os.environ, crashpoints.VARIABLE: "orders.orders-written@2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -9
    assert done.stdout == "first passed\n"
    assert "crash point reached: orders.orders-written" in done.stderr


def test_of_several_armed_points_the_first_reached_kills() -> None:
    code = (
        "from workers.kafka import crashpoints\n"
        "crashpoints.reach('stock.stock-written')\n"
        "print('stock passed once', flush=True)\n"
        "crashpoints.reach('orders.numbers-written')\n"
        "print('numbers passed', flush=True)\n"
    )
    env = {**os.environ, crashpoints.VARIABLE: "stock.stock-written@2,orders.numbers-written"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -9
    assert done.stdout == "stock passed once\n"
    assert "crash point reached: orders.numbers-written" in done.stderr


def test_rocksdb_selects_the_crash_safe_store_and_memory_stays() -> None:
    assert store_url("rocksdb://") == f"{SCHEME}://"
    assert store_url("rocksdb:///var/lib/x") == f"{SCHEME}:///var/lib/x"
    assert store_url("memory://") == "memory://"


def test_the_fingerprint_tells_key_value_and_tombstone_apart() -> None:
    records = [(b"k", b"v"), (b"k", b"w"), (b"kv", b""), (b"k", b""), (b"k", None)]
    assert len({fingerprint(key, value) for key, value in records}) == len(records)
    assert fingerprint(b"k", b"v") == fingerprint(b"k", b"v")
