"""Static group membership: OMS_GROUP_INSTANCE_ID reaches aiokafka's consumer through faust and the
project's own consumer class, with the session timeout that suits it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from workers.config.rules_file import load_rules
from workers.config.settings import Settings
from workers.kafka import faust_fixes
from workers.kafka.app import build_app


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.upper().startswith("OMS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


async def consumer_of(settings: Settings) -> object:
    """The aiokafka consumer the worker's faust app would start (not started: no broker needed)."""
    app, _runtime = build_app(settings, load_rules(None))
    app.loop = asyncio.get_running_loop()
    consumer = app.consumer
    assert isinstance(consumer, faust_fixes.SeekFirstConsumer)
    thread = consumer._new_consumer_thread()
    assert isinstance(thread, faust_fixes._ConsumerThread)
    return thread._create_worker_consumer(app.transport)


async def test_the_instance_id_and_its_session_reach_the_consumer() -> None:
    settings = Settings(create_topics=False, store="memory://", group_instance_id="oms-postsales-1")
    consumer = await consumer_of(settings)
    try:
        assert consumer._group_instance_id == "oms-postsales-1"  # type: ignore[attr-defined]
        assert consumer._session_timeout_ms == 45_000  # type: ignore[attr-defined]
        # A rebalance is learnt from a heartbeat: at most Kafka's 3 s, whatever the session.
        assert consumer._heartbeat_interval_ms == 3_000  # type: ignore[attr-defined]
        # The project's consumer thread still sets its own fetch wait.
        assert consumer._fetch_max_wait_ms == settings.fetch_max_wait_ms  # type: ignore[attr-defined]
    finally:
        await consumer.stop()  # type: ignore[attr-defined]


async def test_without_an_instance_id_membership_is_dynamic_with_the_short_session() -> None:
    consumer = await consumer_of(Settings(create_topics=False, store="memory://"))
    try:
        assert consumer._group_instance_id is None  # type: ignore[attr-defined]
        assert consumer._session_timeout_ms == 10_000  # type: ignore[attr-defined]
        assert consumer._heartbeat_interval_ms == 2_500  # type: ignore[attr-defined]
    finally:
        await consumer.stop()  # type: ignore[attr-defined]


def test_an_explicit_session_timeout_wins_over_the_static_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_GROUP_INSTANCE_ID", "oms-postsales-0")
    assert Settings().session_timeout_seconds == 45.0
    monkeypatch.setenv("OMS_SESSION_TIMEOUT_SECONDS", "20")
    settings = Settings()
    assert (settings.group_instance_id, settings.session_timeout_seconds) == ("oms-postsales-0", 20.0)


def test_an_empty_instance_id_is_dynamic_membership(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_GROUP_INSTANCE_ID", "")
    settings = Settings()
    assert settings.group_instance_id is None and settings.session_timeout_seconds == 10.0


@pytest.mark.parametrize("bad", ["pod/0", "a b", "x" * 250])
def test_an_instance_id_kafka_would_refuse_is_refused_at_start(bad: str) -> None:
    with pytest.raises(ValidationError, match="group_instance_id"):
        Settings(group_instance_id=bad)
