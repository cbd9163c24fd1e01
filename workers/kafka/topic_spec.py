"""A topic as the worker wants it, and the one rule that binds several topics together."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

# What a topic is for: which settings it must have on the broker (workers/kafka/topic_checks.py).
Role = Literal["upstream", "output", "internal", "ticks", "dlq", "changelog", "leader", "rules"]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    # None: the broker's default replication factor, resolved when the topic is created.
    replication: int | None
    config: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Upstream topics may exist with any partition count: the intake reads them whatever it is.
    any_partition_count: bool = False
    role: Role = "output"

    @property
    def written_by_worker(self) -> bool:
        """Whether the worker produces to it (acks=all: its replication must reach min.insync.replicas)."""
        return self.role not in ("upstream", "leader")


def check_copartitioning(counts: Mapping[str, int]) -> str | None:
    """An operator-facing error when the given co-partitioned topics differ in partition count."""
    by_count: defaultdict[int, list[str]] = defaultdict(list)
    for name, count in counts.items():
        by_count[count].append(name)
    if len(by_count) <= 1:
        return None
    # The most common count is likely the intended one; list the odd ones out first.
    groups = sorted(by_count.items(), key=lambda item: (len(item[1]), item[0]))
    lines = [f"  {count} partitions: {', '.join(sorted(topics))}" for count, topics in groups]
    return (
        "The worker's re-keyed inbound topic, its ticks and its order tables' changelogs must all "
        "have the same partition count (they are co-partitioned: one order's messages and state must "
        "be in the same partition number), but they differ:\n"
        + "\n".join(lines)
        + "\nRecreate the odd topics with the same count as the "
        "others (and OMS_PARTITIONS to match); adding partitions remaps keys."
    )
