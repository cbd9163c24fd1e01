"""Worker configuration, read from ``OMS_*`` environment variables (README "Settings").

Build one :class:`Settings` at the entrypoint and pass it down; there is deliberately no
module-level instance, so tests and tools can build their own without touching the environment.
Every field carries a description: `oms-postsales worker --help` lists them from here.
"""

from __future__ import annotations

import importlib
import os
import re
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain import names
from domain.limits import MAX_RECORD_BYTES, RECORD_OVERHEAD_BYTES

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

MASK = "**********"
KNOWN_MESSAGES = frozenset(names.INBOUND + names.OUTBOUND)

# Kafka's own rule for topic names; checking it here turns a typo into a start-up error that names
# the setting, instead of an InvalidTopicException from the broker later.
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9._-]*$")
_MAX_TOPIC_LEN = 249
APP_DIR_NAME = "oms-postsales"
DEFAULT_SESSION_TIMEOUT_SECONDS = 10.0
STATIC_SESSION_TIMEOUT_SECONDS = 45.0
# A bearer token shorter than this (or empty: `OMS_API_TOKEN=""`) is refused at start, whatever the
# host: 24 characters of `openssl rand -hex 12` are 96 bits.
MIN_API_TOKEN_CHARS = 24
_BOOLEAN_WORDS = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}


class SettingsError(RuntimeError):
    """A setting that validates but cannot be used on this machine (folder, store, certificate)."""


def default_data_dir() -> Path:
    """Where tables live unless OMS_DATA_DIR says otherwise: the user's state folder (XDG Base
    Directory: $XDG_STATE_HOME, else ~/.local/state), so a worker started from any folder finds the
    same tables and never writes into the current directory."""
    state_home = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(state_home) if os.path.isabs(state_home) else Path.home() / ".local" / "state"
    return base / APP_DIR_NAME


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

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Kafka brokers, comma separated")
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* protocols)"
    )
    sasl_username: str | None = Field(default=None, description="SASL user")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (masked in output)")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle (PEM); default: the system's")
    ssl_certfile: Path | None = Field(default=None, description="client certificate (PEM), with ssl_keyfile")
    ssl_keyfile: Path | None = Field(default=None, description="client key (PEM)")
    ssl_password: SecretStr | None = Field(default=None, description="password of the client key")

    topic_prefix: str = Field(default="", description="prefix of every topic name (unless mapped)")
    # Message name -> topic name; a mapped name is used verbatim (the prefix is not added).
    topic_map: dict[str, str] = Field(
        default_factory=dict, description="OMS_TOPIC_MAP__<message name>=<topic>: topic of one message"
    )
    partitions: int = Field(default=4, ge=1, description="partitions of inbound and outbound topics")
    # None: the broker's own default (default.replication.factor), read from the cluster when topics
    # are created; aiokafka speaks CreateTopics v3 at most, which cannot ask for "the default" (-1).
    replication_factor: int | None = Field(
        default=None, ge=1, description="replicas of the topics created (default: the broker's default)"
    )
    # False: the worker creates no topic (faust's own included) and verifies at start that every topic
    # of `oms-postsales topics plan` exists with its partitions and settings (README, "Running on Kafka").
    create_topics: bool = Field(
        default=True, description="create missing topics at start; false: verify pre-created topics only"
    )
    # The internal topics' records are stamped when the worker writes them (the message time travels in
    # a header), so this counts from the moment a record was forwarded, whatever its message time.
    internal_retention_hours: int = Field(
        default=168,
        ge=1,
        le=87_600,
        description="retention of the internal inbound and stock-movements topics the worker creates",
    )
    # Defaults to `partitions` (filled in by _fill_derived_defaults).
    internal_partitions: int = Field(
        default=4, ge=1, description="partitions of the stock movements topic (default: partitions)"
    )
    consumer_group: str = Field(
        default="oms-postsales", min_length=1, description="consumer group; also names the changelogs"
    )
    # Defaults to topic_prefix + names.DEFAULT_DLQ_TOPIC, so a prefix namespaces the DLQ as well.
    dlq_topic: str = Field(
        default=names.DEFAULT_DLQ_TOPIC, description="dead letter topic (default: prefix + oms-postsales.dlq)"
    )
    rules_file: Path | None = Field(default=None, description="rules per sales channel (TOML)")

    store: str = Field(
        default="rocksdb://",
        pattern=r"^(rocksdb|memory)://",
        description="table store: rocksdb:// (persistent) or memory:// (rebuilt from Kafka at start)",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="tables and faust state; created at start ($XDG_STATE_HOME/oms-postsales, "
        "else ~/.local/state/oms-postsales)",
    )
    # faust sizes each RocksDB database for a big host (64 MiB write buffers, three of them, and a 2 GiB
    # block cache), and a worker opens one database per table and partition (28 with 4 partitions):
    # its memory followed the bytes written until the buffers filled (BENCHMARKS.md, "Growth").
    rocksdb_write_buffer_kib: int = Field(
        default=256, ge=64, le=1_048_576, description="RocksDB write buffer per table partition (two at most)"
    )
    rocksdb_block_cache_kib: int = Field(
        default=4096, ge=0, le=16_777_216, description="RocksDB block cache per table partition"
    )
    web_host: str = Field(default="127.0.0.1", description="address of /health /ready /metrics")
    web_port: int = Field(default=6066, ge=1, le=65535, description="port of /health /ready /metrics")
    # Bearer token of the order and preview API; required when the web server listens beyond loopback.
    # When set, it must be long enough not to be guessed (MIN_API_TOKEN_CHARS), on loopback too.
    api_token: SecretStr | None = Field(
        default=None,
        description=f"bearer token of /v1/orders and /v1/preview (required off loopback; at least "
        f"{MIN_API_TOKEN_CHARS} characters, no spaces)",
    )
    # TLS of the web server: with a certificate the API (and /health, /ready, /metrics) is HTTPS, and a
    # worker forwards a request for a key another worker owns over HTTPS, checking that worker's
    # certificate against web_tls_cafile (else the system's CAs).
    web_tls_certfile: Path | None = Field(
        default=None, description="web server certificate (PEM, chain first); with web_tls_keyfile: HTTPS"
    )
    web_tls_keyfile: Path | None = Field(default=None, description="web server private key (PEM)")
    web_tls_cafile: Path | None = Field(
        default=None,
        description="CAs that sign the workers' web certificates (forwarding, orders show); default: system",
    )
    # A connection must deliver each request's headers within this time (after it opens, or after the
    # previous answer): slow or idle connections are closed, before any authentication.
    web_request_timeout_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="web: headers (and a preview's body) must arrive within this"
    )
    web_max_connections: int = Field(
        default=256, ge=1, le=100_000, description="web: open connections at most; more are closed at once"
    )
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL")

    # Kafka client tuning. Against the local Tansu broker the dev command sets the producer batch to
    # one record: Tansu reports wrong end offsets for multi-record batches, which breaks faust's table
    # recovery (docs/local-broker.md).
    producer_max_batch_bytes: int = Field(
        default=16384, ge=1, description="producer batch size; 1 on the local broker"
    )
    # Static membership (KIP-345): a worker that names itself keeps its partitions across a restart
    # that ends within its session, and a stop does not leave the group (no rebalance for the others).
    # Unique per worker process and stable across its restarts: in a StatefulSet, the pod name.
    group_instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=_MAX_TOPIC_LEN,
        description="static group membership: this worker's stable, unique name (a StatefulSet pod's "
        "name); unset: dynamic membership",
    )
    # Unset: 10 s, or 45 s with a group instance id (Kafka's own consumer default since 3.0, KIP-735):
    # a static member's restart must end within its session, or the group rebalances after all.
    session_timeout_seconds: float = Field(
        default=DEFAULT_SESSION_TIMEOUT_SECONDS,
        gt=0,
        description="consumer group session (default 10; 45 with OMS_GROUP_INSTANCE_ID)",
    )
    commit_interval_seconds: float = Field(default=1.0, gt=0, description="offset commit interval")
    # How often held messages are checked against their deadline (wall clock in the live worker).
    settle_interval_seconds: float = Field(
        default=5.0, gt=0, description="how often held messages are checked against their deadline"
    )
    # Records are handled in batches: up to this many, or what arrived within this time. Outputs of a
    # batch are sent together and its tables written once per key before its offsets are committed.
    batch_max_records: int = Field(
        default=500, ge=1, le=100_000, description="most records one agent handles as one batch"
    )
    # 5 ms: p99 at 200 msgs/s 91-96 ms against 99-113 ms with 10, the same throughput (BENCHMARKS.md).
    batch_within_ms: int = Field(
        default=5, ge=1, le=10_000, description="a batch takes what arrived within this time"
    )
    fetch_max_wait_ms: int = Field(
        default=20, ge=1, le=10_000, description="how long a fetch waits on the broker (faust's is 1500)"
    )
    # The intake takes an upstream record once no other upstream partition can still hold an earlier
    # one already on the broker (docs/notes/ordering.md). A partition behind for longer than this stops
    # holding the others back (its leader is away) and what is taken meanwhile is counted.
    intake_max_lag_wait_ms: int = Field(
        default=5_000,
        ge=0,
        le=600_000,
        description="longest the intake holds records back for an upstream partition that is behind",
    )
    # A wait for records not on the broker yet: a fetched upstream record is held until this long after
    # its own timestamp (at most this long after it was fetched), so that a record written in the same
    # moment on another topic is merged with it. Old records (a backlog) wait for nothing. 20 ms: with
    # 5 ms, 1 of 5 real-producer comparisons with both cores busy took a tie of one millisecond apart;
    # with 20 ms, 8 of 8 went like replay, for ~25 ms of latency (BENCHMARKS.md).
    intake_grace_ms: int = Field(
        default=20,
        ge=0,
        le=10_000,
        description="how long after its own time a fresh upstream record waits for records written with it",
    )
    producer_linger_ms: int = Field(
        default=2, ge=0, le=1_000, description="records sent within this time share a request"
    )
    # One limit for what the worker reads and writes: an upstream record's value, an output's value and
    # a stored value (an order) on its changelog. The producer's request limit is this plus room for the
    # key, headers and batch framing (RECORD_OVERHEAD_BYTES), which stays under Kafka's default
    # max.message.bytes (1,048,588) at the default.
    max_record_bytes: int = Field(
        default=MAX_RECORD_BYTES,
        ge=1024,
        le=100_000_000,
        description="largest record value read or written; larger inbound records are dead-lettered, "
        "an order that would grow past it is refused ORDER_TOO_LARGE",
    )
    # Readiness: the broker is asked for metadata this often, and the worker reports not ready when
    # it does not answer within the timeout or when a delivery has been pending longer than allowed
    # (a stalled broker often accepts the connection and never answers, so nothing raises).
    ready_probe_interval_seconds: float = Field(
        default=2.0, gt=0, description="readiness: broker metadata probe interval"
    )
    ready_probe_timeout_seconds: float = Field(
        default=3.0, gt=0, description="readiness: probe answer timeout"
    )
    ready_max_delivery_seconds: float = Field(
        default=5.0, gt=0, description="readiness: longest pending delivery"
    )
    # faust's own shutdown waits for the broker (flush, commit, leave the group) with no overall
    # bound: with the broker gone it hung for minutes. Past this the process exits anyway; what was
    # not committed is re-delivered to the next worker, and effects stay exactly-once.
    shutdown_timeout_seconds: float = Field(
        default=30.0, gt=0, description="after SIGTERM, exit (status 1) if still stopping after this"
    )
    # aiokafka logs every failed reconnect (hundreds a minute while the broker is down).
    log_repeat_interval_seconds: float = Field(
        default=60.0, gt=0, description="the same Kafka client error is logged once per interval"
    )

    # auto: the worker asks the broker for a producer id at start and produces idempotently when it
    # gets one (Apache Kafka, MSK, Confluent Cloud); the local Tansu broker refuses the handshake
    # aiokafka sends (docs/local-broker.md), and there it runs without. true: refuse to start without.
    enable_idempotence: Literal["auto", "true", "false"] = Field(
        default="auto", description="idempotent producer: auto (when the broker grants it), true or false"
    )
    producer_name: str = Field(default="oms-postsales", description="the producer header of emitted records")
    # OpenTelemetry (the [otel] extra): off imports nothing of it. The exporter's own settings are the
    # standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, ...).
    tracing: Literal["off", "otlp", "console"] = Field(
        default="off",
        description="traces: off, otlp (OTLP/HTTP, configured by OTEL_* variables) or console (JSON lines)",
    )
    tracing_file: Path | None = Field(
        default=None, description="where OMS_TRACING=console writes its spans (default: standard error)"
    )

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
            if data.get("group_instance_id") == "":
                data["group_instance_id"] = None
            if data.get("session_timeout_seconds") is None and data.get("group_instance_id"):
                data["session_timeout_seconds"] = STATIC_SESSION_TIMEOUT_SECONDS
        return data

    @field_validator("enable_idempotence", mode="before")
    @classmethod
    def _idempotence_word(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            word = value.strip().lower()
            return {
                "1": "true",
                "yes": "true",
                "on": "true",
                "0": "false",
                "no": "false",
                "off": "false",
            }.get(word, word)
        return value

    @field_validator("tracing", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("security_protocol", "sasl_mechanism", "log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("api_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never quotes the token (hide_input_in_errors keeps it out of the error too).
        if value is None:
            return value
        token = value.get_secret_value()
        if len(token) < MIN_API_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_API_TOKEN_CHARS} characters; e.g. openssl rand -hex 16")
        if any(character.isspace() or not character.isprintable() for character in token):
            raise ValueError("must not contain spaces or control characters")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _TOPIC_CHARS.match(value):
            raise ValueError("may only contain letters, digits, '.', '_' and '-'")
        return value

    @field_validator("group_instance_id")
    @classmethod
    def _check_instance_id(cls, value: str | None) -> str | None:
        if value is not None and not _TOPIC_CHARS.match(value):
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
        if (self.web_tls_certfile is None) != (self.web_tls_keyfile is None):
            raise ValueError("web_tls_certfile and web_tls_keyfile must be given together")
        uses_ssl = self.security_protocol in ("SSL", "SASL_SSL")
        if not uses_ssl and any(
            v is not None for v in (self.ssl_cafile, self.ssl_certfile, self.ssl_password)
        ):
            raise ValueError(f"SSL files are given but security_protocol={self.security_protocol}")
        if self.topic_prefix:
            _check_topic_name(self.topic_prefix + max(KNOWN_MESSAGES, key=len))
        return self

    @property
    def producer_max_request_bytes(self) -> int:
        """The producer's request limit: the largest value plus room for key, headers and framing."""
        return self.max_record_bytes + RECORD_OVERHEAD_BYTES

    def topic_for(self, message_name: str) -> str:
        """The topic carrying `message_name`: the mapped name if any, else prefix + name."""
        mapped = self.topic_map.get(message_name)
        return mapped if mapped is not None else self.topic_prefix + message_name

    @property
    def web_tls(self) -> bool:
        return self.web_tls_certfile is not None

    @property
    def web_scheme(self) -> str:
        return "https" if self.web_tls else "http"

    def web_server_ssl(self) -> ssl.SSLContext | None:
        """The web server's TLS context (None without a certificate). Raises OSError / ssl.SSLError
        when the files do not load."""
        if self.web_tls_certfile is None or self.web_tls_keyfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.web_tls_certfile, self.web_tls_keyfile)
        return context

    def web_client_ssl(self) -> ssl.SSLContext:
        """How a client of the web API (another worker forwarding, `orders show`) checks the server:
        against web_tls_cafile, else the system's CAs; host names checked."""
        cafile = str(self.web_tls_cafile) if self.web_tls_cafile is not None else None
        context = ssl.create_default_context(cafile=cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

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


def check_runtime(settings: Settings) -> None:
    """What must hold before the worker touches the broker: a writable data folder, an importable
    table store, a free web port, loadable TLS files. Raises SettingsError with one line naming the
    setting."""
    data_dir = settings.data_dir.expanduser()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        # os.access() is not enough (read-only mounts, ACLs): write a file.
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        raise SettingsError(
            f"OMS_DATA_DIR {str(data_dir)!r} is not a writable folder ({exc.strerror or exc}); "
            "set OMS_DATA_DIR to one"
        ) from None
    if settings.store.startswith("rocksdb://"):
        try:
            importlib.import_module("rocksdict")
        except ImportError as exc:
            raise SettingsError(
                f"OMS_STORE=rocksdb:// needs the rocksdict package ({exc}); reinstall oms-postsales, "
                "or set OMS_STORE=memory:// (tables rebuilt from their changelogs at every start)"
            ) from None
    if settings.tracing != "off":
        wanted = ["opentelemetry.sdk.trace"]
        if settings.tracing == "otlp":
            wanted.append("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        for module in wanted:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise SettingsError(
                    f"OMS_TRACING={settings.tracing} needs OpenTelemetry ({exc}): "
                    "pip install 'oms-postsales[otel]', or set OMS_TRACING=off"
                ) from None
    try:
        # faust binds its web server only after the topics exist; a taken port must fail before.
        with socket.socket(socket.AF_INET6 if ":" in settings.web_host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((settings.web_host, settings.web_port))
    except OSError as exc:
        raise SettingsError(
            f"OMS_WEB_HOST / OMS_WEB_PORT: cannot listen on {settings.web_host}:{settings.web_port} "
            f"({exc.strerror or exc})"
        ) from None
    if settings.web_tls:
        try:
            settings.web_server_ssl()
            settings.web_client_ssl()
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise SettingsError(
                f"OMS_WEB_TLS_CERTFILE / OMS_WEB_TLS_KEYFILE / OMS_WEB_TLS_CAFILE: cannot load ({reason})"
            ) from None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        try:
            settings.kafka_client_kwargs()
        except (OSError, ssl.SSLError) as exc:
            # The message names the files only: never the key password.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise SettingsError(
                f"OMS_SSL_CAFILE / OMS_SSL_CERTFILE / OMS_SSL_KEYFILE: cannot load ({reason})"
            ) from None


def settings_help() -> str:
    """Every setting with its environment variable and default, for `worker --help`."""
    lines = []
    for name, info in Settings.model_fields.items():
        if info.default_factory is not None:
            default = "{}" if name == "topic_map" else str(default_data_dir())
        else:
            default = "" if info.default is None else str(info.default)
        lines.append(f"OMS_{name.upper()}={default}  {info.description}")
    return "\n".join(lines)
