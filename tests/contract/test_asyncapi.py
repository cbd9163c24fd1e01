"""docs/asyncapi.yaml is current, valid AsyncAPI 3.0.0, and its payloads take the records the worker
really reads and writes.

The official AsyncAPI 3.0.0 JSON Schema is vendored under tests/data/asyncapi/ (from the npm package
@asyncapi/specs 6.11.1, Apache-2.0): no network at test time.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator

from domain import names
from workers.asyncapi import document, render

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "asyncapi.yaml"
SPEC = json.loads((ROOT / "tests" / "data" / "asyncapi" / "3.0.0.json").read_text())


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOC.read_text())
    return loaded


def test_the_committed_document_is_what_the_generator_writes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "workers.asyncapi"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout == DOC.read_text(), "regenerate: python -m workers.asyncapi > docs/asyncapi.yaml"
    assert done.stdout == render()


def test_the_yaml_says_exactly_what_the_generator_built(committed: dict[str, Any]) -> None:
    assert committed == json.loads(json.dumps(document()))


def test_it_validates_against_the_official_asyncapi_3_schema(committed: dict[str, Any]) -> None:
    validator = Draft7Validator(SPEC)
    assert [e.message for e in validator.iter_errors(committed)] == []
    # The validator does look inside: a broken copy is refused.
    broken = copy.deepcopy(committed)
    first = next(iter(broken["operations"].values()))
    first["action"] = "publish"
    assert not validator.is_valid(broken)


def test_every_message_and_topic_is_there(committed: dict[str, Any]) -> None:
    channels = committed["channels"]
    for name in (*names.INBOUND, *names.OUTBOUND):
        assert name in channels[name]["messages"], name
    assert "dead-letter" in channels[names.DEFAULT_DLQ_TOPIC]["messages"]
    assert "rule-set" in channels["oms-postsales.rules"]["messages"]
    internal = {topic for topic, channel in channels.items() if channel.get("x-internal")}
    assert "oms-postsales.stock-movements" in internal and "oms-postsales-orders-changelog" in internal
    actions = {
        op["action"] for name, op in committed["operations"].items() if name.endswith(names.ORDER_CREATE)
    }
    assert actions == {"receive"}
    dlq_headers = committed["components"]["messages"]["dead-letter"]["headers"]["required"]
    assert "dlq.error.path" in dlq_headers and "dlq.original.offset" in dlq_headers


def _payload(committed: dict[str, Any], name: str) -> Draft202012Validator:
    schema = committed["components"]["messages"][name]["payload"]["schema"]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_the_payloads_take_the_records_of_the_examples(committed: dict[str, Any]) -> None:
    cli = str(Path(sys.executable).parent / "oms-postsales")
    log = ROOT / "examples" / "magento-shaped.jsonl"
    done = subprocess.run(
        [cli, "replay", str(log), "--rules", str(ROOT / "examples" / "rules.toml")],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in log.read_text().splitlines():
        record = json.loads(line)
        payload = _payload(committed, record["topic"])
        assert payload.is_valid(record["value"]) and payload.is_valid(record["value"]["params"])
    for line in done.stdout.splitlines():
        record = json.loads(line)
        assert _payload(committed, record["topic"]).is_valid(record["value"]), record["topic"]
    refused = {"jsonrpc": "2.0", "id": "x", "method": names.SHIPMENT_DONE, "params": {"shipment": []}}
    assert not _payload(committed, names.SHIPMENT_DONE).is_valid(refused)
