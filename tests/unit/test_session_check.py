"""The consumer group session against the broker's bounds (Apache Kafka: group.min.session.timeout.ms and
group.max.session.timeout.ms, 6 s and 30 min by default; outside them the JoinGroup is refused with
INVALID_SESSION_TIMEOUT). The local broker tells no bounds and accepts any session, so the broker's
answer is injected here."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workers import cli
from workers.config.settings import Settings
from workers.kafka.cluster import ClusterState
from workers.kafka.session_check import SessionRefused, session_finding
from workers.kafka.topics import CreateReport


def cluster(**told: str) -> ClusterState:
    config = {name.replace("_", "."): value for name, value in told.items()}
    return ClusterState(brokers=1, cluster_id="c", controller=1, broker_config=config, topics={})


KAFKA_DEFAULTS = {"group_min_session_timeout_ms": "6000", "group_max_session_timeout_ms": "1800000"}


@pytest.mark.parametrize("seconds", [6, 10, 45, 1800])
def test_a_session_within_the_brokers_bounds_passes(seconds: float) -> None:
    finding = session_finding(seconds, cluster(**KAFKA_DEFAULTS))
    assert finding.level == "pass" and "the broker's" in finding.text


@pytest.mark.parametrize(("seconds", "ms"), [(3, "3000 ms"), (5.999, "5999 ms"), (1801, "1801000 ms")])
def test_a_session_outside_the_bounds_the_broker_told_fails_naming_it(seconds: float, ms: str) -> None:
    finding = session_finding(seconds, cluster(**KAFKA_DEFAULTS))
    assert finding.level == "fail"
    assert ms in finding.text and "INVALID_SESSION_TIMEOUT" in finding.text
    assert "OMS_SESSION_TIMEOUT_SECONDS" in finding.text


def test_a_broker_with_a_lower_minimum_takes_a_shorter_session() -> None:
    assert session_finding(3, cluster(group_min_session_timeout_ms="1000")).level == "pass"
    assert session_finding(0.5, cluster(group_min_session_timeout_ms="1000")).level == "fail"


def test_a_broker_that_tells_nothing_is_compared_with_kafkas_defaults_and_only_warned_about() -> None:
    assert session_finding(3, cluster()).level == "warn"
    assert "did not tell" in session_finding(3, cluster()).text
    finding = session_finding(10, cluster())
    assert finding.level == "pass" and "Apache Kafka's default" in finding.text
    # Told the minimum only: a session above Kafka's default maximum is a warning, not a refusal.
    assert session_finding(3600, cluster(group_min_session_timeout_ms="6000")).level == "warn"


def test_the_worker_does_not_start_with_a_session_the_broker_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    told = cluster(**KAFKA_DEFAULTS)

    async def topics_ready(_settings: Settings, _specs: Any) -> CreateReport:
        return CreateReport(created=(), existed=(), cluster=told)

    monkeypatch.setattr(cli, "create_topics", topics_ready)
    settings = Settings(bootstrap_servers="127.0.0.1:9", session_timeout_seconds=3)
    with pytest.raises(SessionRefused, match=r"group\.min\.session\.timeout\.ms 6000"):
        asyncio.run(cli.prepare_topics(settings))
    asyncio.run(cli.prepare_topics(Settings(bootstrap_servers="127.0.0.1:9", session_timeout_seconds=10)))
