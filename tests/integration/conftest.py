"""A real Kafka-protocol broker (Tansu, memory storage) shared by the integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from workers.config.settings import Settings
from workers.local.broker import LocalBroker, pid_exists


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    local = LocalBroker(tmp_path_factory.mktemp("tansu"))
    local.start()
    pid = local.pid
    assert pid is not None
    try:
        yield local
    finally:
        local.stop()
        assert not pid_exists(pid), f"tansu pid {pid} survived stop()"


@pytest.fixture
def make_settings(broker: LocalBroker) -> Callable[..., Settings]:
    """Settings against the shared broker, with a topic prefix of their own.

    The broker lives for the whole session and cannot be wiped, so each test namespaces its topics.
    """

    def make(**overrides: Any) -> Settings:
        tag = uuid.uuid4().hex[:8]
        values: dict[str, Any] = {
            "bootstrap_servers": broker.bootstrap,
            "topic_prefix": f"t{tag}.",
            # Changelog topics are named after the consumer group (faust's app id).
            "consumer_group": f"oms-{tag}",
            "store": "memory://",
        }
        values.update(overrides)
        return Settings(**values)

    return make
