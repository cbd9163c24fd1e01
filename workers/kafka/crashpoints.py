"""Named points of a batch's commit protocol where a test can have the worker kill itself.

`OMS_TEST_CRASH_AT=<point>` (or `<point>@<n>`: the n-th time) makes the worker send itself SIGKILL
when it reaches that point, so a test can restart it and check that nothing was lost or doubled.
Several points, comma-separated, arm them all: the worker dies at whichever it reaches first (so one
worker can be killed at every point in turn, restarted each time with the points still to come). The
variable is read once at import; unset (always, outside the crash-point tests) `reach` only looks a
string up in an empty dict. It is not a setting: `config show` and `worker --help` do not list it.

A point is reached only when its step did something (records sent, table keys written), so a kill
always leaves work half done.
"""

from __future__ import annotations

import os
import signal
import sys

VARIABLE = "OMS_TEST_CRASH_AT"

#: Every point the worker has, in the order a batch passes them.
POINTS = (
    # intake: records forwarded to the internal topic
    "intake.outputs-sent",
    "intake.outputs-acked",
    # orders: outputs, then the tables in three steps (numbers, series counters, orders and the rest),
    # each written (changelog records queued, the local store not yet changed) then settled
    # (changelog records acknowledged, the local store written), then the consumer's offset commit
    "orders.outputs-sent",
    "orders.outputs-acked",
    "orders.numbers-written",
    "orders.numbers-settled",
    "orders.series-written",
    "orders.series-settled",
    "orders.orders-written",
    "orders.orders-settled",
    "orders.offsets-committed",
    # stock: adjustments, the stock table, the offset commit
    "stock.outputs-sent",
    "stock.outputs-acked",
    "stock.stock-written",
    "stock.stock-settled",
    "stock.offsets-committed",
    # the RocksDB store: between the write batches of two partitions of one settle
    "store.partition-committed",
)


def _parse(text: str) -> tuple[str, int]:
    point, _, count = text.partition("@")
    if point and point not in POINTS:
        known = ", ".join(POINTS)
        raise SystemExit(f"oms-postsales: error: {VARIABLE}={text}: no such point (one of {known})")
    return point, int(count) if count else 1


def _parse_all(text: str) -> dict[str, int]:
    """Each armed point and which of its reaches kills (1: the first)."""
    armed: dict[str, int] = {}
    for part in text.split(","):
        point, count = _parse(part.strip())
        if point in armed:
            raise SystemExit(f"oms-postsales: error: {VARIABLE}={text}: {point} is armed twice")
        if point:
            armed[point] = count
    return armed


_ARMED = _parse_all(os.environ.get(VARIABLE, "").strip())


def reach(point: str) -> None:
    """Kill this process with SIGKILL if a test asked for `point` and this is the time."""
    left = _ARMED.get(point)
    if left is None:
        return
    _ARMED[point] = left - 1
    if left > 1:
        return
    # A line the test can look for in the worker's log; nothing after it runs.
    sys.stderr.write(f"crash point reached: {point}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
