"""docker-compose.yml cannot run here (no Docker engine): keep it honest by reading it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_services_and_their_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "topics-init", "worker", "kafka-ui"}
    assert services["topics-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"
    assert services["topics-init"]["command"] == ["topics", "create"]
    assert services["worker"]["command"] == ["worker"]


def test_kafka_is_a_single_kraft_node_that_allows_transactions(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == 1, key
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert compose["services"]["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == "kafka:9092"


@pytest.mark.parametrize("service", ["topics-init", "worker"])
def test_worker_environment_names_real_settings(compose: dict[str, Any], service: str) -> None:
    env = compose["services"][service]["environment"]
    fields = set(Settings.model_fields)
    for name in env:
        assert name.startswith("OMS_") and name.removeprefix("OMS_").lower() in fields, name
    settings = Settings.model_validate({k.removeprefix("OMS_").lower(): v for k, v in env.items()})
    assert settings.bootstrap_servers == "kafka:9092" and settings.enable_idempotence is True


def test_dockerfile_installs_rocksdb_and_runs_the_worker() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'pip install --no-cache-dir ".[rocksdb]"' in dockerfile
    assert 'ENTRYPOINT ["oms-postsales"]' in dockerfile and 'CMD ["worker"]' in dockerfile


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (v1) is not installed")
def test_docker_compose_validates_the_file() -> None:
    done = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
