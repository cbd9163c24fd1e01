"""`topics plan`: every format, parsed back, says exactly what the catalogue (what the worker creates and
verifies at start) says: names, roles, partitions, replication and configs."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest
from typer.testing import CliRunner

from domain import names
from workers.cli import app
from workers.config.settings import Settings
from workers.kafka.topics import catalogue, leader_topic
from workers.ops import topic_plan

Parsed = dict[str, dict[str, Any]]  # topic -> {role, partitions, replication, config}

SETTINGS = {
    "default": {},
    "prefix": {"topic_prefix": "acme.eu.", "partitions": 6, "internal_partitions": 3},
    "topic map": {
        "topic_prefix": "p-",
        "topic_map": {
            names.INBOUND[0]: "legacy.orders",
            names.INBOUND[1]: "legacy.orders",  # two messages on one topic
            names.OUTBOUND[0]: "downstream.order-updates",
        },
        "dlq_topic": "ops.dead-letters",
        "consumer_group": "oms-eu",
    },
    "replication set": {"replication_factor": 3, "internal_retention_hours": 720},
}


def settings_cases() -> list[Any]:
    return [pytest.param(values, id=case) for case, values in SETTINGS.items()]


def expected(settings: Settings, replication: int | None = None) -> Parsed:
    return {
        spec.name: {
            "role": spec.role,
            "partitions": spec.partitions,
            "replication": replication if replication is not None else spec.replication,
            "config": dict(spec.config),
        }
        for spec in catalogue(settings)
    }


def parse_text(text: str) -> Parsed:
    lines = text.splitlines()
    assert lines[0].split() == ["TOPIC", "ROLE", "PARTITIONS", "REPLICATION", "CONFIG"]
    found: Parsed = {}
    for line in lines[1 : lines.index("")]:
        name, role, partitions, *rest = line.split()
        if rest[:2] == ["broker", "default"]:
            replication, rest = None, rest[2:]
        else:
            replication, rest = int(rest[0]), rest[1:]
        config = {} if rest == ["-"] else dict(pair.split("=", 1) for pair in rest)
        found[name] = {
            "role": role,
            "partitions": int(partitions),
            "replication": replication,
            "config": config,
        }
    return found


def parse_json(text: str) -> Parsed:
    return {
        t["name"]: {k: t[k] for k in ("role", "partitions", "replication", "config")}
        for t in json.loads(text)["topics"]
    }


def parse_kafka_topics(text: str) -> Parsed:
    found: Parsed = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        assert words[:5] == [
            "kafka-topics.sh",
            "--bootstrap-server",
            "$BOOTSTRAP",
            "--create",
            "--if-not-exists",
        ]
        options: dict[str, list[str]] = {}
        for flag, value in zip(words[5::2], words[6::2], strict=True):
            options.setdefault(flag, []).append(value)
        role = line.rsplit("# ", 1)[1].split()[0].rstrip(";")
        (name,) = options["--topic"]
        (partitions,) = options["--partitions"]
        replication = options.get("--replication-factor")
        found[name] = {
            "role": role,
            "partitions": int(partitions),
            "replication": int(replication[0]) if replication else None,
            "config": dict(pair.split("=", 1) for pair in options.get("--config", [])),
        }
    return found


RESOURCE = re.compile(r'# (\w+): [^\n]*\nresource "kafka_topic" "([A-Za-z_][\w-]*)" \{\n(.*?)\n\}', re.S)


def parse_terraform(text: str) -> Parsed:
    found: Parsed = {}
    resource_names = set()
    for role, resource, body in RESOURCE.findall(text):
        assert resource not in resource_names
        resource_names.add(resource)
        fields = dict(re.findall(r"^  (\w+)\s+= (.+)$", body, re.M))
        config = dict(
            (json.loads(k), json.loads(v)) for k, v in re.findall(r'^    ("[^"]+") = ("[^"]*")$', body, re.M)
        )
        replication = fields["replication_factor"]
        if replication == f"var.{topic_plan.TERRAFORM_REPLICATION_VARIABLE}":
            assert f'variable "{topic_plan.TERRAFORM_REPLICATION_VARIABLE}"' in text
        found[json.loads(fields["name"])] = {
            "role": role,
            "partitions": int(fields["partitions"]),
            "replication": None if replication.startswith("var.") else int(replication),
            "config": config,
        }
    assert text.count('resource "kafka_topic"') == len(found)
    return found


PARSERS = {
    "text": parse_text,
    "json": parse_json,
    "kafka-topics": parse_kafka_topics,
    "terraform": parse_terraform,
}


@pytest.mark.parametrize("fmt", topic_plan.FORMATS)
@pytest.mark.parametrize("values", settings_cases())
@pytest.mark.parametrize("replication", [None, 2])
def test_every_format_parses_back_to_the_catalogue(
    fmt: topic_plan.Format, values: dict[str, Any], replication: int | None
) -> None:
    settings = Settings(**values)
    text = topic_plan.render(topic_plan.plan(settings, replication), fmt)
    assert PARSERS[fmt](text) == expected(settings, replication)


def test_the_plan_holds_upstream_topics_and_faust_own_leader_topic() -> None:
    settings = Settings(**SETTINGS["topic map"])
    planned = {t.name: t for t in topic_plan.plan(settings)}
    assert planned["legacy.orders"].role == "upstream" and planned["legacy.orders"].any_partition_count
    assert planned["legacy.orders"].config == {}
    assert planned["downstream.order-updates"].role == "output"
    assert planned["ops.dead-letters"].role == "dlq"
    leader = planned[leader_topic(settings)]
    assert (leader.name, leader.partitions, leader.role) == ("oms-eu-__assignor-__leader", 1, "leader")
    assert {t.config["cleanup.policy"] for t in planned.values() if t.role == "changelog"} == {"compact"}
    assert {t.replication for t in planned.values()} == {None}


def test_replication_left_to_the_broker_is_said_in_every_format() -> None:
    planned = topic_plan.plan(Settings())
    assert "--replication-factor" not in topic_plan.render_kafka_topics(planned)
    assert "broker default" in topic_plan.render_text(planned)
    assert json.loads(topic_plan.render_json(planned))["topics"][0]["replication"] is None
    terraform = topic_plan.render_terraform(planned)
    assert terraform.count("replication_factor = var.oms_replication_factor") == len(planned)
    # Set: no variable to answer.
    assert "variable" not in topic_plan.render_terraform(topic_plan.plan(Settings(replication_factor=3)))


def test_terraform_names_are_valid_and_unique() -> None:
    found = topic_plan.terraform_names(["a.b", "a_b", "a-b", "9lives", "-x"])
    assert list(found.values()) == ["a_b", "a_b_2", "a-b", "t_9lives", "t_-x"]
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name) for name in found.values())


def test_cli_prints_the_plan_without_a_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    # A port nothing listens on: the plan must not need the broker.
    monkeypatch.setenv("OMS_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("OMS_TOPIC_PREFIX", "acme.")
    monkeypatch.setenv("OMS_REPLICATION_FACTOR", "3")
    runner = CliRunner()
    result = runner.invoke(app, ["topics", "plan", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert parse_json(result.stdout) == expected(Settings(topic_prefix="acme.", replication_factor=3))
    result = runner.invoke(app, ["topics", "plan", "--format", "kafka-topics", "--replication", "2"])
    assert result.exit_code == 0, result.output
    assert parse_kafka_topics(result.stdout) == expected(Settings(topic_prefix="acme."), replication=2)
    assert runner.invoke(app, ["topics", "plan"]).stdout.startswith("TOPIC ")


def test_cli_refuses_an_unknown_format_and_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["topics", "plan", "--format", "yaml"])
    assert result.exit_code == 2 and "--format 'yaml'" in result.stderr
    monkeypatch.setenv("OMS_REPLICATION_FACTOR", "0")
    result = runner.invoke(app, ["topics", "plan"])
    assert result.exit_code == 2 and "OMS_REPLICATION_FACTOR" in result.stderr
