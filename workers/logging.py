"""structlog JSON logs. Per record the pipeline binds topic, partition, offset, key and message id; the
payload itself is never logged, so names, emails, phones and addresses never reach the logs."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

PAYLOAD_LOGGING_LIBRARIES = ("aiokafka", "faust", "mode")


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
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
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # At DEBUG, aiokafka's producer and faust's topics log every record's key and value: the orders,
    # with names and addresses. Their debug output never reaches our logs.
    for library in PAYLOAD_LOGGING_LIBRARIES:
        logging.getLogger(library).setLevel(max(numeric, logging.INFO))
