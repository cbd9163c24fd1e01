"""Repro: the fetch split (docs/notes/ordering.md, "Where the order was lost").

On a fresh local broker, a librdkafka producer writes pairs, `A<i>` on one topic then `B<i>` on
another, each awaited; an aiokafka consumer takes what it fetched every `--take-ms` (the worker's
intake under load) and orders it with the worker's scheduler, by timestamp alone and then through the
fetch gate. It prints one JSON line per mode: pairs, inversions (`B<i>` taken before `A<i>`), the
gate's waits and the records it handed on while a partition lagged.

    python bench/spikes/fetch_split.py --pairs 500 --take-ms 150
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from testkit.fetch_split import run
from workers.local.broker import LocalBroker


async def main(pairs: int, take_ms: int) -> None:
    broker = LocalBroker(Path(tempfile.mkdtemp(prefix="fetch-split-")))
    broker.start()
    try:
        for gate in (False, True):
            split = await run(
                broker.bootstrap, prefix=f"m{int(gate)}.", pairs=pairs, take_seconds=take_ms / 1000, gate=gate
            )
            print(json.dumps({"gate": gate, **dataclasses.asdict(split)}), flush=True)
    finally:
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--take-ms", type=int, default=150)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.pairs, arguments.take_ms))
