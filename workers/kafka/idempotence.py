"""Whether the worker's producer is idempotent: the broker decides, the setting says how strictly.

An idempotent producer (KIP-98) gets a producer id from the broker and numbers its batches, so a batch
retried after a lost acknowledgement is written once, not twice, and in order. Apache Kafka grants it
(since 2.8 with Write on the topics alone, KIP-679; before, with IdempotentWrite on the cluster). The
local Tansu broker refuses the InitProducerId handshake aiokafka sends (UnknownError). Effects are
exactly-once per message id either way (the tables remember what each message did); idempotence keeps
duplicate records off the output topics when the broker answered too late.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from workers.config.settings import Settings


class IdempotenceRefused(RuntimeError):
    """OMS_ENABLE_IDEMPOTENCE=true and the broker did not grant a producer id."""


@dataclass(frozen=True)
class Idempotence:
    enabled: bool
    reason: str


async def probe(settings: Settings) -> str | None:
    """None when the broker grants an idempotent producer id, else the broker's refusal. Connection
    failures are raised: they say nothing about idempotence."""
    producer = AIOKafkaProducer(**settings.kafka_client_kwargs(), acks="all", enable_idempotence=True)
    try:
        await producer.start()
    except KafkaConnectionError:
        raise
    except KafkaError as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    finally:
        await producer.stop()
    return None


async def decide(settings: Settings) -> Idempotence:
    if settings.enable_idempotence == "false":
        return Idempotence(False, "OMS_ENABLE_IDEMPOTENCE=false")
    refused = await probe(settings)
    if refused is None:
        return Idempotence(True, "the broker granted a producer id")
    if settings.enable_idempotence == "true":
        raise IdempotenceRefused(
            f"OMS_ENABLE_IDEMPOTENCE=true but the broker refused an idempotent producer ({refused}); "
            "on Apache Kafka before 2.8 the worker's principal needs IdempotentWrite on the cluster"
        )
    return Idempotence(False, f"the broker refused an idempotent producer ({refused})")
