"""docker-compose.yml cannot run here (no Docker engine): keep it honest by reading it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers.config.settings import Settings
from workers.kafka.web import exposure_problem

ROOT = Path(__file__).resolve().parents[2]
# What an operator gives in the environment (or .env): a token of the length the worker asks for.
RUN_ENV = {"OMS_API_TOKEN": "compose-token-0123456789abcdef"}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:\?|:-|\?|-)(?P<arg>[^}]*))?\}")


class Unset(Exception):
    """docker compose refuses the file: a `${NAME:?message}` variable is not set."""


def interpolate(value: str, env: dict[str, str]) -> str:
    """docker compose's variable substitution for the forms the file uses: ${NAME}, ${NAME:-default},
    ${NAME:?message} (refused when unset or empty)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        found = env.get(name)
        if op in (":?", "?") and (found is None or (op == ":?" and found == "")):
            raise Unset(f"{name}: {arg}")
        if op in (":-", "-") and (found is None or (op == ":-" and found == "")):
            return arg
        return found or ""

    return _VARIABLE.sub(one, value)


def settings_of(environment: dict[str, Any], env: dict[str, str]) -> Settings:
    """The worker's settings from a service's environment, as its start-up reads them."""
    values = {k.removeprefix("OMS_").lower(): interpolate(str(v), env) for k, v in environment.items()}
    return Settings.model_validate(values)


def dockerfile_env() -> dict[str, str]:
    """The image's ENV, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in line.removeprefix("ENV ").split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_services_and_their_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "topics-init", "worker", "kafka-ui", "prometheus", "grafana"}
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
    settings = settings_of(env, RUN_ENV)
    assert settings.bootstrap_servers == "kafka:9092" and settings.enable_idempotence == "true"


def test_the_compose_worker_passes_the_workers_own_start_up_rules(compose: dict[str, Any]) -> None:
    """The worker listens on 0.0.0.0 in its container: with the operator's token it starts (the same
    checks as `oms-postsales worker`: settings validation, then exposure_problem)."""
    environment = compose["services"]["worker"]["environment"]
    settings = settings_of(environment, RUN_ENV)
    assert settings.web_host == "0.0.0.0"
    assert exposure_problem(settings) is None
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == RUN_ENV["OMS_API_TOKEN"]


def test_compose_refuses_to_start_without_a_token_and_the_worker_a_short_one(compose: dict[str, Any]) -> None:
    environment = compose["services"]["worker"]["environment"]
    # The token is never written in the file: it comes from the environment or .env.
    assert re.fullmatch(r"\$\{OMS_API_TOKEN:\?[^}]+\}", environment["OMS_API_TOKEN"])
    with pytest.raises(Unset, match="OMS_API_TOKEN"):
        settings_of(environment, {})
    with pytest.raises(Unset):
        settings_of(environment, {"OMS_API_TOKEN": ""})
    with pytest.raises(ValueError, match="api_token"):
        settings_of(environment, {"OMS_API_TOKEN": "short"})
    # Without the token line the worker itself would refuse: that is why the file asks for one.
    bare = {k: v for k, v in environment.items() if k != "OMS_API_TOKEN"}
    problem = exposure_problem(settings_of(bare, {}))
    assert problem is not None and "OMS_API_TOKEN" in problem


def test_the_image_starts_with_a_token_from_the_environment_and_refuses_without() -> None:
    env = dockerfile_env()
    assert env["OMS_WEB_HOST"] == "0.0.0.0"
    assert "OMS_API_TOKEN" not in env  # never baked into the image
    problem = exposure_problem(settings_of(env, {}))
    assert problem is not None and "OMS_API_TOKEN" in problem
    settings = settings_of({**env, "OMS_API_TOKEN": "${OMS_API_TOKEN}"}, RUN_ENV)
    assert exposure_problem(settings) is None


def test_kafka_keeps_its_log_on_the_mounted_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in kafka["volumes"]}
    assert log_dirs in mounts, f"KAFKA_LOG_DIRS {log_dirs} is not a mounted volume {mounts}"
    assert mounts[log_dirs] in compose["volumes"]  # a named volume: survives `down`
    # A formatted log dir must meet the same cluster id on every start.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", kafka["environment"]["CLUSTER_ID"])


def test_worker_tables_are_on_a_named_volume(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    data_dir = worker["environment"]["OMS_DATA_DIR"]
    assert worker["environment"]["OMS_STORE"] == "rocksdb://"
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in worker["volumes"]}
    assert mounts.get(data_dir) in compose["volumes"]


def test_the_image_is_built_once_and_reused_by_its_tag(compose: dict[str, Any]) -> None:
    services = compose["services"]
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["worker"]
    tag = services["worker"]["image"]
    assert services["topics-init"]["image"] == tag
    assert services["topics-init"].get("pull_policy") == "never"


def test_every_published_port_is_bound_to_localhost(compose: dict[str, Any]) -> None:
    published = [
        (name, port) for name, service in compose["services"].items() for port in service.get("ports", [])
    ]
    assert len(published) == 5
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_kafka_ui_is_the_maintained_image(compose: dict[str, Any]) -> None:
    image = compose["services"]["kafka-ui"]["image"]
    assert image.startswith("ghcr.io/kafbat/kafka-ui:")
    assert not image.endswith(":latest")


def mounted(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> repository path of the service's bind mounts."""
    binds = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            binds[target] = ROOT / source
    return binds


def test_prometheus_scrapes_the_worker(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    config_path = mounted(prometheus)["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    port = compose["services"]["worker"]["environment"]["OMS_WEB_PORT"]
    assert f"worker:{port}" in targets
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in config["scrape_configs"])


def test_grafana_is_provisioned_with_prometheus_and_a_dashboard(compose: dict[str, Any]) -> None:
    binds = mounted(compose["services"]["grafana"])
    provisioning = binds["/etc/grafana/provisioning"]
    sources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    assert any(s["type"] == "prometheus" and s["url"] == "http://prometheus:9090" for s in sources)
    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    (dashboards_in_container,) = {p["options"]["path"] for p in providers}
    dashboards = sorted(binds[dashboards_in_container].glob("*.json"))
    assert dashboards
    for path in dashboards:
        panels = json.loads(path.read_text())["panels"]
        assert panels and all(t["expr"] for p in panels for t in p.get("targets", []))


def test_dockerfile_installs_the_package_without_the_local_broker_and_runs_the_worker() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    # Dependencies only from the hashed lock; the package itself adds nothing unhashed.
    assert installs == [
        "RUN pip install --no-cache-dir --require-hashes -r requirements/image.lock",
        "RUN pip install --no-cache-dir --no-deps --no-build-isolation . \\",
    ]
    assert "calfkit" not in dockerfile and "calfkit" not in (ROOT / "requirements" / "image.lock").read_text()
    assert 'ENTRYPOINT ["oms-postsales"]' in dockerfile and 'CMD ["worker"]' in dockerfile


def test_the_base_image_is_pinned_by_digest() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    (source,) = [line for line in lines if line.startswith("FROM ")]
    assert source == "FROM python:3.11-slim@${PYTHON_BASE_DIGEST}"  # never a bare tag
    (pin,) = [line for line in lines if line.startswith("ARG PYTHON_BASE_DIGEST=")]
    # .ci/pin-base-image refreshes it where the registry is reachable.
    assert re.fullmatch(r"ARG PYTHON_BASE_DIGEST=sha256:[0-9a-f]{64}", pin)
    assert lines.index(pin) < lines.index(source)
    script = ROOT / ".ci" / "pin-base-image"
    assert script.stat().st_mode & 0o111 and "ARG PYTHON_BASE_DIGEST=" in script.read_text()


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (v1) is not installed")
def test_docker_compose_validates_the_file() -> None:
    command = ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"]
    clean = {k: v for k, v in os.environ.items() if k != "OMS_API_TOKEN"}
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=60, env={**clean, **RUN_ENV}
    )
    assert done.returncode == 0, done.stderr
    refused = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60, env=clean)
    assert refused.returncode != 0 and "OMS_API_TOKEN" in refused.stderr
