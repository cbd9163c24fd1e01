"""What the cluster says about itself and about the worker's topics: brokers, their defaults, each
topic's partitions, replicas and settings. Read once (at start, by `doctor`, by `topics list`), never
per record.

Apache Kafka answers DescribeConfigs with every setting of a topic, defaults included; the local Tansu
broker answers only with the settings a topic was created with. A setting the answer lacks is taken
from the broker's own default (its `log.*` synonym), else from Kafka's documented default, so both read
the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from workers.config.settings import Settings

# Kafka's error codes that matter when reading topics (the protocol's numbers).
UNKNOWN_TOPIC_OR_PARTITION = 3
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31
ERROR_NAMES = {
    UNKNOWN_TOPIC_OR_PARTITION: "UNKNOWN_TOPIC_OR_PARTITION",
    TOPIC_AUTHORIZATION_FAILED: "TOPIC_AUTHORIZATION_FAILED",
    GROUP_AUTHORIZATION_FAILED: "GROUP_AUTHORIZATION_FAILED",
    CLUSTER_AUTHORIZATION_FAILED: "CLUSTER_AUTHORIZATION_FAILED",
}

# A topic setting -> the broker setting that gives its default, and Kafka's default of both
# (Apache Kafka's topic configuration reference).
TOPIC_DEFAULTS: Mapping[str, tuple[str, str]] = {
    "cleanup.policy": ("log.cleanup.policy", "delete"),
    "retention.ms": ("log.retention.ms", "604800000"),
    "retention.bytes": ("log.retention.bytes", "-1"),
    "min.insync.replicas": ("min.insync.replicas", "1"),
    "max.message.bytes": ("message.max.bytes", "1048588"),
    "delete.retention.ms": ("log.cleaner.delete.retention.ms", "86400000"),
    "message.timestamp.type": ("log.message.timestamp.type", "CreateTime"),
}
BROKER_SETTINGS = (
    "default.replication.factor",
    "min.insync.replicas",
    "auto.create.topics.enable",
    *(broker for broker, _ in TOPIC_DEFAULTS.values()),
    "log.retention.hours",
)


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"error {code}")


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    # The fewest replicas of any of its partitions.
    replication: int
    # What DescribeConfigs answered (Kafka: everything; the local broker: what was set at creation).
    config: Mapping[str, str] = field(default_factory=dict)
    # DescribeConfigs refused (authorization): the settings are unknown, not default.
    config_error: str | None = None


@dataclass(frozen=True)
class ClusterState:
    brokers: int
    cluster_id: str | None
    controller: int | None
    broker_config: Mapping[str, str]
    topics: Mapping[str, TopicState]
    # Topics the broker refused to describe (name -> error name); missing topics are simply absent.
    refused: Mapping[str, str] = field(default_factory=dict)
    broker_config_error: str | None = None

    def broker_setting(self, name: str) -> str | None:
        return self.broker_config.get(name)

    def default_replication(self) -> int:
        """The replication of a topic created without one: the broker's default.replication.factor,
        else (not readable) three, or as many brokers as there are when fewer."""
        value = self.broker_setting("default.replication.factor")
        if value is not None and value.strip().isdigit() and int(value) >= 1:
            return int(value)
        return max(1, min(3, self.brokers))

    def setting(self, topic: str, name: str) -> str:
        """A topic's effective setting: its own, else the broker's default, else Kafka's."""
        state = self.topics.get(topic)
        if state is not None and name in state.config:
            return state.config[name]
        broker, default = TOPIC_DEFAULTS[name]
        if name == "retention.ms" and broker not in self.broker_config:
            hours = self.broker_setting("log.retention.hours")
            if hours is not None and hours.strip().lstrip("-").isdigit():
                return str(int(hours) * 3600 * 1000)
        return self.broker_config.get(broker, default)


async def read_cluster(settings: Settings, topics: Iterable[str]) -> ClusterState:
    """Brokers, one broker's defaults, and the given topics that exist, with their settings."""
    wanted = list(dict.fromkeys(topics))
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        return await read_with(admin, wanted)
    finally:
        await admin.close()


async def read_with(admin: AIOKafkaAdminClient, wanted: list[str]) -> ClusterState:
    cluster = await admin.describe_cluster()
    brokers = list(cluster.get("brokers") or [])
    controller = cluster.get("controller_id")
    broker_id = controller if controller is not None and controller >= 0 else None
    if broker_id is None and brokers:
        broker_id = brokers[0]["node_id"]
    broker_config: dict[str, str] = {}
    broker_error: str | None = None
    if broker_id is not None:
        try:
            answer = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(broker_id))])
            broker_config, broker_error = settings_of(answer).get(str(broker_id), ({}, None))
        except Exception as exc:  # a broker that cannot tell its defaults: Kafka's are assumed
            broker_error = type(exc).__name__
    # Metadata of every topic, filtered here: naming topics in a Metadata request asks the broker to
    # auto-create the missing ones, which would hide exactly what we look for.
    described = await admin.describe_topics()
    present: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    for entry in described:
        name = entry.get("topic")
        if name not in wanted:
            continue
        code = entry.get("error_code", 0)
        if code == 0:
            present[name] = entry
        elif code != UNKNOWN_TOPIC_OR_PARTITION:
            refused[name] = error_name(code)
    configs: dict[str, tuple[dict[str, str], str | None]] = {}
    if present:
        answer = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in present]
        )
        configs = settings_of(answer)
    states = {
        name: TopicState(
            name,
            len(entry["partitions"]),
            min((len(p.get("replicas") or []) for p in entry["partitions"]), default=0),
            configs.get(name, ({}, None))[0],
            configs.get(name, ({}, None))[1],
        )
        for name, entry in present.items()
    }
    return ClusterState(
        brokers=len(brokers),
        cluster_id=cluster.get("cluster_id"),
        controller=controller,
        broker_config=broker_config,
        topics=states,
        refused=refused,
        broker_config_error=broker_error,
    )


def settings_of(responses: Iterable[Any]) -> dict[str, tuple[dict[str, str], str | None]]:
    """Resource name -> (its settings with a value, the error that refused them)."""
    found: dict[str, tuple[dict[str, str], str | None]] = {}
    for response in responses:
        for resource in response.resources:
            code, _message, _kind, name, entries = resource[:5]
            if code:
                found[name] = ({}, error_name(code))
                continue
            found[name] = ({entry[0]: entry[1] for entry in entries if entry[1] is not None}, None)
    return found
