"""Settings: environment parsing, topic names, secrets kept out of output, Kafka client arguments."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain import names
from workers.config.settings import MASK, Settings, SettingsError, check_runtime, settings_help

PASSWORD = "hunter2-Sup3rSecret"
KEY_PASSWORD = "k3y-Pa55phrase"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The developer's or CI's own OMS_* variables must not leak into these expectations.
    for key in list(os.environ):
        if key.upper().startswith("OMS_"):
            monkeypatch.delenv(key)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def sasl_ssl(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "oms",
        "sasl_password": PASSWORD,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_defaults() -> None:
    settings = Settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.security_protocol == "PLAINTEXT"
    assert (settings.partitions, settings.internal_partitions, settings.replication_factor) == (4, 4, None)
    assert settings.consumer_group == "oms-postsales"
    assert settings.dlq_topic == names.DEFAULT_DLQ_TOPIC
    assert settings.store == "rocksdb://"
    assert settings.data_dir == Path.home() / ".local" / "state" / "oms-postsales"
    assert settings.data_dir.is_absolute()  # never relative to wherever the worker was started
    assert (settings.web_host, settings.web_port, settings.log_level) == ("127.0.0.1", 6066, "INFO")
    assert settings.enable_idempotence == "auto"
    assert settings.create_topics is True and settings.internal_retention_hours == 168
    # One size limit: the producer's request size leaves room for key and headers, and stays under
    # Apache Kafka's default max.message.bytes (1,048,588).
    assert settings.max_record_bytes == 1_000_000
    assert settings.max_record_bytes < settings.producer_max_request_bytes <= 1_048_588
    assert settings.producer_name == "oms-postsales"


def test_data_dir_follows_xdg_state_home_unless_oms_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert Settings().data_dir == tmp_path / "state" / "oms-postsales"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # invalid per the XDG spec: ignored
    assert Settings().data_dir == Path.home() / ".local" / "state" / "oms-postsales"
    monkeypatch.setenv("OMS_DATA_DIR", str(tmp_path / "tables"))
    assert Settings().data_dir == tmp_path / "tables"


def test_check_runtime_creates_the_data_dir(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    check_runtime(Settings(data_dir=target))
    assert target.is_dir()
    assert list(target.iterdir()) == []  # the write probe leaves nothing behind


def test_check_runtime_refuses_a_data_dir_that_cannot_be_a_folder(tmp_path: Path) -> None:
    # A file in the way fails for every user, root included (permissions do not stop root).
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SettingsError) as info:
        check_runtime(Settings(data_dir=blocker / "data"))
    message = str(info.value)
    assert message.startswith("OMS_DATA_DIR ") and "not a writable folder" in message
    assert "\n" not in message


def test_check_runtime_refuses_rocksdb_without_rocksdict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "rocksdict", None)  # makes the import fail
    with pytest.raises(SettingsError, match=r"OMS_STORE=rocksdb:// needs the rocksdict package"):
        check_runtime(Settings(data_dir=tmp_path))
    check_runtime(Settings(data_dir=tmp_path, store="memory://"))


def test_check_runtime_refuses_a_web_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_runtime(Settings(data_dir=tmp_path, web_port=port))
    check_runtime(Settings(data_dir=tmp_path, web_port=port))  # free again


def test_check_runtime_refuses_missing_tls_files(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, security_protocol="SSL", ssl_cafile=tmp_path / "none.pem")
    with pytest.raises(SettingsError, match="OMS_SSL_CAFILE"):
        check_runtime(settings)


def test_settings_help_lists_every_setting_with_its_default() -> None:
    text = settings_help()
    lines = text.splitlines()
    assert len(lines) == len(Settings.model_fields)
    for name, info in Settings.model_fields.items():
        (line,) = [line for line in lines if line.startswith(f"OMS_{name.upper()}=")]
        assert info.description and line.endswith(info.description), name
    assert "OMS_PARTITIONS=4 " in text
    assert f"OMS_DATA_DIR={Path.home() / '.local' / 'state' / 'oms-postsales'} " in text
    assert "OMS_SHUTDOWN_TIMEOUT_SECONDS=30.0 " in text


def test_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.partitions = 8  # type: ignore[misc]


def test_environment_with_prefix_and_nested_topic_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("OMS_PARTITIONS", "12")
    monkeypatch.setenv("OMS_SECURITY_PROTOCOL", "sasl_plaintext")
    monkeypatch.setenv("OMS_SASL_MECHANISM", "scram-sha-256")
    monkeypatch.setenv("OMS_SASL_USERNAME", "oms")
    monkeypatch.setenv("OMS_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("OMS_STORE", "memory://")
    monkeypatch.setenv("OMS_LOG_LEVEL", "debug")
    monkeypatch.setenv(f"OMS_TOPIC_MAP__{names.ORDER_CREATE}", "orders.in")
    monkeypatch.setenv(f"OMS_TOPIC_MAP__{names.REFUND_UPDATED}", "refunds.out")

    settings = Settings()

    assert settings.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.partitions == 12
    assert settings.internal_partitions == 12  # follows partitions unless set
    assert (settings.security_protocol, settings.sasl_mechanism) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == PASSWORD
    assert settings.store == "memory://"
    assert settings.log_level == "DEBUG"
    assert settings.topic_map == {names.ORDER_CREATE: "orders.in", names.REFUND_UPDATED: "refunds.out"}


def test_topic_map_as_json_and_explicit_internal_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_TOPIC_MAP", json.dumps({names.STOCK_UPDATE: "stock.in"}))
    monkeypatch.setenv("OMS_PARTITIONS", "6")
    monkeypatch.setenv("OMS_INTERNAL_PARTITIONS", "2")
    settings = Settings()
    assert settings.topic_map == {names.STOCK_UPDATE: "stock.in"}
    assert (settings.partitions, settings.internal_partitions) == (6, 2)


def test_topic_for_prefers_the_map_then_adds_the_prefix() -> None:
    settings = Settings(topic_prefix="staging.", topic_map={names.ORDER_CREATE: "orders.in"})
    assert settings.topic_for(names.ORDER_CREATE) == "orders.in"
    assert settings.topic_for(names.ORDER_CANCEL) == "staging." + names.ORDER_CANCEL
    assert Settings().topic_for(names.ORDER_CANCEL) == names.ORDER_CANCEL


def test_prefix_namespaces_the_default_dlq_but_not_an_explicit_one() -> None:
    assert Settings(topic_prefix="staging.").dlq_topic == "staging." + names.DEFAULT_DLQ_TOPIC
    assert Settings(topic_prefix="staging.", dlq_topic="dead").dlq_topic == "dead"


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"topic_map": {"magento.nope": "x"}}, "unknown message name(s): magento.nope"),
        ({"topic_map": {names.ORDER_CREATE: "bad topic"}}, "may only contain"),
        ({"topic_prefix": "a/b"}, "may only contain"),
        ({"partitions": 0}, "partitions"),
        ({"store": "redis://"}, "store"),
        ({"security_protocol": "SASL_SSL"}, "OMS_SASL_MECHANISM, OMS_SASL_USERNAME, OMS_SASL_PASSWORD"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "oms"}, "use SASL_PLAINTEXT or SASL_SSL"),
        ({"security_protocol": "SSL", "ssl_certfile": "c.pem"}, "given together"),
        ({"ssl_cafile": "ca.pem"}, "SSL files are given but security_protocol=PLAINTEXT"),
    ],
)
def test_invalid_settings_are_refused_with_a_clear_message(values: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**values)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_secrets_are_masked_everywhere() -> None:
    settings = sasl_ssl(ssl_password=KEY_PASSWORD)
    masked = settings.masked()
    assert masked["sasl_password"] == MASK
    assert masked["ssl_password"] == MASK
    assert masked["sasl_username"] == "oms"
    for text in (json.dumps(masked), repr(settings), str(settings)):
        assert PASSWORD not in text
        assert KEY_PASSWORD not in text


def test_masked_is_json_and_shows_unset_secrets_as_none() -> None:
    masked = Settings(rules_file="rules.toml").masked()
    assert json.loads(json.dumps(masked)) == masked
    assert masked["sasl_password"] is None
    assert masked["rules_file"] == "rules.toml"


@pytest.mark.parametrize(
    "values",
    [
        {"sasl_password": PASSWORD, "partitions": "many"},  # another field is wrong
        {"security_protocol": "SASL_SSL", "sasl_password": PASSWORD},  # the model check fails
        {"security_protocol": "SASL_SSL", "sasl_username": PASSWORD},  # a secret in the wrong place
        {"sasl_password": [PASSWORD]},  # the secret itself is malformed
    ],
)
def test_validation_errors_do_not_echo_secrets(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**values)  # type: ignore[arg-type]
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in repr(info.value)
    # errors() carries the raw input unless asked not to; whoever logs it must pass include_input.
    assert PASSWORD not in json.dumps(info.value.errors(include_input=False), default=str)


def test_validation_errors_from_the_environment_do_not_echo_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("OMS_WEB_PORT", "99999")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "web_port" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_kafka_client_kwargs_plaintext() -> None:
    settings = Settings(bootstrap_servers="127.0.0.1:19092")
    assert settings.kafka_client_kwargs() == {
        "bootstrap_servers": "127.0.0.1:19092",
        "security_protocol": "PLAINTEXT",
    }


def test_kafka_client_kwargs_sasl_ssl_with_system_trust() -> None:
    kwargs = sasl_ssl(bootstrap_servers="kafka:9093").kafka_client_kwargs()
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "bootstrap_servers": "kafka:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "oms",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key, encrypted with KEY_PASSWORD."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-days", "1", "-subj", "/CN=oms-test-ca", "-keyout", str(key), "-out", str(cert),
         "-passout", f"pass:{KEY_PASSWORD}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_kafka_client_kwargs_ssl_files_reach_the_context(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    settings = sasl_ssl(ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key, ssl_password=KEY_PASSWORD)
    context = settings.kafka_client_kwargs()["ssl_context"]
    issuers = [dict(part[0] for part in ca["subject"]) for ca in context.get_ca_certs()]
    assert {"commonName": "oms-test-ca"} in issuers


def test_a_wrong_key_password_fails_without_echoing_it(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    settings = sasl_ssl(ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key, ssl_password=PASSWORD)
    with pytest.raises(ssl.SSLError) as info:
        settings.kafka_client_kwargs()
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("token", ["", "s3cret", "a" * 23, "tab\tinside-a-token-of-24+", "é" * 10])
def test_a_short_empty_or_spaced_api_token_is_refused(token: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(api_token=token)  # type: ignore[arg-type]
    assert "api_token" in str(info.value)
    if token:
        assert token not in str(info.value)


def test_a_long_api_token_is_taken() -> None:
    token = "0123456789abcdef01234567"
    assert Settings(api_token=token).api_token.get_secret_value() == token  # type: ignore[arg-type,union-attr]
