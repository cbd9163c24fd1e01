"""The topics the worker reads and writes, and creating / checking them on the broker.

Topics are created explicitly with their partition counts: brokers that auto-create (Tansu always
does, with 4 partitions) would otherwise pick a count for us, and a partition count cannot be
changed afterwards without remapping keys (Tansu cannot add partitions at all, docs/local-broker.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from domain import names
from workers.config.settings import Settings
from workers.engine.rule_records import RULES_TOPIC
from workers.engine.stores import table_names
from workers.kafka.cluster import ClusterState, error_name, read_with
from workers.kafka.topic_checks import check_topics
from workers.kafka.topic_spec import Role, TopicSpec, check_copartitioning

__all__ = ["Role", "TopicSpec", "check_copartitioning"]

# Every inbound record the intake could decode, re-keyed by the order (or source) its payload names,
# whatever key, partitioner or partition count its producer used.
INBOUND_TOPIC = "oms-postsales.inbound"
# Stock movements re-keyed "<source>:<sku>" between the order agent and the stock agent (README, "The
# worker on Kafka").
STOCK_MOVEMENTS_TOPIC = "oms-postsales.stock-movements"
# Clock ticks, one per order partition, that settle messages held for orders that never arrived: faust
# tables can only be written while handling a record of the same partition, so the timer sends records.
TICKS_TOPIC = "oms-postsales.settle-ticks"
# The runtime's own table beside the pipeline's stores: per partition, the keys of the orders holding
# messages, whose deadlines the settle ticks check.
WAITING_TABLE = "waiting"
# And per partition: which orders may leave state in which hour (retention), the next hour to sweep,
# and how many orders the partition keeps.
RETENTION_TABLE = "retention-index"
# faust tables of the worker -> whether they follow the internal stock partitions.
TABLES = {**table_names(), WAITING_TABLE: False, RETENTION_TABLE: False}
COMPACT = MappingProxyType({"cleanup.policy": "compact"})
# Ticks matter for seconds; a day keeps them readable for an operator.
TICKS_RETENTION_MS = 24 * 3600 * 1000
# Dead letters wait for an operator to redrive them: a month covers a holiday.
DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000


def changelog_topic(settings: Settings, table: str) -> str:
    """faust's changelog name for a table: "<app id>-<table>-changelog"."""
    return f"{settings.consumer_group}-{table}-changelog"


def rules_topic(settings: Settings) -> str:
    """The rule sets' topic (workers/engine/rule_records.py), namespaced by OMS_TOPIC_PREFIX."""
    return settings.topic_prefix + RULES_TOPIC


def leader_topic(settings: Settings) -> str:
    """faust's leader election topic ("<app id>-__assignor-__leader"): one partition, no records. The
    settle ticks run on the leader only; the topic must exist where the worker may not create topics."""
    return f"{settings.consumer_group}-__assignor-__leader"


_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class CreateReport:
    created: tuple[str, ...]
    existed: tuple[str, ...]
    # The cluster as read after any creation: its broker settings serve the start's other checks.
    cluster: ClusterState


class TopicError(RuntimeError):
    """The broker's topics do not match what the worker needs."""


def inbound_topics(settings: Settings) -> list[str]:
    """Every topic upstream writes to: what the intake reads."""
    return _unique(settings.topic_for(m) for m in names.INBOUND)


def copartitioned_topics(settings: Settings) -> list[str]:
    """What the order agent reads and writes together: the re-keyed inbound topic, ticks and the
    order tables' changelogs. They must have the same partition count."""
    tables = [changelog_topic(settings, table) for table, stock in TABLES.items() if not stock]
    return [settings.topic_prefix + INBOUND_TOPIC, settings.topic_prefix + TICKS_TOPIC, *tables]


def catalogue(settings: Settings) -> list[TopicSpec]:
    """Every topic the worker needs, once each, in a stable order, with the settings its role needs."""
    upstream = set(inbound_topics(settings))
    changelogs = {
        changelog_topic(settings, table): settings.internal_partitions if stock else settings.partitions
        for table, stock in TABLES.items()
    }
    # Records the worker writes may be as large as its producer sends: topics it creates say so, so a
    # broker whose default max.message.bytes is smaller still takes them.
    sized = {"max.message.bytes": str(settings.producer_max_request_bytes)}
    internal = {
        **sized,
        "cleanup.policy": "delete",
        "retention.ms": str(settings.internal_retention_hours * 3600 * 1000),
    }
    wanted: list[tuple[str, int, Role, Mapping[str, str]]] = [
        *((settings.topic_for(m), settings.partitions, "upstream", {}) for m in names.INBOUND),
        *((settings.topic_for(m), settings.partitions, "output", sized) for m in names.OUTBOUND),
        (settings.topic_prefix + INBOUND_TOPIC, settings.partitions, "internal", internal),
        (settings.topic_prefix + STOCK_MOVEMENTS_TOPIC, settings.internal_partitions, "internal", internal),
        (
            settings.topic_prefix + TICKS_TOPIC,
            settings.partitions,
            "ticks",
            {"cleanup.policy": "delete", "retention.ms": str(TICKS_RETENTION_MS)},
        ),
        (
            settings.dlq_topic,
            settings.partitions,
            "dlq",
            {**sized, "cleanup.policy": "delete", "retention.ms": str(DLQ_RETENTION_MS)},
        ),
        *((name, count, "changelog", {**sized, **COMPACT}) for name, count in changelogs.items()),
        (leader_topic(settings), 1, "leader", {}),
        # One partition: the versions of every key in one order, so "above the last version" means
        # the same to every reader; compacted, each version keeping its own key (`<channel>@<n>`).
        (rules_topic(settings), 1, "rules", {**sized, **COMPACT}),
    ]
    specs: dict[str, TopicSpec] = {}
    for name, partitions, role, config in wanted:
        # topic_map may send several messages to one topic; that is fine unless the counts clash.
        known = specs.get(name)
        if known is None:
            if name in upstream:
                role, config = "upstream", {}
            specs[name] = TopicSpec(
                name,
                partitions,
                settings.replication_factor,
                MappingProxyType(dict(config)),
                any_partition_count=role == "upstream",
                role=role,
            )
        elif known.partitions != partitions:
            raise TopicError(
                f"topic {name!r} is wanted with {known.partitions} and with {partitions} partitions; "
                "check OMS_TOPIC_MAP, OMS_PARTITIONS and OMS_INTERNAL_PARTITIONS"
            )
    return list(specs.values())


async def create_topics(
    settings: Settings, specs: Iterable[TopicSpec], *, create: bool | None = None
) -> CreateReport:
    """Create the missing topics (unless `create` or OMS_CREATE_TOPICS says not to), then check every
    topic against what the worker needs (workers/kafka/topic_checks.py).

    Raises TopicError with one line per problem: a topic missing, a partition count, co-partitioned
    topics that differ, a changelog that is not compacted, replication under min.insync.replicas...
    Creation is idempotent, so a re-run after the fix is safe. A topic created without an explicit
    OMS_REPLICATION_FACTOR gets the broker's default.replication.factor.
    """
    wanted = {spec.name: spec for spec in specs}
    create = settings.create_topics if create is None else create
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        cluster = await read_with(admin, list(wanted))
        known = {*cluster.topics, *cluster.refused}
        missing = [spec for name, spec in wanted.items() if name not in known]
        created: list[str] = []
        if missing and create:
            replication = cluster.default_replication()
            response = await admin.create_topics([_new_topic(spec, replication) for spec in missing])
            failures = []
            for name, code, message in _topic_errors(response):
                if code == 0:
                    created.append(name)
                elif code != _TOPIC_ALREADY_EXISTS:  # another worker won the race: fine
                    failures.append(f"{name}: {error_name(code)} {message or ''}".strip())
            if failures:
                raise TopicError("could not create topics: " + "; ".join(failures))
            cluster = await read_with(admin, list(wanted))
    finally:
        await admin.close()
    together = [name for name in copartitioned_topics(settings) if name in wanted]
    problems = [
        finding
        for finding in check_topics(wanted.values(), cluster, together, settings.producer_max_request_bytes)
        if finding.level == "fail"
    ]
    if problems:
        raise TopicError(
            "the topics on the broker are not what the worker needs:\n"
            + "\n".join(f"  {finding.line()}" for finding in problems)
        )
    created_set = set(created)
    return CreateReport(
        created=tuple(n for n in wanted if n in created_set),
        existed=tuple(n for n in wanted if n not in created_set),
        cluster=cluster,
    )


async def describe_partitions(settings: Settings, topic_names: Iterable[str]) -> dict[str, int]:
    """Partition count per topic; topics that do not exist are left out."""
    counts = await all_partitions(settings)
    return {name: counts[name] for name in topic_names if name in counts}


async def all_partitions(settings: Settings) -> dict[str, int]:
    """Partition count of every topic on the broker."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        # Metadata for all topics, filtered by the callers: naming topics in a Metadata request asks
        # the broker to auto-create the missing ones, which would hide exactly what we look for.
        return _partition_counts(await admin.describe_topics())
    finally:
        await admin.close()


# The first part of every message name of the contract (names.INBOUND, names.OUTBOUND).
MESSAGE_NAME_PREFIX = "magento."


def stray_topics(settings: Settings, existing: Iterable[str]) -> list[str]:
    """Topics named like a message (the topic prefix, then `magento.`) that no message maps to: most
    likely a misspelt name that an upstream client created by writing to it (auto-creation is on by
    default in librdkafka and kafkajs). Nothing reads them, so their records are lost silently."""
    known = {spec.name for spec in catalogue(settings)}
    prefix = settings.topic_prefix + MESSAGE_NAME_PREFIX
    return sorted(name for name in existing if name.startswith(prefix) and name not in known)


def _new_topic(spec: TopicSpec, default_replication: int) -> NewTopic:
    return NewTopic(
        name=spec.name,
        num_partitions=spec.partitions,
        replication_factor=spec.replication or default_replication,
        topic_configs=dict(spec.config),
    )


def _partition_counts(topics: list[dict[str, Any]]) -> dict[str, int]:
    return {t["topic"]: len(t["partitions"]) for t in topics if t.get("error_code", 0) == 0}


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    errors = []
    for entry in response.topic_errors:
        # v0 answers (topic, error_code); v1 and later add error_message.
        name, code, *rest = entry
        errors.append((name, code, rest[0] if rest else None))
    return errors


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
