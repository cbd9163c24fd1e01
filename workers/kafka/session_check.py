"""The consumer group session against the broker's bounds.

Apache Kafka refuses a JoinGroup whose session timeout lies outside the broker's
`group.min.session.timeout.ms` .. `group.max.session.timeout.ms` (6 s and 30 min by default) with
INVALID_SESSION_TIMEOUT, and aiokafka treats that as fatal: the worker would start, never join and
never be ready. A broker that tells its bounds (Apache Kafka answers DescribeConfigs with every broker
setting) therefore refuses the worker at start, with the setting to change. One that tells nothing (the
local Tansu broker, which accepts any session) leaves Kafka's defaults to compare with: a warning in
`doctor`, nothing at start.
"""

from __future__ import annotations

from workers.kafka.cluster import ClusterState
from workers.kafka.topic_checks import Finding

MIN_SETTING, MAX_SETTING = "group.min.session.timeout.ms", "group.max.session.timeout.ms"
KAFKA_MIN_MS, KAFKA_MAX_MS = 6_000, 1_800_000
CHECK = "session.timeout"


class SessionRefused(RuntimeError):
    """The broker would refuse the worker's consumer group session."""


def _told(cluster: ClusterState, name: str) -> int | None:
    value = cluster.broker_setting(name)
    return int(value) if value is not None and value.strip().isdigit() else None


def session_finding(session_seconds: float, cluster: ClusterState) -> Finding:
    session_ms = round(session_seconds * 1000)
    told_min, told_max = _told(cluster, MIN_SETTING), _told(cluster, MAX_SETTING)
    low = KAFKA_MIN_MS if told_min is None else told_min
    high = KAFKA_MAX_MS if told_max is None else told_max
    setting = f"OMS_SESSION_TIMEOUT_SECONDS={session_seconds:g} ({session_ms} ms)"
    bounds = f"{MIN_SETTING} {low} .. {MAX_SETTING} {high}"
    if low <= session_ms <= high:
        told = "the broker's" if told_min is not None and told_max is not None else "Apache Kafka's default"
        return Finding("pass", CHECK, None, f"{setting} is within {told} {bounds}")
    below = session_ms < low
    if (below and told_min is not None) or (not below and told_max is not None):
        return Finding(
            "fail",
            CHECK,
            None,
            f"{setting} is outside the broker's {bounds}: it refuses the worker's JoinGroup "
            "(INVALID_SESSION_TIMEOUT); set OMS_SESSION_TIMEOUT_SECONDS within them",
        )
    return Finding(
        "warn",
        CHECK,
        None,
        f"{setting} is outside Apache Kafka's default {bounds}; the broker did not tell its own, and one "
        "with the defaults refuses the worker's JoinGroup (INVALID_SESSION_TIMEOUT)",
    )
