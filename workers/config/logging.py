"""structlog JSON logs. Per record the pipeline binds topic, partition, offset, key and message id; the
payload itself is never logged, so names, emails, phones and addresses never reach the logs."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

PAYLOAD_LOGGING_LIBRARIES = ("aiokafka", "faust", "mode")
# The Kafka client layers, whose warnings and errors repeat per retry while the broker is away. faust's
# agents and tables are not throttled: their errors are distinct events that must all be seen.
THROTTLED_LIBRARIES = ("aiokafka", "faust.transport")
DEFAULT_REPEAT_INTERVAL = 60.0


class RepeatThrottle(logging.Filter):
    """Lets one warning or error of the Kafka client libraries through per `interval` seconds for each
    message template (logger + format string, not the formatted text, so "node 1" and "node 2"
    count as one), and counts what it held back: the next one that passes carries `repeated`.

    With the broker down aiokafka logs every reconnect attempt: ~900 lines a minute, which buries
    the one line an operator needs and fills disks."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(THROTTLED_LIBRARIES):
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.repeated = held
            record.repeat_interval_seconds = self.interval
        return True


def _add_repeats(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    repeated = getattr(record, "repeated", None)
    if repeated:
        # How many identical lines were left out since the last one shown.
        event_dict["repeated"] = repeated
        event_dict["repeat_interval_seconds"] = getattr(record, "repeat_interval_seconds", None)
    return event_dict


def configure(
    level: str = "INFO", stream: TextIO | None = None, repeat_interval: float = DEFAULT_REPEAT_INTERVAL
) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    target = stream or sys.stderr
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(target),
        cache_logger_on_first_use=False,
    )
    # Library loggers (aiokafka, faust) go through the same JSON renderer.
    handler = logging.StreamHandler(target)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _add_repeats,
            ],
        )
    )
    handler.addFilter(RepeatThrottle(repeat_interval))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # At DEBUG, aiokafka's producer and faust's topics log every record's key and value: the orders,
    # with names and addresses. Their debug output never reaches our logs.
    for library in PAYLOAD_LOGGING_LIBRARIES:
        logging.getLogger(library).setLevel(max(numeric, logging.INFO))
