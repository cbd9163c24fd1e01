"""Publishing a batch of records: all sent at once, then every acknowledgement awaited.

A broker that is down or slow is a transient failure: the records that did not get through are sent
again, with exponential backoff and jitter, until they do (never dead-lettered for it), while the
worker reports not ready and logs the outage once per interval, not once per retry. A record the
broker can never take (too large, invalid topic, not authorised) is a permanent failure: it is
returned to the caller, which dead-letters the inbound record that caused it with the reason, instead
of blocking its partition for ever.
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

log = structlog.get_logger("oms_postsales.delivery")

RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 10.0
OUTAGE_LOG_INTERVAL_SECONDS = 30.0

# aiokafka errors after which sending the same record again can never succeed.
PERMANENT_ERRORS = frozenset(
    {
        "MessageSizeTooLargeError",
        "RecordTooLargeError",
        "RecordListTooLargeError",
        "InvalidTopicError",
        "TopicAuthorizationFailedError",
        "UnsupportedForMessageFormatError",
        "InvalidRecordError",
        "CorruptRecordException",
    }
)

Send = Callable[[OutboundRecord], Awaitable[Awaitable[Any]]]


def is_permanent(error: BaseException | None) -> bool:
    """faust wraps the client's error (ProducerSendError from ...): the whole chain is looked at."""
    seen = 0
    while error is not None and seen < 10:
        if type(error).__name__ in PERMANENT_ERRORS:
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


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
    def __init__(self, send: Send, stopping: Callable[[], bool]) -> None:
        self._send = send
        self._stopping = stopping
        self.ok = True
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
                self._last_error = type(error).__name__
        return retry

    def _outage(self, retry: list[tuple[int, OutboundRecord]], delay: float) -> None:
        self.ok = False
        self._retries_since_log += len(retry)
        metrics.DELIVERY_RETRIES.labels(self._last_error or "unknown").inc(len(retry))
        now = time.monotonic()
        if now - self._last_outage_log >= OUTAGE_LOG_INTERVAL_SECONDS:
            log.warning(
                "delivery.retry",
                error=self._last_error,
                records=len(retry),
                retries_since_last_log=self._retries_since_log,
                retry_in=round(delay, 2),
            )
            self._last_outage_log = now
