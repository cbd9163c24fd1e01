"""Whether the broker's topics are what the worker needs: each finding names a topic and a rule.

Apache Kafka enforces rules the local broker does not, and a topic made by hand or by Terraform may
miss one. What each rule protects, in the broker's own terms:

- `cleanup.policy=compact` on a changelog: a table is restored from its changelog; with `delete`,
  Kafka removes segments older than `retention.ms` (7 days by default), and the state in them is gone
  for the next worker that restores it.
- `delete`, never `compact`, on the internal inbound and stock-movements topics: they carry several
  records per key (every message of an order); compaction would keep only the last one.
- A retention of at least a day on those: Kafka deletes a segment once its newest record is older
  than `retention.ms`, whether or not the group has read it.
- Replication at least `min.insync.replicas` on every topic the worker writes: it writes with
  acks=all, which Kafka refuses with NOT_ENOUGH_REPLICAS while fewer replicas are in sync.
- `max.message.bytes` at least the worker's producer request size: a larger record is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from workers.kafka.cluster import ClusterState
from workers.kafka.topic_spec import TopicSpec, check_copartitioning

Level = Literal["pass", "warn", "fail"]
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    topic: str | None
    text: str

    def line(self) -> str:
        where = f"{self.topic}: " if self.topic else ""
        return f"{where}{self.text}"


def check_topics(
    specs: Iterable[TopicSpec],
    cluster: ClusterState,
    copartitioned: Iterable[str],
    producer_max_request_bytes: int,
) -> list[Finding]:
    """Every problem with the topics (fail: the worker must not run; warn: it runs, at a risk)."""
    specs = list(specs)
    findings: list[Finding] = []
    for spec in specs:
        state = cluster.topics.get(spec.name)
        if state is None:
            why = cluster.refused.get(spec.name)
            text = f"not described: {why} (the worker needs Describe on it)" if why else "does not exist"
            findings.append(Finding("fail", "exists", spec.name, text))
            continue
        findings.extend(_check_one(spec, cluster, producer_max_request_bytes))
    counts = {name: cluster.topics[name].partitions for name in copartitioned if name in cluster.topics}
    problem = check_copartitioning(counts)
    if problem:
        findings.append(Finding("fail", "co-partitioning", None, problem.replace("\n", " ")))
    return findings


def _check_one(spec: TopicSpec, cluster: ClusterState, request_bytes: int) -> list[Finding]:
    state = cluster.topics[spec.name]
    found: list[Finding] = []

    def add(level: Level, check: str, text: str) -> None:
        found.append(Finding(level, check, spec.name, text))

    if state.partitions != spec.partitions and not spec.any_partition_count:
        add("fail", "partitions", f"has {state.partitions} partitions (wanted {spec.partitions})")
    if state.config_error is not None:
        add("warn", "settings", f"settings not readable ({state.config_error}; needs DescribeConfigs)")
        return found
    policy = {p.strip() for p in cluster.setting(spec.name, "cleanup.policy").split(",")}
    if spec.role == "rules" and policy != {"compact"}:
        add(
            "fail",
            "cleanup.policy",
            f"cleanup.policy={','.join(sorted(policy))}: the rules topic must be compact only, or rule "
            "set versions that still decide late messages are deleted",
        )
    if spec.role == "changelog" and policy != {"compact"}:
        add(
            "fail",
            "cleanup.policy",
            f"cleanup.policy={','.join(sorted(policy))}: a changelog must be compact only, or the state "
            "in its deleted segments is lost for the next restore",
        )
    if spec.role == "internal":
        if "compact" in policy:
            add(
                "fail",
                "cleanup.policy",
                "cleanup.policy includes compact: it holds several records per key, compaction "
                "would drop all but the last",
            )
        retention = int(cluster.setting(spec.name, "retention.ms"))
        if 0 <= retention < DAY_MS:
            add(
                "fail",
                "retention.ms",
                f"retention.ms={retention} is under a day: records the group has not read yet "
                "would be deleted after an outage",
            )
        if int(cluster.setting(spec.name, "retention.bytes")) >= 0:
            add("warn", "retention.bytes", "retention.bytes is set: a larger backlog is deleted unread")
    if spec.written_by_worker:
        min_isr = int(cluster.setting(spec.name, "min.insync.replicas"))
        if state.replication < min_isr:
            add(
                "fail",
                "replication",
                f"{state.replication} replica(s) but min.insync.replicas={min_isr}: every acks=all "
                "write is refused NOT_ENOUGH_REPLICAS",
            )
        elif state.replication < 3 and cluster.brokers >= 3:
            add(
                "warn",
                "replication",
                f"{state.replication} replica(s) on a cluster of {cluster.brokers} brokers: one lost "
                "broker disk can lose it (3 replicas with min.insync.replicas=2 recommended)",
            )
        limit = int(cluster.setting(spec.name, "max.message.bytes"))
        if limit < request_bytes:
            add(
                "fail",
                "max.message.bytes",
                f"max.message.bytes={limit} is under the worker's producer request size {request_bytes} "
                "(OMS_MAX_RECORD_BYTES plus headers): a record the worker accepted could be refused",
            )
    if spec.role == "upstream" and cluster.setting(spec.name, "message.timestamp.type") == "LogAppendTime":
        add(
            "warn",
            "message.timestamp.type",
            "LogAppendTime: the message time of its records is when the broker stored them, not when "
            "upstream sent them (return windows, holds and retention count in message time)",
        )
    return found
