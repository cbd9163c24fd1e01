"""What a produce error means for the record, and what the producer is retrying right now.

Three kinds, by Apache Kafka's error codes (the protocol's error table; aiokafka names them):

- `record`: this record can never be written (too large, an invalid or corrupt record, a timestamp
  outside the topic's `message.timestamp.*` limits). The inbound record that caused it is
  dead-lettered with the broker's reason; the partition goes on.
- `cluster`: nothing will be written until an operator changes the cluster (fewer in-sync replicas
  than `min.insync.replicas`, a missing ACL, a topic that is gone). Retried with backoff, never
  dead-lettered (the records are fine), and the worker is not ready, naming the topic and the error.
- `retriable`: the broker is busy, moving a leader or unreachable. Retried with backoff; not ready
  once a delivery has waited longer than OMS_READY_MAX_DELIVERY_SECONDS.

aiokafka retries retriable errors inside the producer before the send's future fails (with an
idempotent producer, for ever). The only prompt sign of a cluster-level refusal is its log line
("Got error produce response …, retrying"): `ProducerErrorWatch` reads those lines, so `/ready` and
the log name the error while the producer is still retrying it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

Kind = Literal["record", "cluster", "retriable"]

RECORD_ERRORS = frozenset(
    {
        "MessageSizeTooLargeError",
        "RecordTooLargeError",
        "RecordListTooLargeError",
        "InvalidRecordError",
        "CorruptRecordException",
        "UnsupportedForMessageFormatError",
        "InvalidTimestampError",
    }
)
CLUSTER_ERRORS = frozenset(
    {
        "NotEnoughReplicasError",
        "NotEnoughReplicasAfterAppendError",
        "TopicAuthorizationFailedError",
        "ClusterAuthorizationFailedError",
        "TransactionalIdAuthorizationFailed",
        "UnknownTopicOrPartitionError",
        "InvalidTopicError",
        "PolicyViolationError",
        "InvalidRequiredAcksError",
    }
)
# A problem seen this long ago without a newer one is over.
FRESH_SECONDS = 30.0


def kind_of_name(name: str) -> Kind:
    if name in RECORD_ERRORS:
        return "record"
    if name in CLUSTER_ERRORS:
        return "cluster"
    return "retriable"


def kind_of(error: BaseException | None) -> Kind:
    """faust wraps the client's error (ProducerSendError from ...): the whole chain is looked at."""
    seen = 0
    found: Kind = "retriable"
    while error is not None and seen < 10:
        kind = kind_of_name(type(error).__name__)
        if kind != "retriable":
            return kind
        error, seen = error.__cause__ or error.__context__, seen + 1
    return found


def innermost_name(error: BaseException) -> str:
    inner = error
    for _ in range(10):
        nxt = inner.__cause__ or inner.__context__
        if nxt is None:
            break
        inner = nxt
    return type(inner).__name__


@dataclass(frozen=True)
class Problem:
    topic: str
    error: str
    kind: Kind
    since: float
    last: float

    def as_json(self, now: float) -> dict[str, object]:
        return {
            "topic": self.topic,
            "error": self.error,
            "kind": self.kind,
            "for_seconds": round(now - self.since, 1),
        }


class Problems:
    """The produce errors seen lately, one per topic and error."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], Problem] = {}

    def note(self, topic: str, error: str, now: float | None = None) -> Problem:
        moment = time.monotonic() if now is None else now
        known = self._seen.get((topic, error))
        problem = Problem(topic, error, kind_of_name(error), known.since if known else moment, moment)
        self._seen[(topic, error)] = problem
        return problem

    def clear(self, topics: set[str] | None = None) -> None:
        """Forget the problems of these topics (all when None): their records got through."""
        if topics is None:
            self._seen.clear()
            return
        for key in [key for key in self._seen if key[0] in topics]:
            del self._seen[key]

    def current(self, now: float | None = None) -> list[Problem]:
        moment = time.monotonic() if now is None else now
        for key, problem in list(self._seen.items()):
            if moment - problem.last > FRESH_SECONDS:
                del self._seen[key]
        return sorted(self._seen.values(), key=lambda p: (p.topic, p.error))

    def blocking(self, now: float | None = None) -> list[Problem]:
        return [p for p in self.current(now) if p.kind == "cluster"]


class ProducerErrorWatch(logging.Filter):
    """Reads aiokafka's "Got error produce response" lines into `Problems` (and lets them through)."""

    def __init__(self, problems: Problems) -> None:
        super().__init__()
        self.problems = problems

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Got error produce response"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        topic = "?"
        error: object = args[-1] if args else None
        if len(args) >= 2:
            topic = str(getattr(args[0], "topic", args[0]))
        name = error.__name__ if isinstance(error, type) else type(error).__name__
        self.problems.note(topic, name)
        return True


SENDER_LOGGER = "aiokafka.producer.sender"


def watch(problems: Problems) -> ProducerErrorWatch:
    """Attach a watch to aiokafka's sender log; returns it (remove with `unwatch`)."""
    watcher = ProducerErrorWatch(problems)
    logging.getLogger(SENDER_LOGGER).addFilter(watcher)
    return watcher


def unwatch(watcher: ProducerErrorWatch) -> None:
    logging.getLogger(SENDER_LOGGER).removeFilter(watcher)
