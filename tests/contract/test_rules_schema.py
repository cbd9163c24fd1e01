"""The rules topic's record: its schema is generated from ChannelRules (stale when a rule key is added
without regenerating it), and a record counts only when the schema and the rules' own checks agree."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from domain.rule_versions import RuleVersion, RuleVersions
from domain.rules import ChannelRules
from schemas import SCHEMA_DIR
from workers.engine.codec import InboundRecord
from workers.engine.rule_records import RULES_TOPIC, SCHEMA_NAME, encode, read_record, schema_text

SCHEMA_FILE = SCHEMA_DIR / f"{SCHEMA_NAME}.json"


def _valid() -> dict[str, Any]:
    found = RuleVersion("ST1", 2, datetime(2026, 12, 7, 6, tzinfo=UTC), ChannelRules(refund_on="receipt"))
    return dict(json.loads(encode(found, RULES_TOPIC).value))


def _record(value: Any, key: str = "ST1@2") -> InboundRecord:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return InboundRecord(RULES_TOPIC, raw, key=key, offset=7)


def test_the_schema_file_is_generated_from_channel_rules_and_is_not_stale() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "schemas/oms-postsales.rules.json is stale: "
        "python -m workers.engine.rule_records > schemas/oms-postsales.rules.json"
    )
    schema = json.loads(SCHEMA_FILE.read_text())
    Draft202012Validator.check_schema(schema)
    assert set(schema["properties"]["rules"]["properties"]) == set(ChannelRules.model_fields)


def test_a_valid_record_is_a_new_version() -> None:
    versions = RuleVersions()
    value = _valid()
    assert Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).is_valid(value)
    read = read_record(_record(value), versions)
    assert read.error is None and read.version is not None and read.version.label == "ST1@2"
    assert versions.for_channel("ST1", datetime(2026, 12, 8, tzinfo=UTC)).refund_on == "receipt"
    # The same record again (another worker's start-up publication) is no change and no error.
    again = read_record(_record(value), versions)
    assert again.error is None and again.version is None


def _without(name: str) -> dict[str, Any]:
    value = _valid()
    del value[name]
    return value


def _rules(**changes: Any) -> dict[str, Any]:
    value = _valid()
    value["rules"].update(changes)
    return value


@pytest.mark.parametrize(
    ("value", "key", "error_class", "path"),
    [
        (b"{not json", "ST1@2", "InvalidJson", ""),
        (b"", "ST1@2", "RulesDeleted", ""),
        (_without("effective_from"), "ST1@2", "SchemaValidation", ""),
        ({**_valid(), "extra": 1}, "ST1@2", "SchemaValidation", ""),
        ({**_valid(), "version": 0}, "ST1@0", "SchemaValidation", "/version"),
        (
            _rules(shipping_refund_rule="sometimes"),
            "ST1@2",
            "SchemaValidation",
            "/rules/shipping_refund_rule",
        ),
        (_rules(auto_release_refund="yes"), "ST1@2", "SchemaValidation", "/rules/auto_release_refund"),
        (_rules(typo_key=True), "ST1@2", "SchemaValidation", "/rules"),
        # What only the rules' own checks see: retention shorter than the return window.
        (_rules(retain_days=10, return_window_days=30), "ST1@2", "DomainValidation", "/rules"),
        ({**_valid(), "effective_from": "next tuesday"}, "ST1@2", "DomainValidation", "/effective_from"),
        (_valid(), "ST1", "RulesKey", ""),
    ],
)
def test_an_invalid_record_is_refused_with_its_class_and_pointer(
    value: Any, key: str, error_class: str, path: str
) -> None:
    versions = RuleVersions()
    read = read_record(_record(value, key), versions)
    assert read.version is None and read.error is not None
    assert (read.error.error_class, read.error.path) == (error_class, path)
    assert len(versions) == 0


def test_a_version_not_above_the_last_is_refused_and_the_live_rules_stay() -> None:
    versions = RuleVersions()
    read_record(_record(_valid()), versions)
    older = {**_valid(), "version": 1, "rules": ChannelRules(refund_on="approval").model_dump(mode="json")}
    read = read_record(_record(older, "ST1@1"), versions)
    assert read.error is not None and read.error.error_class == "RulesVersion"
    assert [v.label for v in versions] == ["ST1@2"]
