"""Worker configuration, read from ``OMS_*`` environment variables (DESIGN §8).

Build one :class:`Settings` at the entrypoint and pass it down; there is deliberately no
module-level instance, so tests and tools can build their own without touching the environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain import names

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

MASK = "**********"
KNOWN_MESSAGES = frozenset(names.INBOUND + names.OUTBOUND)

# Kafka's own rule for topic names; checking it here turns a typo into a start-up error that names
# the setting, instead of an InvalidTopicException from the broker later.
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9._-]*$")
_MAX_TOPIC_LEN = 249


class Settings(BaseSettings):
    """Effective configuration of one worker process. Immutable once built."""

    model_config = SettingsConfigDict(
        env_prefix="OMS_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        # Without this str(ValidationError) echoes the offending input, which may be a password.
        # ValidationError.errors() still holds the input: log errors(include_input=False) only.
        hide_input_in_errors=True,
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None

    topic_prefix: str = ""
    # Message name -> topic name; a mapped name is used verbatim (the prefix is not added).
    topic_map: dict[str, str] = Field(default_factory=dict)
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    # Defaults to `partitions` (filled in by _fill_derived_defaults).
    internal_partitions: int = Field(default=4, ge=1)
    consumer_group: str = Field(default="oms-postsales", min_length=1)
    # Defaults to topic_prefix + names.DEFAULT_DLQ_TOPIC, so a prefix namespaces the DLQ as well.
    dlq_topic: str = names.DEFAULT_DLQ_TOPIC
    rules_file: Path | None = None

    store: str = Field(default="rocksdb://", pattern=r"^(rocksdb|memory)://")
    data_dir: Path = Path("var/oms-postsales")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    # Bearer token of the order and preview API; required when the web server listens beyond loopback.
    api_token: SecretStr | None = None
    log_level: LogLevel = "INFO"

    # Kafka client tuning. Against the local Tansu broker the dev command sets the producer batch to
    # one record: Tansu reports wrong end offsets for multi-record batches, which breaks faust's table
    # recovery (BROKER.md).
    producer_max_batch_bytes: int = Field(default=16384, ge=1)
    session_timeout_seconds: float = Field(default=10.0, gt=0)
    commit_interval_seconds: float = Field(default=1.0, gt=0)
    # How often held messages are checked against their deadline (wall clock in the live worker).
    settle_interval_seconds: float = Field(default=30.0, gt=0)
    max_record_bytes: int = Field(default=1_048_576, ge=1024)
    # Readiness: the broker is asked for metadata this often, and the worker reports not ready when
    # it does not answer within the timeout or when a delivery has been pending longer than allowed
    # (a stalled broker often accepts the connection and never answers, so nothing raises).
    ready_probe_interval_seconds: float = Field(default=2.0, gt=0)
    ready_probe_timeout_seconds: float = Field(default=3.0, gt=0)
    ready_max_delivery_seconds: float = Field(default=5.0, gt=0)

    # Off by default because the local Tansu broker rejects the InitProducerId handshake that
    # aiokafka sends (UnknownError -1, see BROKER.md). Turn it on for Apache Kafka.
    enable_idempotence: bool = False
    producer_name: str = "oms-postsales"

    @model_validator(mode="before")
    @classmethod
    def _fill_derived_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            partitions = data.get("partitions")
            # Copy only a usable value, so a bad OMS_PARTITIONS is reported once, under its own name.
            if data.get("internal_partitions") is None and str(partitions).strip().isdigit():
                data["internal_partitions"] = partitions
            if data.get("dlq_topic") is None:
                data["dlq_topic"] = str(data.get("topic_prefix") or "") + names.DEFAULT_DLQ_TOPIC
        return data

    @field_validator("security_protocol", "sasl_mechanism", "log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _TOPIC_CHARS.match(value):
            raise ValueError("may only contain letters, digits, '.', '_' and '-'")
        return value

    @field_validator("dlq_topic")
    @classmethod
    def _check_dlq(cls, value: str) -> str:
        _check_topic_name(value)
        return value

    @field_validator("topic_map")
    @classmethod
    def _check_topic_map(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - KNOWN_MESSAGES)
        if unknown:
            raise ValueError(f"unknown message name(s): {', '.join(unknown)}")
        for topic in value.values():
            _check_topic_name(topic)
        return value

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        # Messages name settings only, never values: some of those values are secrets.
        sasl = self.security_protocol.startswith("SASL_")
        if sasl:
            missing = [
                f"OMS_{name.upper()}"
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"security_protocol={self.security_protocol} needs {', '.join(missing)}")
        elif self.sasl_mechanism is not None or self.sasl_username is not None:
            # Probably a forgotten OMS_SECURITY_PROTOCOL: fail rather than connect unauthenticated.
            raise ValueError(
                f"SASL settings are given but security_protocol={self.security_protocol}; "
                "use SASL_PLAINTEXT or SASL_SSL"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile must be given together")
        uses_ssl = self.security_protocol in ("SSL", "SASL_SSL")
        if not uses_ssl and any(
            v is not None for v in (self.ssl_cafile, self.ssl_certfile, self.ssl_password)
        ):
            raise ValueError(f"SSL files are given but security_protocol={self.security_protocol}")
        if self.topic_prefix:
            _check_topic_name(self.topic_prefix + max(KNOWN_MESSAGES, key=len))
        return self

    def topic_for(self, message_name: str) -> str:
        """The topic carrying `message_name`: the mapped name if any, else prefix + name."""
        mapped = self.topic_map.get(message_name)
        return mapped if mapped is not None else self.topic_prefix + message_name

    def masked(self) -> dict[str, Any]:
        """The effective settings as a JSON-able dict, safe to log: secrets read as MASK."""
        # pydantic serialises a set SecretStr as MASK in JSON mode (tests pin that down).
        return self.model_dump(mode="json")

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments for aiokafka's producer, consumer and admin client.

        The result holds the SASL password in clear because aiokafka needs it so: never log it
        (log :meth:`masked` instead).
        """
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_"):
            assert self.sasl_password is not None  # guaranteed by _check_security
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile,
                certfile=self.ssl_certfile,
                keyfile=self.ssl_keyfile,
                password=self.ssl_password.get_secret_value() if self.ssl_password else None,
            )
        return kwargs


def _check_topic_name(topic: str) -> None:
    if not topic or topic in (".", ".."):
        raise ValueError(f"{topic!r} is not a valid topic name")
    if len(topic) > _MAX_TOPIC_LEN:
        raise ValueError(f"topic name {topic!r} is longer than {_MAX_TOPIC_LEN} characters")
    if not _TOPIC_CHARS.match(topic):
        raise ValueError(f"topic name {topic!r} may only contain letters, digits, '.', '_' and '-'")
