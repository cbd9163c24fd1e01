"""A fix for faust-streaming 0.15.3 losing and repeating records when a worker (re)joins the group.

The bug (docs/notes/faust-on-tansu.md, "Holes and repeats: root cause and fix"): at the end of table
recovery, `faust/tables/recovery.py` (`Recovery.on_recovery_completed`, lines 649–660; the same order
in `_resume_streams`, lines 314–329) does

    consumer.resume_partitions(stream partitions)   # the fetcher is already running, flow active
    await consumer.perform_seek()                   # seek to the committed offsets: takes a while
    app.flow_control.resume()                       # clears every stream queue (clear_on_resume)
    consumer.resume_flow()

While the seek is awaited, the fetcher already delivers stream records into the agents' queues. The
seek then resets `Consumer._read_offset`, and `flow_control.resume()` empties the queues. Records
still queued are dropped without being processed or acknowledged, and after the seek
`Consumer._drain_messages` (`faust/transport/consumer.py`, lines 1208–1223) either records the jump
as a "gap", which `_new_offset` later commits as if processed (records lost for good), or its
`_read_offset` is overwritten back so no gap is recorded and the committed offset stays below the
dropped records forever. Records processed before the seek come again after it (repeats).

The fix: a consumer that keeps the stream partitions paused until the seek has finished and
`resume_flow()` is called, which faust does right after `flow_control.resume()` with no await in
between. The fetcher therefore fetches nothing for these partitions before the queues are cleared,
and starts at the committed offset. It is selected through the broker URL (a transport scheme
registered in faust's transport registry), see `apply_to`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, cast

import faust
from faust.transport import drivers
from faust.transport.drivers import aiokafka as aiokafka_driver
from yarl import URL

from workers.kafka import crashpoints, metrics
from workers.kafka.fetch_view import FetchView
from workers.kafka.topics import INBOUND_TOPIC, STOCK_MOVEMENTS_TOPIC

log = logging.getLogger("oms_postsales.faust_fixes")

#: The faust versions this was verified against (the order of calls in recovery.py it relies on).
TESTED_FAUST_VERSIONS = frozenset({"0.15.3"})

#: Broker URL scheme selecting the fixed transport (aiokafka transport with `SeekFirstConsumer`).
SCHEME = "kafka-seekfirst"
_REPLACED_SCHEMES = frozenset({"kafka", "aiokafka"})


class _NeverEmpty(AbstractSet[Any]):
    """A live view of faust's active partitions that is never falsy.

    aiokafka's `Fetcher.fetched_records(partitions)` returns records of *every* partition when
    `partitions` is empty, and consumes them (advances the positions). faust passes its live set
    of active partitions, which can become empty while the fetch waits (changelogs paused at the
    end of recovery, stream partitions held); faust then drops those records. Seen as never empty,
    an empty set means "no partition" instead of "all partitions".
    """

    def __init__(self, tps: AbstractSet[Any]) -> None:
        self._tps = tps

    def __contains__(self, tp: object) -> bool:
        return tp in self._tps

    def __iter__(self) -> Iterator[Any]:
        return iter(self._tps)

    def __len__(self) -> int:
        return len(self._tps)

    def __bool__(self) -> bool:
        return True


#: faust hard-codes the consumer's fetch wait at 1500 ms, which is the latency of a lone record on a
#: quiet topic; the worker sets its own per app (OMS_FETCH_MAX_WAIT_MS).
DEFAULT_FETCH_MAX_WAIT_MS = 1500
_FETCH_WAIT_ATTRIBUTE = "_oms_fetch_max_wait_ms"


def set_fetch_max_wait(app: faust.App, milliseconds: int) -> None:
    setattr(app, _FETCH_WAIT_ATTRIBUTE, milliseconds)


class _ConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute when it starts its fetcher, after this returns.
        consumer._fetch_max_wait_ms = getattr(self.app, _FETCH_WAIT_ATTRIBUTE, DEFAULT_FETCH_MAX_WAIT_MS)
        return consumer


class SeekFirstConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer, resuming stream partitions only after the seek to committed offsets.

    `resume_partitions` resumes changelog partitions at once (table recovery reads them) and holds
    the others. `perform_seek` notes that the held partitions are now at their committed offsets;
    the next `resume_flow` resumes them. Pausing a partition (rebalance) forgets it. Fetches see
    the active partitions through `_NeverEmpty`.

    It also gives the scheduler's fetch gate (workers/engine/fetch_gate.py) its view of the fetches,
    asks again briefly while the gate holds records, and makes the gate drop what it holds whenever
    positions move back (a seek, a stop of the flow for a rebalance): those records come again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._held_tps: set[Any] = set()
        self._held_epoch = 0  # bumped whenever partitions are held: a seek started before is stale
        self._seeked_epoch = -1
        super().__init__(*args, **kwargs)
        attach = getattr(self.scheduler, "attach", None)
        if attach is not None:
            upstream: frozenset[str] = getattr(self.scheduler, "upstream", frozenset())
            attach(
                FetchView(self, upstream),
                clock=time.monotonic,
                wall_ms=lambda: time.time() * 1000,
                on_lagging=metrics.INTAKE_UNORDERED.inc,
                on_wait=lambda reason: metrics.INTAKE_WAITS.labels(reason).inc(),
            )

    def _forget_held(self, tps: Iterable[Any] | None = None) -> None:
        forget = getattr(self.scheduler, "forget", None)
        if forget is not None:
            forget(tps)

    def stop_flow(self) -> None:
        super().stop_flow()
        self._forget_held()

    async def seek(self, partition: Any, offset: int) -> None:
        self._forget_held([partition])
        await super().seek(partition, offset)

    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def resume_partitions(self, tps: Iterable[Any]) -> None:
        tpset = set(tps)
        streams = {tp for tp in tpset if not self._is_changelog_tp(tp)}
        if streams:
            self._held_tps |= streams
            self._held_epoch += 1
            log.debug("holding %d stream partitions until the seek is done", len(streams))
        if tpset - streams:
            super().resume_partitions(tpset - streams)

    def pause_partitions(self, tps: Iterable[Any]) -> None:
        tpset = set(tps)
        self._held_tps -= tpset
        self._forget_held(tpset)
        super().pause_partitions(tpset)

    async def perform_seek(self) -> None:
        epoch = self._held_epoch
        self._forget_held()
        await super().perform_seek()
        self._seeked_epoch = epoch

    def resume_flow(self) -> None:
        super().resume_flow()
        if not self._held_tps:
            return
        if self._seeked_epoch != self._held_epoch:
            # Not a call order faust 0.15.3 has; behave as stock faust rather than stall partitions.
            log.warning("resume_flow before the seek to committed offsets; resuming anyway")
        held, self._held_tps = self._held_tps, set()
        super().resume_partitions(held & set(self.assignment()))

    async def _getmany(self, active_partitions: set[Any] | None, timeout: float) -> Any:
        poll_timeout = getattr(self.scheduler, "poll_timeout", None)
        if poll_timeout is not None:
            timeout = poll_timeout(timeout)
        if active_partitions is None:  # client-only apps: every partition, as in faust
            return await super()._getmany(None, timeout)
        return await super()._getmany(cast(set[Any], _NeverEmpty(active_partitions)), timeout)

    async def _commit(self, offsets: Any) -> bool:
        committed = bool(await super()._commit(offsets))
        # The crash points after a commit: one per stage whose records it covered.
        topics = {tp.topic for tp in offsets}
        if committed and any(topic.endswith(INBOUND_TOPIC) for topic in topics):
            crashpoints.reach("orders.offsets-committed")
        if committed and any(topic.endswith(STOCK_MOVEMENTS_TOPIC) for topic in topics):
            crashpoints.reach("stock.offsets-committed")
        return committed

    def on_buffer_drop(self, tp: Any) -> None:
        if tp not in self._held_tps:
            super().on_buffer_drop(tp)


#: App attribute saying the producer is idempotent (workers/kafka/idempotence.py decided it at start).
IDEMPOTENT_ATTRIBUTE = "_oms_idempotent"


class MaybeIdempotentProducer(aiokafka_driver.Producer):
    """faust's producer, idempotent when the app says so: faust asks for it only inside transactions."""

    def _settings_extra(self) -> Mapping[str, Any]:
        extra = dict(super()._settings_extra())
        if getattr(self.app, IDEMPOTENT_ATTRIBUTE, False):
            extra.update(acks="all", enable_idempotence=True)
        return extra


class Transport(aiokafka_driver.Transport):
    """faust's aiokafka transport with `SeekFirstConsumer` and a producer that can be idempotent."""

    Consumer = SeekFirstConsumer
    Producer = MaybeIdempotentProducer


def register() -> None:
    """Make `kafka-seekfirst://` resolve to `Transport` (faust's registry of transports by scheme)."""
    if faust.__version__ not in TESTED_FAUST_VERSIONS:
        warnings.warn(
            f"workers.kafka.faust_fixes was verified with faust {sorted(TESTED_FAUST_VERSIONS)}, "
            f"not {faust.__version__}: re-run bench/spikes/holes_repro.py",
            RuntimeWarning,
            stacklevel=2,
        )
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"


def _fixed_url(url: str | URL) -> str | URL:
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if sep and scheme in _REPLACED_SCHEMES:
        return f"{SCHEME}://{rest}"
    return url


def apply_to(app_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """faust.App keyword arguments with the broker URLs switched to the fixed transport.

    `broker` (and `broker_consumer`, if given) may be one URL, a ";"-separated string or a list;
    `kafka://` and `aiokafka://` URLs are rewritten to `kafka-seekfirst://`, others are left alone.
    The producer is faust's, made idempotent when the app's IDEMPOTENT_ATTRIBUTE is set.
    """
    register()
    fixed = dict(app_kwargs)
    for name in ("broker", "broker_consumer"):
        value = fixed.get(name)
        if value is None:
            continue
        if isinstance(value, str | URL):
            parts = [_fixed_url(part) for part in str(value).split(";")]
            fixed[name] = ";".join(str(part) for part in parts)
        else:
            fixed[name] = [_fixed_url(part) for part in value]
    return fixed
