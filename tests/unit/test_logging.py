"""Log hygiene: the Kafka clients' per-retry errors are throttled, everything else passes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from workers.config import logging as oms_logging
from workers.config.logging import RepeatThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_one_line_per_template_and_interval_then_the_count_of_what_was_held() -> None:
    clock = Clock()
    throttle = RepeatThrottle(60.0, clock)
    template = "Unable connect to node with id %s: %s"
    passed = [throttle.filter(record("aiokafka", template, n, "refused")) for n in range(500)]
    assert passed == [True] + [False] * 499
    clock.now += 59.9
    assert throttle.filter(record("aiokafka", template, 1, "refused")) is False
    clock.now += 0.2
    shown = record("aiokafka", template, 1, "refused")
    assert throttle.filter(shown) is True
    assert shown.__dict__["repeated"] == 500


def test_templates_and_loggers_are_throttled_separately() -> None:
    throttle = RepeatThrottle(60.0, Clock())
    assert throttle.filter(record("aiokafka", "Unable to update metadata from %s", 1))
    assert throttle.filter(record("aiokafka.consumer.fetcher", "Unable to update metadata from %s", 1))
    assert throttle.filter(record("aiokafka", "Failed fetch messages from %s", 1))
    assert throttle.filter(record("faust.transport.drivers.aiokafka", "Failed fetch messages from %s", 1))
    assert not throttle.filter(record("faust.transport.drivers.aiokafka", "Failed fetch messages from %s", 2))


def test_our_own_lines_info_lines_and_other_libraries_are_never_held() -> None:
    throttle = RepeatThrottle(60.0, Clock())
    for _ in range(3):
        assert throttle.filter(record("oms_postsales.worker", "broker.unreachable"))
        assert throttle.filter(record("aiokafka", "Starting", level=logging.INFO))
        assert throttle.filter(record("asyncio", "Task exception was never retrieved"))
        assert throttle.filter(record("faust.agents.agent", "Agent crashed: %r", "error"))


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    oms_logging.configure("INFO", stream=stream, repeat_interval=3600)
    yield stream
    oms_logging.configure("WARNING")


def test_configured_logging_throttles_aiokafka_and_reports_the_repeats(configured: io.StringIO) -> None:
    library = logging.getLogger("aiokafka")
    for _ in range(200):
        library.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
    lines = [json.loads(line) for line in configured.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["event"] == "Unable connect to node with id 1: Connect call failed"
    assert lines[0]["logger"] == "aiokafka" and "repeated" not in lines[0]
