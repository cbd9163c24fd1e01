"""Live workers side by side on one local broker, and their outputs in a form that compares with
replay's."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from workers.config.settings import Settings
from workers.kafka.topics import catalogue, create_topics
from workers.local.broker import free_port
from workers.local.dev import local_env, settings_from_env


def isolated(
    bootstrap: str, workdir: Path, rules: Path | None, letter: str, **extra: str
) -> tuple[dict[str, str], Settings]:
    """Settings for a worker whose topics, DLQ and consumer group carry their own prefix, so several
    can share one broker (which cannot be wiped); the topics are created."""
    tag = f"{letter}{uuid.uuid4().hex[:8]}"
    env = local_env(bootstrap, workdir, rules, free_port())
    env.update(
        {
            "OMS_TOPIC_PREFIX": f"{tag}.",
            "OMS_CONSUMER_GROUP": f"oms-{tag}",
            "OMS_DLQ_TOPIC": f"{tag}.dlq",
            **extra,
        }
    )
    settings = settings_from_env(env)
    asyncio.run(create_topics(settings, catalogue(settings)))
    return env, settings


def normalised(records: list[dict[str, Any]], dlq: str) -> dict[tuple[str, str | None], list[Any]]:
    """Per topic and key, in order: message id and value. Dead letters have no order across partitions
    and replay cannot know the partition, offset or key a producer gave them: compared as a sorted set."""
    grouped: dict[tuple[str, str | None], list[Any]] = defaultdict(list)
    for record in records:
        headers = dict(record["headers"])
        if record["topic"] == dlq:
            for varying in ("dlq.original.partition", "dlq.original.offset", "dlq.original.topic"):
                headers.pop(varying)
            grouped[("DLQ", None)].append(json.dumps([headers, record["value"]], sort_keys=True))
        else:
            grouped[(record["topic"].split(".", 1)[1], record["key"])].append(
                (headers["message_id"], record["value"])
            )
    grouped[("DLQ", None)].sort()
    return dict(grouped)
