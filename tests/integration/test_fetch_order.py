"""The fetch split, reproduced on demand against the local broker: records written one after the other
(each awaited, one-record batches) on different topics, taken by a consumer slow to take what it
fetched. Ordered by timestamp alone, some come in the other order; through the fetch gate, none."""

from __future__ import annotations

import asyncio
import uuid

from testkit.fetch_split import run
from workers.local.broker import LocalBroker


def test_a_slow_taker_gets_later_records_first_without_the_gate(broker: LocalBroker) -> None:
    split = asyncio.run(run(broker.bootstrap, prefix=f"s{uuid.uuid4().hex[:8]}.", pairs=300, gate=False))
    assert split.taken == 600
    # The reproduction itself: 38 of 300 when measured; a run with none would not show the split.
    assert split.inversions > 0


def test_through_the_gate_every_pair_comes_in_the_order_it_was_written(broker: LocalBroker) -> None:
    split = asyncio.run(run(broker.bootstrap, prefix=f"g{uuid.uuid4().hex[:8]}.", pairs=300, gate=True))
    assert split.taken == 600
    assert split.inversions == 0
    assert split.waits > 0  # the gate did hold records back
    assert split.forwarded_while_lagging == 0
