"""Rules records ⇄ rule sets (README, "Rules that change while the worker runs"): what the worker's
rules reader, `replay` and the `rules` verbs share, so that a rules record counts, or is
dead-lettered, alike everywhere.

A record is one version of one key's rule set: key `<sales channel>@<version>` (`*@<version>` for the
defaults), value the JSON of `schemas/oms-postsales.rules.json`. One record per version, never a
list of versions under the channel's key: compaction keeps the last value of each key, so every
version keeps its own key and outlives compaction, a record stays the size of one rule set, and a
bad record written by another tool spoils only itself, never the history before it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from domain.rule_versions import RuleVersion, RuleVersions, VersionRefused, rule_fields, rule_version
from domain.rules import ChannelRules, RulesError
from schemas import SCHEMA_BASE
from workers.engine.codec import DecodeError, InboundRecord, OutboundRecord, loads
from workers.engine.validation import Validators, default_validators

RULES_TOPIC = "oms-postsales.rules"
SCHEMA_NAME = "oms-postsales.rules"
# Headers of a published rules record: what it is, and which schema its value follows.
MESSAGE_NAME = "oms-postsales.rules"


@dataclass(frozen=True)
class RulesRead:
    """What one rules record did: a new version, the very version again (None, no error), or refused."""

    version: RuleVersion | None
    error: DecodeError | None = None


def read_record(
    record: InboundRecord, versions: RuleVersions, validators: Validators | None = None
) -> RulesRead:
    """Check a rules record as the rules file is checked, then add it to `versions`."""
    try:
        found = _decode(record, validators or default_validators())
        if not versions.add(found):
            return RulesRead(None)
    except DecodeError as error:
        return RulesRead(None, error)
    except VersionRefused as refused:
        return RulesRead(None, DecodeError("RulesVersion", str(refused), "/version"))
    return RulesRead(found)


def _decode(record: InboundRecord, validators: Validators) -> RuleVersion:
    if not record.value:
        raise DecodeError("RulesDeleted", "a rules record without a value: rule sets are never deleted")
    try:
        value = loads(record.value)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError("InvalidJson", f"value is not JSON: {exc}") from None
    failure = validators.check(SCHEMA_NAME, value)
    if failure is not None:
        raise DecodeError("SchemaValidation", failure.message, failure.pointer)
    try:
        found = rule_version(value)
    except RulesError as exc:
        raise DecodeError(
            "DomainValidation", str(exc), "/" + str(exc).split(":", 1)[0].replace(".", "/")
        ) from None
    if record.key != found.label:
        raise DecodeError(
            "RulesKey", f"record key {record.key!r} must be {found.label!r} (<sales_channel>@<version>)"
        )
    return found


def encode(found: RuleVersion, topic: str) -> OutboundRecord:
    """A rule set as the record `rules publish` writes."""
    value = json.dumps(rule_fields(found), separators=(",", ":"), sort_keys=True).encode("utf-8")
    headers = {"message_name": MESSAGE_NAME, "schema_id": SCHEMA_BASE + SCHEMA_NAME + ".json"}
    return OutboundRecord(topic, found.label, headers, value)


def record_schema() -> dict[str, Any]:
    """The record's JSON Schema: the envelope fields around `ChannelRules`' own schema (pydantic's), so
    the schema follows the rule keys as they are added (a contract test fails when the file is stale)."""
    rules = ChannelRules.model_json_schema()
    defs = rules.pop("$defs", None)
    rules.pop("title", None)
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_BASE + SCHEMA_NAME + ".json",
        "title": SCHEMA_NAME,
        "description": (
            "One version of one sales channel's rule set on the rules topic (key "
            "`<sales_channel>@<version>`; `*` is the defaults). Generated from ChannelRules: "
            "python -m workers.engine.rule_records"
        ),
        "x-version": 1,
        "type": "object",
        "required": ["sales_channel", "version", "effective_from", "rules"],
        "additionalProperties": False,
        "properties": {
            "sales_channel": {
                "type": "string",
                "minLength": 1,
                "pattern": "^[^@]+$",
                "description": "the sales channel, or * for the defaults",
            },
            "version": {
                "type": "integer",
                "minimum": 1,
                "description": "above every earlier version of the same sales channel",
            },
            "effective_from": {
                "type": "string",
                "format": "date-time",
                "description": "RFC 3339: messages dated at or after it are decided by this version",
            },
            "rules": {**rules, "description": "the channel's whole rule set (the defaults merged in)"},
        },
    }
    if defs:
        schema["$defs"] = defs
    return schema


def schema_text() -> str:
    return json.dumps(record_schema(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":  # python -m workers.engine.rule_records > schemas/oms-postsales.rules.json
    sys.stdout.write(schema_text())
