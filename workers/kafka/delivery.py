"""Publishing a batch of records: all sent at once, then every acknowledgement awaited.

Each failure is classified (workers/kafka/produce_errors.py). A broker that is down or slow, and a
cluster that refuses every write (too few in-sync replicas, a missing ACL, a topic gone), are not the
records' fault: the records that did not get through are sent again, with exponential backoff and
jitter, until they do (never dead-lettered for it), while the worker reports not ready naming the
topic and the error, counts the retries and logs them once per interval. A record the broker can
never take (too large, invalid, a timestamp outside the topic's limits) is returned to the caller,
which dead-letters the inbound record that caused it with the reason, instead of blocking its
partition for ever.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from workers.engine.codec import OutboundRecord
from workers.kafka import crashpoints, metrics
from workers.kafka.produce_errors import Problems, innermost_name, kind_of, kind_of_name

log = structlog.get_logger("oms_postsales.delivery")

RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 10.0
OUTAGE_LOG_INTERVAL_SECONDS = 30.0

Send = Callable[[OutboundRecord], Awaitable[Awaitable[Any]]]


def is_permanent(error: BaseException | None) -> bool:
    """Whether this record can never be written (the other errors are retried)."""
    return kind_of(error) == "record"


def reason(error: BaseException) -> str:
    """The innermost error's class and message: what the broker or the client refused."""
    inner = error
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    return f"{type(inner).__name__}: {inner}"[:500]


@dataclass(frozen=True)
class Failure:
    index: int
    record: OutboundRecord
    error: BaseException


class Delivery:
    def __init__(self, send: Send, stopping: Callable[[], bool], problems: Problems | None = None) -> None:
        self._send = send
        self._stopping = stopping
        # What failed lately, per topic and error (also fed by the producer's own retry log).
        self.problems = problems or Problems()
        self.ok = True
        # A batch's table writes keep failing (the batch is handled again until they get through).
        self.writes_failing = False
        self.pending_since: float | None = None
        self._last_outage_log = 0.0
        self._retries_since_log = 0
        self._last_error = ""

    async def deliver(self, records: Sequence[OutboundRecord], stage: str = "") -> list[Failure]:
        """Deliver every record; return those the broker can never take. Raises CancelledError when the
        worker stops while the broker is unreachable: the batch is then neither stored nor committed.
        `stage` names the crash points (workers/kafka/crashpoints.py) of this delivery."""
        if not records:
            return []
        pending = list(enumerate(records))
        failures: list[Failure] = []
        delay = RETRY_FIRST_SECONDS
        self.pending_since = time.monotonic()
        while pending:
            retry = await self._attempt(pending, failures, stage)
            if not retry:
                break
            self._outage(retry, delay)
            if self._stopping():
                raise asyncio.CancelledError("stopping while records could not be delivered")
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RETRY_MAX_SECONDS)
            pending = retry
        if not self.ok:
            log.info("delivery.recovered", retries=self._retries_since_log)
            self._retries_since_log = 0
            self._last_outage_log = 0.0
        self.problems.clear({record.topic for record in records})
        self.ok = True
        self.pending_since = None
        for record in records:
            metrics.EMITTED.labels(record.topic).inc()
        if stage:
            crashpoints.reach(f"{stage}.outputs-acked")
        return failures

    async def _attempt(
        self, pending: list[tuple[int, OutboundRecord]], failures: list[Failure], stage: str = ""
    ) -> list[tuple[int, OutboundRecord]]:
        sent: list[tuple[int, OutboundRecord, Awaitable[Any] | BaseException]] = []
        for index, record in pending:
            try:
                sent.append((index, record, await self._send(record)))
            except Exception as exc:
                sent.append((index, record, exc))
        if stage:
            crashpoints.reach(f"{stage}.outputs-sent")
        retry: list[tuple[int, OutboundRecord]] = []
        for index, record, future in sent:
            error: BaseException | None = future if isinstance(future, BaseException) else None
            if error is None:
                try:
                    await future  # type: ignore[misc]
                    continue
                except Exception as exc:
                    error = exc
            if is_permanent(error):
                failures.append(Failure(index, record, error))
            else:
                retry.append((index, record))
                self._last_error = innermost_name(error)
                self.problems.note(record.topic, self._last_error)
        return retry

    def _outage(self, retry: list[tuple[int, OutboundRecord]], delay: float) -> None:
        self.ok = False
        self._retries_since_log += len(retry)
        metrics.DELIVERY_RETRIES.labels(self._last_error or "unknown").inc(len(retry))
        now = time.monotonic()
        if now - self._last_outage_log >= OUTAGE_LOG_INTERVAL_SECONDS:
            problems = self.problems.current()
            log.warning(
                "delivery.retry",
                error=self._last_error,
                error_kind=kind_of_name(self._last_error),
                topics=sorted({p.topic for p in problems})[:10],
                records=len(retry),
                retries_since_last_log=self._retries_since_log,
                retry_in=round(delay, 2),
            )
            self._last_outage_log = now

    def write_recovered(self) -> None:
        if self.writes_failing:
            log.info("delivery.write_recovered")
            self.writes_failing = False

    def failed_write(self, topic: str, error: BaseException) -> None:
        """A write the worker retries itself (a batch's changelog records): named like a delivery."""
        self.writes_failing = True
        name = innermost_name(error)
        problem = self.problems.note(topic, name)
        metrics.DELIVERY_RETRIES.labels(name).inc()
        now = time.monotonic()
        if now - self._last_outage_log >= OUTAGE_LOG_INTERVAL_SECONDS:
            log.error("delivery.write_failed", topic=topic, error=name, error_kind=problem.kind)
            self._last_outage_log = now
