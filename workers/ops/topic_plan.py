"""`oms-postsales topics plan`: the exact topics the worker needs, in a form an operator feeds to tooling.

Built from the same catalogue the worker creates and checks at start (workers/kafka/topics.py), so a
plan applied by hand, by `kafka-topics.sh` or by Terraform is what `OMS_CREATE_TOPICS=false` verifies.
No broker is asked: a replication factor left to the broker reads "broker default" (kafka-topics.sh
without --replication-factor lets the broker choose, KIP-464; the Terraform provider requires a number,
so the plan declares a variable for it).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from workers.config.settings import Settings
from workers.kafka.topic_spec import Role
from workers.kafka.topics import catalogue

Format = Literal["text", "json", "kafka-topics", "terraform"]
FORMATS: tuple[Format, ...] = ("text", "json", "kafka-topics", "terraform")
BROKER_DEFAULT = "broker default"
TERRAFORM_REPLICATION_VARIABLE = "oms_replication_factor"

# What each role means to the operator applying the plan.
ROLE_NOTES: Mapping[Role, str] = {
    "upstream": "written by upstream systems; the worker reads any partition count",
    "output": "written by the worker for downstream systems",
    "internal": "the worker's own re-keyed records; delete policy, retention counted from forwarding",
    "ticks": "the worker's clock ticks, co-partitioned with the orders",
    "dlq": "dead letters, kept for an operator to redrive",
    "changelog": "a faust table's changelog: must be compacted",
    "leader": "faust's leader election topic: one partition, no records",
    "rules": "the rule sets per sales channel, one record per version: one partition (one order of "
    "versions), compacted; every worker reads all of it",
}


@dataclass(frozen=True)
class PlannedTopic:
    name: str
    role: Role
    partitions: int
    # None: the broker's default.replication.factor.
    replication: int | None
    config: Mapping[str, str]
    # Upstream topics: the partition count is a suggestion, any count works.
    any_partition_count: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "partitions": self.partitions,
            "any_partition_count": self.any_partition_count,
            "replication": self.replication,
            "config": dict(self.config),
        }


def plan(settings: Settings, replication: int | None = None) -> list[PlannedTopic]:
    """Every topic of the catalogue; `replication` overrides OMS_REPLICATION_FACTOR."""
    return [
        PlannedTopic(
            name=spec.name,
            role=spec.role,
            partitions=spec.partitions,
            replication=replication if replication is not None else spec.replication,
            config=dict(sorted(spec.config.items())),
            any_partition_count=spec.any_partition_count,
        )
        for spec in catalogue(settings)
    ]


def render(topics: Sequence[PlannedTopic], fmt: Format) -> str:
    renderers = {
        "text": render_text,
        "json": render_json,
        "kafka-topics": render_kafka_topics,
        "terraform": render_terraform,
    }
    return renderers[fmt](topics)


def _replication_text(value: int | None) -> str:
    return BROKER_DEFAULT if value is None else str(value)


def render_text(topics: Sequence[PlannedTopic]) -> str:
    """A table: topic, role, partitions, replication, then the configs as k=v separated by spaces."""
    header = ("TOPIC", "ROLE", "PARTITIONS", "REPLICATION", "CONFIG")
    rows = [
        (
            t.name,
            t.role,
            str(t.partitions),
            _replication_text(t.replication),
            " ".join(f"{k}={v}" for k, v in t.config.items()) or "-",
        )
        for t in topics
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        for row in [header, *rows]
    ]
    roles = list(dict.fromkeys(t.role for t in topics))
    lines.append("")
    lines.extend(f"{role}: {ROLE_NOTES[role]}" for role in roles)
    if any(t.replication is None for t in topics):
        lines.append(f"{BROKER_DEFAULT}: the broker's default.replication.factor (3 recommended)")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render_json(topics: Sequence[PlannedTopic]) -> str:
    document = {
        "topics": [t.as_dict() for t in topics],
        "replication_null_means": "the broker's default.replication.factor",
    }
    return json.dumps(document, indent=2) + "\n"


def render_kafka_topics(topics: Sequence[PlannedTopic]) -> str:
    """One `kafka-topics.sh --create` line per topic; the role as a trailing shell comment."""
    lines = [
        "# The topics of oms-postsales (`oms-postsales topics plan --format kafka-topics`).",
        "# BOOTSTRAP: a broker host:port; add --command-config <client.properties> for a secured cluster.",
    ]
    for t in topics:
        words = [
            "kafka-topics.sh",
            "--bootstrap-server",
            '"$BOOTSTRAP"',
            "--create",
            "--if-not-exists",
            "--topic",
            shlex.quote(t.name),
            "--partitions",
            str(t.partitions),
        ]
        if t.replication is not None:
            words += ["--replication-factor", str(t.replication)]
        for key, value in t.config.items():
            words += ["--config", shlex.quote(f"{key}={value}")]
        note = f"  # {t.role}" + (" (any partition count)" if t.any_partition_count else "")
        if t.replication is None:
            note += f"; replication: {BROKER_DEFAULT}"
        lines.append(" ".join(words) + note)
    return "\n".join(lines) + "\n"


def terraform_names(names: Sequence[str]) -> dict[str, str]:
    """Topic -> a Terraform resource name (letters, digits, '_' and '-', not starting with a digit or
    '-'), unique even when two topics differ only in characters that are replaced."""
    taken: set[str] = set()
    found: dict[str, str] = {}
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_-]", "_", name)
        if not re.match(r"[A-Za-z_]", base):
            base = "t_" + base
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}_{n}", n + 1
        taken.add(candidate)
        found[name] = candidate
    return found


def _hcl(text: str) -> str:
    # JSON string escaping is valid HCL; "${" and "%{" would start a template.
    return json.dumps(text).replace("${", "$${").replace("%{", "%%{")


def render_terraform(topics: Sequence[PlannedTopic]) -> str:
    """`kafka_topic` resources of the Mongey/kafka provider, one per topic."""
    lines = ["# The topics of oms-postsales (`oms-postsales topics plan --format terraform`)."]
    if any(t.replication is None for t in topics):
        lines += [
            f'variable "{TERRAFORM_REPLICATION_VARIABLE}" {{',
            "  type        = number",
            '  description = "Replicas of each topic: the default.replication.factor of the cluster, 3 '
            'recommended"',
            "}",
        ]
    resource_names = terraform_names([t.name for t in topics])
    for t in topics:
        replication = (
            str(t.replication) if t.replication is not None else f"var.{TERRAFORM_REPLICATION_VARIABLE}"
        )
        lines += [
            "",
            f"# {t.role}: {ROLE_NOTES[t.role]}",
            f'resource "kafka_topic" "{resource_names[t.name]}" {{',
            f"  name               = {_hcl(t.name)}",
            f"  partitions         = {t.partitions}",
            f"  replication_factor = {replication}",
        ]
        if t.config:
            lines.append("  config = {")
            lines.extend(f"    {_hcl(key)} = {_hcl(value)}" for key, value in t.config.items())
            lines.append("  }")
        lines.append("}")
    return "\n".join(lines) + "\n"
