"""Idempotence told truthfully: the worker asks the broker for a producer id at start. The local broker
refuses the handshake aiokafka sends, so here `auto` runs without (and says why) and `true` refuses to
start; on Apache Kafka the same probe is granted (docs/kafka.md)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workers.config.settings import Settings
from workers.kafka.idempotence import IdempotenceRefused, decide
from workers.local.broker import free_port

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]


def test_auto_runs_without_where_the_broker_refuses_a_producer_id(make_settings: MakeSettings) -> None:
    decided = asyncio.run(decide(make_settings(enable_idempotence="auto")))
    assert decided.enabled is False and "refused" in decided.reason


def test_true_is_refused_where_the_broker_refuses_a_producer_id(make_settings: MakeSettings) -> None:
    with pytest.raises(IdempotenceRefused, match="OMS_ENABLE_IDEMPOTENCE=true"):
        asyncio.run(decide(make_settings(enable_idempotence="true")))
    assert asyncio.run(decide(make_settings(enable_idempotence="false"))).enabled is False


def test_the_worker_refuses_to_start_with_idempotence_required_and_refused(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings()
    env: dict[str, Any] = {
        **os.environ,
        "OMS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OMS_TOPIC_PREFIX": settings.topic_prefix,
        "OMS_CONSUMER_GROUP": settings.consumer_group,
        "OMS_STORE": "memory://",
        "OMS_DATA_DIR": str(tmp_path),
        "OMS_WEB_PORT": str(free_port()),
        "OMS_ENABLE_IDEMPOTENCE": "true",
    }
    done = subprocess.run(
        [sys.executable, "-m", "workers", "worker"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "OMS_ENABLE_IDEMPOTENCE=true but the broker refused" in done.stderr.strip().splitlines()[-1]
