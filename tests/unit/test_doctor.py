"""`oms-postsales doctor` against a broker faked at the admin client: each error a real cluster can give
(authorization, a changelog with the delete policy, replication under min.insync.replicas, idempotence
refused, no broker at all) is named in its finding, and the exit status follows."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResourceType
from aiokafka.errors import (
    CoordinatorNotAvailableError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
)
from typer.testing import CliRunner

from workers.cli import app
from workers.config.settings import Settings
from workers.kafka import idempotence
from workers.kafka.topics import catalogue, changelog_topic, leader_topic, rules_topic
from workers.ops import doctor
from workers.ops.doctor import Report

TOPIC_AUTHORIZATION_FAILED = 29
CLUSTER_AUTHORIZATION_FAILED = 31
BROKER_ID = 7


@dataclass
class FakeAdmin:
    """The admin client's answers, shaped as aiokafka returns them, with errors to inject."""

    topics: dict[str, tuple[int, int, dict[str, str]]] = field(default_factory=dict)
    brokers: int = 3
    broker_config: dict[str, str] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    configs_refused: set[str] = field(default_factory=set)
    start_error: BaseException | None = None
    coordinator_error: KafkaError | None = None
    create_errors: dict[str, int] = field(default_factory=dict)
    created: list[tuple[str, bool]] = field(default_factory=list)
    closed: bool = False

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error

    async def close(self) -> None:
        self.closed = True

    async def describe_cluster(self) -> dict[str, Any]:
        nodes = [
            {"node_id": BROKER_ID + i, "host": "127.0.0.1", "port": 1, "rack": None}
            for i in range(self.brokers)
        ]
        return {"brokers": nodes, "cluster_id": "fake-cluster", "controller_id": BROKER_ID}

    async def describe_topics(self, topics: list[str] | None = None) -> list[dict[str, Any]]:
        assert topics is None  # naming topics would make a broker auto-create them
        found = [
            {
                "topic": name,
                "error_code": 0,
                "partitions": [
                    {"partition": p, "replicas": list(range(replicas))} for p in range(partitions)
                ],
            }
            for name, (partitions, replicas, _) in self.topics.items()
        ]
        found += [
            {"topic": name, "error_code": code, "partitions": []} for name, code in self.refused.items()
        ]
        return found

    async def describe_configs(
        self, config_resources: list[Any], include_synonyms: bool = False
    ) -> list[Any]:
        resources = []
        for resource in config_resources:
            if resource.resource_type == ConfigResourceType.BROKER:
                entries = [(k, v) for k, v in self.broker_config.items()]
                resources.append((0, None, 4, resource.name, entries))
            elif resource.name in self.configs_refused:
                resources.append((TOPIC_AUTHORIZATION_FAILED, "denied", 2, resource.name, []))
            else:
                entries = [(k, v) for k, v in self.topics[resource.name][2].items()]
                resources.append((0, None, 2, resource.name, entries))
        return [SimpleNamespace(resources=resources)]

    async def find_coordinator(self, group_id: str, coordinator_type: int = 0) -> int:
        if self.coordinator_error is not None:
            raise self.coordinator_error
        return BROKER_ID

    async def create_topics(
        self, new_topics: list[NewTopic], timeout_ms: int | None = None, validate_only: bool = False
    ) -> Any:
        self.created += [(t.name, validate_only) for t in new_topics]
        errors = [(t.name, self.create_errors.get(t.name, 0), None) for t in new_topics]
        return SimpleNamespace(topic_errors=errors)


def settings(**overrides: Any) -> Settings:
    return Settings(**{"bootstrap_servers": "127.0.0.1:9", "topic_prefix": "acme.", **overrides})


def healthy(config: Settings) -> FakeAdmin:
    """A three-broker cluster holding every topic as the worker creates it, replication 3."""
    return FakeAdmin(
        topics={spec.name: (spec.partitions, 3, dict(spec.config)) for spec in catalogue(config)},
        broker_config={
            "min.insync.replicas": "2",
            "default.replication.factor": "3",
            "auto.create.topics.enable": "false",
        },
    )


async def granted(_: Settings) -> str | None:
    return None


async def refused(_: Settings) -> str | None:
    return "UnknownError: [Error -1] UnknownError"


async def run(config: Settings, admin: FakeAdmin, probe: Callable[[Settings], Any] = granted) -> Report:
    report = await doctor.diagnose(config, admin_factory=lambda _: admin, probe_idempotence=probe)
    assert admin.closed or admin.start_error is not None
    return report


def failures(report: Report) -> list[tuple[str, str | None, str]]:
    return [(c.check, c.topic, c.text) for c in report.checks if c.level == "fail"]


def levels(report: Report, check: str) -> list[str]:
    return [c.level for c in report.checks if c.check == check]


async def test_a_healthy_cluster_passes_every_check() -> None:
    config = settings()
    report = await run(config, healthy(config))
    assert report.ok, report.text()
    assert {c.level for c in report.checks} == {"pass"}
    checks = [c.check for c in report.checks]
    for check in (
        "connection",
        "broker-version",
        "group-coordinator",
        "authorization",
        "topics",
        "auto.create.topics.enable",
        "session.timeout",
        "delete.retention.ms",
        "idempotence",
    ):
        assert check in checks
    assert "fake-cluster, 3 broker(s), controller 7" in report.text()
    # Kafka's default delete.retention.ms when neither topic nor broker says otherwise.
    assert report.broker["changelog_delete_retention_ms"] == 86_400_000
    assert report.text().splitlines()[-1].startswith("ok: ")


async def test_a_topic_the_broker_refuses_to_describe_fails_naming_the_error() -> None:
    config = settings()
    admin = healthy(config)
    dlq = config.dlq_topic
    del admin.topics[dlq]
    admin.refused[dlq] = TOPIC_AUTHORIZATION_FAILED
    report = await run(config, admin)
    assert not report.ok
    (auth,) = [c for c in report.checks if c.check == "authorization"]
    assert auth.level == "fail" and f"{dlq} (TOPIC_AUTHORIZATION_FAILED)" in auth.text
    assert ("exists", dlq) in [(check, topic) for check, topic, _ in failures(report)]
    # A refused topic is not "missing": the worker must not try to create it.
    assert admin.created == []


async def test_settings_the_broker_will_not_show_are_a_warning_naming_describe_configs() -> None:
    config = settings()
    admin = healthy(config)
    changelog = changelog_topic(config, "orders")
    admin.configs_refused.add(changelog)
    report = await run(config, admin)
    assert report.ok
    (auth,) = [c for c in report.checks if c.check == "authorization"]
    assert auth.level == "warn" and "DescribeConfigs" in auth.text and changelog in auth.text


async def test_a_changelog_with_the_delete_policy_fails() -> None:
    config = settings()
    admin = healthy(config)
    changelog = changelog_topic(config, "orders")
    partitions, replicas, _ = admin.topics[changelog]
    admin.topics[changelog] = (partitions, replicas, {"cleanup.policy": "delete"})
    report = await run(config, admin)
    assert not report.ok
    ((check, topic, text),) = failures(report)
    assert (check, topic) == ("cleanup.policy", changelog) and "cleanup.policy=delete" in text


@pytest.mark.parametrize("policy", ["delete", "compact,delete"])
async def test_a_rules_topic_that_is_not_compact_only_fails(policy: str) -> None:
    # Time or size retention would delete rule set versions that still decide late messages.
    config = settings()
    admin = healthy(config)
    topic = rules_topic(config)
    partitions, replicas, _ = admin.topics[topic]
    admin.topics[topic] = (partitions, replicas, {"cleanup.policy": policy})
    report = await run(config, admin)
    assert not report.ok
    ((check, name, text),) = failures(report)
    assert (check, name) == ("cleanup.policy", topic) and "rules topic must be compact only" in text


async def test_replication_under_min_insync_replicas_fails_naming_not_enough_replicas() -> None:
    config = settings()
    admin = healthy(config)
    inbound = config.topic_prefix + "oms-postsales.inbound"
    partitions, _, topic_config = admin.topics[inbound]
    admin.topics[inbound] = (partitions, 1, {**topic_config, "min.insync.replicas": "2"})
    report = await run(config, admin)
    assert not report.ok
    ((check, topic, text),) = failures(report)
    assert (check, topic) == ("replication", inbound)
    assert "min.insync.replicas=2" in text and "NOT_ENOUGH_REPLICAS" in text


async def test_idempotence_refused_fails_when_required_and_warns_in_auto_mode() -> None:
    config = settings(enable_idempotence="true")
    report = await run(config, healthy(config), refused)
    assert not report.ok
    ((check, _, text),) = failures(report)
    assert check == "idempotence" and "OMS_ENABLE_IDEMPOTENCE=true" in text and "IdempotentWrite" in text

    config = settings(enable_idempotence="auto")
    report = await run(config, healthy(config), refused)
    assert report.ok and levels(report, "idempotence") == ["warn"]

    asked: list[Settings] = []

    async def must_not_ask(s: Settings) -> str | None:
        asked.append(s)
        return None

    config = settings(enable_idempotence="false")
    report = await run(config, healthy(config), must_not_ask)
    assert report.ok and levels(report, "idempotence") == ["pass"] and asked == []


async def test_an_unreachable_broker_is_one_failed_line() -> None:
    admin = FakeAdmin(start_error=KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9)]"))
    report = await run(settings(), admin)
    assert not report.ok
    ((check, _, text),) = failures(report)
    assert check == "connection" and "cannot reach the broker at 127.0.0.1:9" in text
    assert "KafkaConnectionError" in text
    assert len(report.checks) == 1


async def test_the_group_coordinator_names_group_authorization_failed() -> None:
    config = settings(consumer_group="oms-eu")
    admin = healthy(config)
    admin.coordinator_error = GroupAuthorizationFailedError()
    report = await run(config, admin)
    ((check, _, text),) = failures(report)
    assert check == "group-coordinator" and "GROUP_AUTHORIZATION_FAILED" in text and "'oms-eu'" in text

    admin = healthy(config)
    admin.coordinator_error = CoordinatorNotAvailableError()
    report = await run(config, admin)
    assert report.ok and levels(report, "group-coordinator") == ["warn"]


async def test_missing_topics_warn_when_the_worker_may_create_them_and_the_create_is_validated() -> None:
    config = settings()
    admin = healthy(config)
    leader = leader_topic(config)
    del admin.topics[leader]
    report = await run(config, admin)
    assert report.ok
    assert [(c.level, c.topic) for c in report.checks if c.check == "exists"] == [("warn", leader)]
    # Validate only: nothing created.
    assert admin.created == [(leader, True)]
    assert levels(report, "authorization") == ["pass"]


async def test_missing_topics_the_worker_may_not_create_fail_naming_the_authorization_error() -> None:
    config = settings()
    admin = healthy(config)
    leader = leader_topic(config)
    del admin.topics[leader]
    admin.create_errors[leader] = CLUSTER_AUTHORIZATION_FAILED
    report = await run(config, admin)
    assert not report.ok
    (auth,) = [c for c in report.checks if c.check == "authorization"]
    assert auth.level == "fail" and f"{leader} (CLUSTER_AUTHORIZATION_FAILED" in auth.text
    assert "OMS_CREATE_TOPICS=false" in auth.text


async def test_pre_created_mode_fails_on_a_missing_topic_and_asks_to_create_nothing() -> None:
    config = settings(create_topics=False)
    admin = healthy(config)
    leader = leader_topic(config)
    del admin.topics[leader]
    report = await run(config, admin)
    assert not report.ok
    ((check, topic, text),) = failures(report)
    assert (check, topic) == ("exists", leader) and "OMS_CREATE_TOPICS=false" in text
    assert admin.created == []


async def test_a_broker_that_ignores_validate_only_is_reported_and_its_topics_checked() -> None:
    config = settings()
    admin = healthy(config)
    leader = leader_topic(config)
    del admin.topics[leader]

    async def create_for_real(
        new_topics: list[NewTopic], timeout_ms: int | None = None, validate_only: bool = False
    ) -> Any:
        for topic in new_topics:
            admin.topics[topic.name] = (
                topic.num_partitions,
                topic.replication_factor,
                dict(topic.topic_configs),
            )
        return SimpleNamespace(topic_errors=[(t.name, 0, None) for t in new_topics])

    admin.create_topics = create_for_real  # type: ignore[method-assign]
    report = await run(config, admin)
    assert report.ok
    assert levels(report, "validate-only") == ["warn"]
    assert levels(report, "exists") == []  # checked as it now is


async def test_auto_create_topics_enable_true_warns() -> None:
    config = settings()
    admin = healthy(config)
    admin.broker_config["auto.create.topics.enable"] = "true"
    report = await run(config, admin)
    assert report.ok and levels(report, "auto.create.topics.enable") == ["warn"]
    admin.broker_config.clear()  # a broker that tells nothing (the local Tansu broker)
    report = await run(config, admin)
    (line,) = [c for c in report.checks if c.check == "auto.create.topics.enable"]
    assert line.level == "pass" and line.text.startswith("unknown")


def test_cli_exit_status_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("OMS_TOPIC_PREFIX", "acme.")
    config = settings()
    admin = healthy(config)
    monkeypatch.setattr(doctor, "_admin", lambda _: admin)
    monkeypatch.setattr(idempotence, "probe", granted)
    runner = CliRunner()
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["broker"]["cluster_id"] == "fake-cluster"
    assert {tuple(c) for c in document["checks"]} == {("level", "check", "topic", "text")}

    changelog = changelog_topic(config, "stock")
    partitions, replicas, _ = admin.topics[changelog]
    admin.topics[changelog] = (partitions, replicas, {"cleanup.policy": "compact,delete"})
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert f"FAIL  cleanup.policy  {changelog}  cleanup.policy=compact,delete" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("NOT ok: ")


def test_cli_unreachable_broker_exits_1_with_a_fail_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    monkeypatch.setenv("OMS_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("FAIL  connection  cannot reach the broker at 127.0.0.1:1")
    assert "Traceback" not in result.output


def test_cli_bad_setting_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_ENABLE_IDEMPOTENCE", "maybe")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 2 and "OMS_ENABLE_IDEMPOTENCE" in result.stderr


async def test_a_session_the_broker_refuses_fails_and_one_it_may_refuse_warns() -> None:
    config = settings(session_timeout_seconds=3)
    admin = healthy(config)
    admin.broker_config["group.min.session.timeout.ms"] = "6000"
    report = await run(config, admin)
    assert not report.ok and levels(report, "session.timeout") == ["fail"]
    admin.broker_config.clear()  # a broker that tells nothing (the local Tansu broker)
    report = await run(config, admin)
    assert report.ok and levels(report, "session.timeout") == ["warn"]
