"""`oms-postsales doctor`: with the worker's settings, what the broker will make of the worker, before it
runs. One finding per check: pass, warn (the worker runs, at a risk) or fail (it would not run, or not
correctly). docs/kafka.md lists the checks and the broker behaviour behind each.

Reads only, with one exception forced on us: when the worker may create topics and some are missing,
a CreateTopics with validate_only asks whether it may. Apache Kafka validates and creates nothing; the
local Tansu broker ignores the flag and creates them. They are then created exactly as the worker would
at start (same partitions, replication and settings), the doctor says so, and checks what now exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import ApiVersionRequest

from workers.config.settings import Settings
from workers.kafka import idempotence
from workers.kafka.cluster import ClusterState, error_name, read_with
from workers.kafka.session_check import session_finding
from workers.kafka.topic_checks import Finding, Level, check_topics
from workers.kafka.topic_spec import TopicSpec
from workers.kafka.topics import catalogue, copartitioned_topics

# The admin client's requests answer within this (aiokafka's default is 40 s): a doctor should answer
# quickly when a broker accepts connections and never replies.
REQUEST_TIMEOUT_MS = 15_000
DAY_MS = 24 * 3600 * 1000
_TOPIC_ALREADY_EXISTS = 36

# Kafka client APIs whose presence proves the broker speaks at least that Kafka release's protocol
# (the KIP that added each). Kafka does not report its version; this is a lower bound, never a guess.
API_SINCE: Sequence[tuple[int, str, str]] = (
    (60, "2.8", "DescribeCluster, KIP-700"),
    (50, "2.7", "DescribeUserScramCredentials, KIP-554"),
    (48, "2.6", "DescribeClientQuotas, KIP-546"),
    (44, "2.3", "IncrementalAlterConfigs, KIP-339"),
)


class Admin(Protocol):
    """What the doctor uses of aiokafka's AIOKafkaAdminClient (tests pass a fake)."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def describe_cluster(self) -> dict[str, Any]: ...
    async def describe_topics(self, topics: list[str] | None = None) -> list[Any]: ...
    async def describe_configs(
        self, config_resources: list[Any], include_synonyms: bool = False
    ) -> list[Any]: ...
    async def find_coordinator(self, group_id: str, coordinator_type: int = 0) -> int: ...
    async def create_topics(
        self, new_topics: list[NewTopic], timeout_ms: int | None = None, validate_only: bool = False
    ) -> Any: ...


AdminFactory = Callable[[Settings], Admin]
IdempotenceProbe = Callable[[Settings], Awaitable[str | None]]


def _admin(settings: Settings) -> Admin:
    client: Admin = AIOKafkaAdminClient(
        **settings.kafka_client_kwargs(), request_timeout_ms=REQUEST_TIMEOUT_MS
    )
    return client


@dataclass
class Report:
    checks: list[Finding] = field(default_factory=list)
    broker: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(check.level == "fail" for check in self.checks)

    def add(self, level: Level, check: str, text: str, topic: str | None = None) -> None:
        self.checks.append(Finding(level, check, topic, text))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [
                {"level": c.level, "check": c.check, "topic": c.topic, "text": c.text} for c in self.checks
            ],
            "broker": self.broker,
        }

    def text(self) -> str:
        lines = [
            "  ".join(part for part in (c.level.upper().ljust(4), c.check, c.topic or "", c.text) if part)
            for c in self.checks
        ]
        counts = {level: sum(c.level == level for c in self.checks) for level in ("pass", "warn", "fail")}
        verdict = "ok" if self.ok else "NOT ok"
        lines.append(
            f"{verdict}: {counts['pass']} passed, {counts['warn']} warning(s), {counts['fail']} failed"
        )
        return "\n".join(lines) + "\n"


async def diagnose(
    settings: Settings,
    *,
    admin_factory: AdminFactory | None = None,
    probe_idempotence: IdempotenceProbe | None = None,
) -> Report:
    """Every check, in the order an operator would fix them. Raises TopicError for settings that
    contradict each other (OMS_TOPIC_MAP, partition counts): a bad setting, not a broker finding."""
    specs = catalogue(settings)
    report = Report(broker={"bootstrap_servers": settings.bootstrap_servers})
    admin = (admin_factory or _admin)(settings)
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        report.add(
            "fail", "connection", f"cannot reach the broker at {settings.bootstrap_servers} ({_why(exc)})"
        )
        return report
    try:
        cluster = await _checks_with(admin, settings, specs, report)
    finally:
        await admin.close()
    if cluster is not None:
        await _check_idempotence(settings, probe_idempotence or idempotence.probe, report)
    return report


async def _checks_with(
    admin: Admin, settings: Settings, specs: list[TopicSpec], report: Report
) -> ClusterState | None:
    names = [spec.name for spec in specs]
    try:
        cluster = await read_with(admin, names)
    except (KafkaError, OSError) as exc:
        report.add(
            "fail",
            "connection",
            f"the broker at {settings.bootstrap_servers} did not describe the cluster ({_why(exc)})",
        )
        return None
    _check_connection(settings, cluster, report)
    if cluster.brokers == 0:
        return None
    await _check_version(admin, report)
    await _check_coordinator(admin, settings, report)
    cluster = await _check_authorization(admin, settings, specs, cluster, report)
    _check_topics(settings, specs, cluster, report)
    _check_auto_create(cluster, report)
    report.checks.append(session_finding(settings.session_timeout_seconds, cluster))
    _check_delete_retention(specs, cluster, report)
    report.broker["settings"] = {
        name: cluster.broker_setting(name)
        for name in ("default.replication.factor", "min.insync.replicas", "auto.create.topics.enable")
    }
    return cluster


def _why(exc: BaseException) -> str:
    name = getattr(exc, "message", None)
    if (
        isinstance(name, str) and name.isupper()
    ):  # a broker error code's name, e.g. GROUP_AUTHORIZATION_FAILED
        return name
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}"[:200] if detail else type(exc).__name__


def _check_connection(settings: Settings, cluster: ClusterState, report: Report) -> None:
    report.broker.update(
        {"cluster_id": cluster.cluster_id, "brokers": cluster.brokers, "controller": cluster.controller}
    )
    if cluster.brokers == 0:
        report.add("fail", "connection", f"{settings.bootstrap_servers} answered with no brokers")
        return
    controller = (
        cluster.controller if cluster.controller is not None and cluster.controller >= 0 else "unknown"
    )
    report.add(
        "pass",
        "connection",
        f"{settings.bootstrap_servers}: cluster {cluster.cluster_id or 'unknown'}, "
        f"{cluster.brokers} broker(s), controller {controller}",
    )


async def _api_versions(admin: Admin) -> dict[int, tuple[int, int]]:
    """ApiVersions of one broker: api key -> (min, max). Empty when it cannot be asked."""
    client = getattr(admin, "_client", None)
    if client is None:
        return {}
    response = await client.send(client.get_random_node(), ApiVersionRequest())
    if getattr(response, "error_code", 0):
        return {}
    return {key: (low, high) for key, low, high in response.api_versions}


async def _check_version(admin: Admin, report: Report) -> None:
    try:
        versions = await _api_versions(admin)
    except (KafkaError, OSError, AttributeError, TypeError) as exc:
        report.broker["version"] = "unknown"
        report.add("pass", "broker-version", f"unknown (ApiVersions not answered: {_why(exc)})")
        return
    report.broker["version"] = "unknown"
    report.broker["api_versions"] = {
        str(key): f"{low}-{high}" for key, (low, high) in sorted(versions.items())
    }
    if not versions:
        report.add("pass", "broker-version", "unknown (ApiVersions not available)")
        return
    floor = next(((since, api) for key, since, api in API_SINCE if key in versions), None)
    if floor is None:
        report.add("pass", "broker-version", f"unknown (Kafka does not report it); {len(versions)} APIs")
        return
    since, api = floor
    report.broker["protocol_at_least"] = since
    report.add(
        "pass",
        "broker-version",
        f"unknown (Kafka does not report it); speaks the protocol of Kafka {since} or later ({api})",
    )


async def _check_coordinator(admin: Admin, settings: Settings, report: Report) -> None:
    group = settings.consumer_group
    try:
        node = await admin.find_coordinator(group)
    except KafkaError as exc:
        why = _why(exc)
        level: Level = "fail"
        if why == "GROUP_AUTHORIZATION_FAILED":
            text = (
                f"group {group!r}: GROUP_AUTHORIZATION_FAILED: the worker's principal needs Read "
                "(and Describe) on the group"
            )
        elif why == "COORDINATOR_NOT_AVAILABLE":
            # A new cluster creates its offsets topic on the first request: try again in a moment.
            level, text = "warn", f"group {group!r}: COORDINATOR_NOT_AVAILABLE yet (retry in a moment)"
        else:
            text = f"group {group!r}: no coordinator ({why})"
        report.add(level, "group-coordinator", text)
        return
    report.broker["coordinator"] = node
    report.add("pass", "group-coordinator", f"group {group!r}: coordinator is broker {node}")


async def _check_authorization(
    admin: Admin, settings: Settings, specs: list[TopicSpec], cluster: ClusterState, report: Report
) -> ClusterState:
    """Describe and DescribeConfigs on the worker's topics; Create on the missing ones when the worker
    would create them. Returns the cluster as it is after a broker that ignores validate_only."""
    if cluster.refused:
        refused = ", ".join(f"{name} ({why})" for name, why in sorted(cluster.refused.items()))
        report.add(
            "fail",
            "authorization",
            f"the broker refuses to describe {len(cluster.refused)} topic(s): {refused}; the worker "
            "needs Describe on every topic it uses",
        )
    unreadable = {name: s.config_error for name, s in cluster.topics.items() if s.config_error}
    if unreadable:
        listed = ", ".join(f"{name} ({why})" for name, why in sorted(unreadable.items()))
        report.add(
            "warn",
            "authorization",
            f"DescribeConfigs refused on {len(unreadable)} topic(s): {listed}; their settings cannot be "
            "checked (grant DescribeConfigs on the worker's topics)",
        )
    missing = [spec for spec in specs if spec.name not in cluster.topics and spec.name not in cluster.refused]
    if not settings.create_topics or not missing:
        if not cluster.refused and not unreadable:
            report.add(
                "pass",
                "authorization",
                f"Describe and DescribeConfigs granted on {len(cluster.topics)} topic(s)",
            )
        return cluster
    replication = cluster.default_replication()
    new = [
        NewTopic(
            name=spec.name,
            num_partitions=spec.partitions,
            replication_factor=spec.replication or replication,
            topic_configs=dict(spec.config),
        )
        for spec in missing
    ]
    try:
        response = await admin.create_topics(new, validate_only=True)
    except KafkaError as exc:
        report.add(
            "fail",
            "authorization",
            f"CreateTopics (validate only) for {len(missing)} missing topic(s) failed: {_why(exc)}",
        )
        return cluster
    refusals: list[str] = []
    for entry in response.topic_errors:
        name, code, *rest = entry
        if code in (0, _TOPIC_ALREADY_EXISTS):
            continue
        message = f" {rest[0]}" if rest and rest[0] else ""
        refusals.append(f"{name} ({error_name(code)}{message})")
    if refusals:
        report.add(
            "fail",
            "authorization",
            f"the worker may not create {len(refusals)} missing topic(s): {', '.join(refusals)}; "
            "grant Create on the cluster or the topics' prefix, or pre-create them "
            "(`oms-postsales topics plan`) and set OMS_CREATE_TOPICS=false",
        )
    else:
        report.add(
            "pass",
            "authorization",
            f"the broker would let the worker create the {len(missing)} missing topic(s) "
            "(CreateTopics, validate only)",
        )
    try:
        after = await read_with(admin, [spec.name for spec in specs])
    except (KafkaError, OSError) as exc:
        report.add("fail", "connection", f"the cluster could not be described again ({_why(exc)})")
        return cluster
    created = sorted(spec.name for spec in missing if spec.name in after.topics)
    if created:
        report.add(
            "warn",
            "validate-only",
            f"the broker ignored CreateTopics' validate_only and created {len(created)} topic(s), with the "
            "worker's partitions and settings, as the worker would at start (the local Tansu broker does)",
        )
    return after


def _check_topics(settings: Settings, specs: list[TopicSpec], cluster: ClusterState, report: Report) -> None:
    together = [name for name in copartitioned_topics(settings) if name in {s.name for s in specs}]
    findings = check_topics(specs, cluster, together, settings.producer_max_request_bytes)
    for finding in findings:
        if finding.check == "exists" and finding.topic not in cluster.refused and settings.create_topics:
            # Missing, and the worker creates it at start (OMS_CREATE_TOPICS=true).
            finding = Finding(
                "warn", "exists", finding.topic, "does not exist: the worker creates it at start"
            )
        elif finding.check == "exists" and finding.topic not in cluster.refused:
            finding = Finding(
                "fail",
                "exists",
                finding.topic,
                "does not exist, and OMS_CREATE_TOPICS=false: create it (`oms-postsales topics plan`)",
            )
        report.checks.append(finding)
    if not findings:
        report.add(
            "pass",
            "topics",
            f"all {len(specs)} topic(s) exist with the partitions and settings the worker needs",
        )


def _check_auto_create(cluster: ClusterState, report: Report) -> None:
    value = cluster.broker_setting("auto.create.topics.enable")
    if value is None:
        why = f" ({cluster.broker_config_error})" if cluster.broker_config_error else ""
        report.add(
            "pass",
            "auto.create.topics.enable",
            f"unknown: the broker did not say{why}; when true, a misspelt upstream topic is created "
            "silently instead of failing",
        )
    elif value.strip().lower() == "true":
        report.add(
            "warn",
            "auto.create.topics.enable",
            "true: a misspelt upstream topic (OMS_TOPIC_MAP, OMS_TOPIC_PREFIX) is created empty with the "
            "broker's defaults, and the worker waits on it silently; set it to false",
        )
    else:
        report.add(
            "pass", "auto.create.topics.enable", f"{value}: missing topics are not created by reading them"
        )


def _check_delete_retention(specs: list[TopicSpec], cluster: ClusterState, report: Report) -> None:
    values: dict[str, int] = {}
    for spec in specs:
        state = cluster.topics.get(spec.name)
        if spec.role != "changelog" or state is None or state.config_error:
            continue
        raw = cluster.setting(spec.name, "delete.retention.ms")
        if raw.strip().lstrip("-").isdigit():
            values[spec.name] = int(raw)
    if not values:
        return
    shortest = min(values.values())
    spread = "" if len(set(values.values())) == 1 else f" (shortest of {len(values)}; they differ)"
    report.broker["changelog_delete_retention_ms"] = shortest
    report.add(
        "pass",
        "delete.retention.ms",
        f"changelogs keep deletes for {shortest} ms ({_duration(shortest)}){spread}: a RocksDB folder whose "
        "mark is older than that is rebuilt from its changelog at start",
    )


def _duration(ms: int) -> str:
    hours = ms / 3_600_000
    return f"{hours / 24:g} day(s)" if hours >= 24 else f"{hours:g} hour(s)"


async def _check_idempotence(settings: Settings, probe: IdempotenceProbe, report: Report) -> None:
    mode = settings.enable_idempotence
    if mode == "false":
        report.add("pass", "idempotence", "OMS_ENABLE_IDEMPOTENCE=false: the producer is not idempotent")
        return
    try:
        refused = await probe(settings)
    except (KafkaError, OSError) as exc:
        report.add("fail", "idempotence", f"could not ask for a producer id ({_why(exc)})")
        return
    if refused is None:
        report.add(
            "pass",
            "idempotence",
            f"the broker granted an idempotent producer id (OMS_ENABLE_IDEMPOTENCE={mode})",
        )
    elif mode == "true":
        report.add(
            "fail",
            "idempotence",
            f"OMS_ENABLE_IDEMPOTENCE=true but the broker refused a producer id ({refused}); the worker "
            "would not start (on Kafka before 2.8 the principal needs IdempotentWrite on the cluster)",
        )
    else:
        report.add(
            "warn",
            "idempotence",
            f"the broker refused a producer id ({refused}): the worker runs without; effects stay once "
            "per message, a batch retried after a lost answer may repeat a record on an output topic",
        )
