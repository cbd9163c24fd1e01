"""Every ```bash block of README.md is run here, or skipped on purpose with the reason, so the examples
stay true: the operator verbs and curl lines run against `oms-postsales dev` with the ports it prints
(its `export` line), after the example log went through its worker; the demo runs as README gives it.

A new block fails `test_every_readme_block_is_run_or_skipped_with_a_reason` until it is added to
RUN or SKIPPED below."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from domain import names
from workers.config.settings import Settings
from workers.engine.codec import InboundRecord, dumps
from workers.local.dev import WorkerProcess, collect, publish, settings_from_env, through_kafka

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
CLI = str(BIN / "oms-postsales")
START_TIMEOUT = 90.0
COMMAND_TIMEOUT = 60.0

# Blocks, by their first line, that cannot run here, and why.
SKIPPED = {
    "bash .ci/run": "installs everything and runs the whole suite (about 40 minutes); CI runs it",
    ".venv/bin/python bench/chaos.py --store rocksdb://": "the chaos run takes minutes; "
    "tests/integration/test_chaos.py runs its quick mode",
    ".venv/bin/python bench/real_producers.py": "the full bench takes minutes; "
    "tests/integration/test_real_producers.py runs eleven scenarios per variant",
    "apt-get install kcat": "installs system and pip packages (needs root and the network)",
}
# Blocks run here, by their first line.
RUN = {
    # The venv and the install are this test run's own.
    "python3 -m venv .venv": "test_the_demo_runs_as_readme_gives_it",
    "oms-postsales dlq list": "test_the_operator_blocks_run_against_dev",
    "curl -s": "test_the_operator_blocks_run_against_dev",
}


def blocks() -> list[list[str]]:
    """README's bash blocks as commands: comments dropped, continuation lines joined."""
    found = []
    for match in re.finditer(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        text = match.group(1).replace("\\\n", " ")
        found.append([line.strip() for line in text.splitlines() if line.strip()])
    return found


def block_starting(prefix: str) -> list[str]:
    (block,) = [b for b in blocks() if b[0].startswith(prefix)]
    return block


def test_every_readme_block_is_run_or_skipped_with_a_reason() -> None:
    firsts = [block[0] for block in blocks()]
    assert firsts, "README has no bash blocks?"
    unclaimed = [f for f in firsts if not any(f.startswith(p) for p in (*RUN, *SKIPPED))]
    assert unclaimed == [], "run these README blocks in this file, or list them in SKIPPED with a reason"
    stale = [p for p in (*RUN, *SKIPPED) if not any(f.startswith(p) for f in firsts)]
    assert stale == [], "README no longer has these blocks"


@dataclass
class Dev:
    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    seen: list[str]

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                found = re.search(pattern, line)
                if found:
                    return found
            assert self.process.poll() is None, "".join(self.seen)
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n" + "".join(self.seen)
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.lines.get(timeout=0.5))


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    # `oms-postsales` as README writes it: the installed script of this interpreter first on PATH.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def running_dev(workdir: Path) -> Iterator[Dev]:
    process = subprocess.Popen(
        [CLI, "dev", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_clean_env(),
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or []], daemon=True)
    reader.start()
    try:
        yield Dev(process, lines, [])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # dev stops its worker and broker by their PIDs
            try:
                process.wait(45)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(5)


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def test_the_operator_blocks_run_against_dev(tmp_path: Path) -> None:
    with running_dev(tmp_path / "dev") as dev:
        export = dev.wait_for(r"^export (OMS_BOOTSTRAP_SERVERS=\S+ OMS_WEB_PORT=\d+)$")
        dev.wait_for(r"^running;")
        env = _clean_env()
        env.update(dict(pair.split("=", 1) for pair in export.group(1).split()))
        # Traffic first, as a user's worker would have had: the example log through dev's worker.
        settings = settings_from_env(
            {k: env[k] for k in ("OMS_BOOTSTRAP_SERVERS", "OMS_WEB_PORT")} | {"OMS_STORE": "memory://"}
        )
        probe = WorkerProcess({"OMS_WEB_PORT": env["OMS_WEB_PORT"]}, tmp_path / "unused.log")
        examples = ROOT / "examples"
        found, expected = through_kafka(
            settings, probe, examples / "message-log.jsonl", examples / "rules.toml"
        )
        assert len(found.records) == len(expected)
        # README's dead letter `2:17` is a shipment whose source_id is not text, which its --fix
        # repairs: one such here, and a state folder of this test's instead of /tmp/state.
        dead = _dead_shipment(settings)
        where = f"{dead['partition']}:{dead['offset']}"
        substitutions = {"2:17": where, "/tmp/state": str(tmp_path / "state")}
        commands = block_starting("oms-postsales dlq list") + block_starting("curl -s")
        outputs = {}
        for command in commands:
            for old, new in substitutions.items():
                command = command.replace(old, new)
            done = _run(command, env)
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr, done.stderr
            outputs[command.split("#")[0].strip()] = done.stdout
    by_start = {command.split()[1] + " " + command.split()[2]: out for command, out in outputs.items()}
    listed = [json.loads(line) for line in by_start["dlq list"].splitlines()]
    assert listed and all(r["error_class"] == "SchemaValidation" for r in listed)
    assert where in {f"{r['partition']}:{r['offset']}" for r in listed}
    assert "readme-shipment" in {r["message_id"] for r in listed}
    assert json.loads(by_start["dlq show"])["value_at_pointer"] == 42
    assert f"would re-drive {where} -> " in by_start["dlq redrive"]
    assert "1 record(s) with 1 patch operation(s)" in by_start["dlq redrive"]
    order = next(json.loads(out) for command, out in outputs.items() if "/v1/orders/OCTO:1234" in command)
    assert order["key"] == "OCTO:1234" and order["credit_notes"]
    preview = next(json.loads(out) for command, out in outputs.items() if "/v1/preview" in command)
    assert preview["status"] == "applied" and preview["credit_notes"], preview
    offline = json.loads(by_start["preview examples/return.json"])
    assert (
        offline["status"] == "applied"
        and offline["credit_notes"][0]["payments"][0]["payment_method"] == "CARD"
    )
    assert dev.process.returncode is not None


def _dead_shipment(settings: Settings) -> dict[str, Any]:
    shipment = {
        "store_id": "OCTO",
        "order_id": "1234",
        "source_id": 42,
        "method": "standard",
        "items": [{"order_line_id": "L1", "order_line_number": 1, "quantity": 1}],
        "packages": [{"id": "P1", "items": [1]}],
    }
    value = dumps(
        {
            "jsonrpc": "2.0",
            "id": "readme-shipment",
            "method": names.SHIPMENT_DONE,
            "params": {"shipment": shipment},
        }
    )
    before = len(asyncio.run(collect(settings, [settings.dlq_topic], 10**9, timeout=1.0)).records)
    record = InboundRecord(settings.topic_for(names.SHIPMENT_DONE), value.encode(), None, {}, 0, 0, None)
    asyncio.run(publish(settings, [record]))
    letters = asyncio.run(collect(settings, [settings.dlq_topic], before + 1, timeout=30.0)).records
    (letter,) = [r for r in letters if r["headers"].get("dlq.error.path") == "/params/shipment/source_id"]
    return letter


def test_the_demo_runs_as_readme_gives_it(tmp_path: Path) -> None:
    (line,) = block_starting("python3 -m venv .venv")
    # The venv and the install are this test run's own; what is left is the demo itself.
    demo = line.split("&&")[-1].strip()
    assert demo == ".venv/bin/oms-postsales dev --demo", demo
    done = subprocess.run(
        [CLI, "dev", "--demo", "--workdir", str(tmp_path / "demo")],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(match replay)" in done.stdout and "FAILED" not in done.stdout
    assert re.search(r"^export OMS_BOOTSTRAP_SERVERS=127\.0\.0\.1:\d+ OMS_WEB_PORT=\d+$", done.stdout, re.M)
    assert re.search(r"CN-ST1-\d-000001 .* RELEASED ", done.stdout), done.stdout
    assert re.search(r"CN-ST1-\d-000002 .* CANCELLED ", done.stdout), done.stdout
