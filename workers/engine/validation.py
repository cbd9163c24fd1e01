"""Compiled JSON Schema validators, one per message, built once; a failure names its JSON pointer.

Two validators per schema: jsonschema-rs (compiled, ~60x faster here) answers "valid?" for every record,
and the pure-Python jsonschema, whose error reports pick the most relevant failure, explains the rare
record that is not. Contract tests check that both agree on every example.

The message schemas share definitions through `$ref` to `defs.json`; every schema's `$id` lives under
SCHEMA_BASE. References are resolved from the bundled files only (offline), never from the network (the
base is under the reserved `.invalid` domain, so it could not be fetched anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import simplejson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, _Error, best_match

from schemas import DEFS_NAME, SCHEMA_DIR


@dataclass(frozen=True)
class SchemaFailure:
    pointer: str
    message: str


def pointer(path: Any) -> str:
    """RFC 6901 JSON pointer of a jsonschema error path ("" is the whole document)."""
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in path]
    return "/" + "/".join(parts) if parts else ""


class Validators:
    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._by_name: dict[str, Draft202012Validator] = {}
        self._fast: dict[str, Any] = {}
        self.ids: dict[str, str] = {}
        # The schemas themselves are checked against the metaschema by the contract tests, not at
        # every start (that check alone costs a second).
        schemas = {
            path.name.removesuffix(".json"): simplejson.loads(path.read_text(encoding="utf-8"))
            for path in sorted(schema_dir.glob("*.json"))
        }
        registry = jsonschema_rs.Registry([(str(s["$id"]), s) for s in schemas.values() if "$id" in s])
        for name, schema in schemas.items():
            if name == DEFS_NAME:
                continue
            # Validators get the shared definitions inlined: resolving $ref at every record made the
            # compiled check about twice as slow and the explaining one four times.
            inlined = jsonschema_rs.dereference(schema, registry=registry, offline=True)
            self._by_name[name] = Draft202012Validator(inlined)
            self._fast[name] = jsonschema_rs.validator_for(inlined)
            self.ids[name] = str(schema.get("$id", name))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def check(self, name: str, instance: Any) -> SchemaFailure | None:
        if self.fast_valid(name, instance):
            return None
        # The two validators agree on every contract example; should they ever differ, refuse.
        return self.explain(name, instance) or SchemaFailure("", "refused by the compiled validator")

    def explain(self, name: str, instance: Any) -> SchemaFailure | None:
        """The rich report (pure-Python jsonschema); None when that validator finds nothing wrong."""
        error: ValidationError | None = best_match(self._by_name[name].iter_errors(instance))
        if error is None:
            return None
        message = _short(error.message)
        rule = _rule(error)
        return SchemaFailure(
            pointer(error.absolute_path), f"{message}; the rule: {rule}" if rule else message
        )

    def fast_valid(self, name: str, instance: Any) -> bool:
        """The compiled validator's yes or no: what `check` asks first, for every record."""
        return bool(self._fast[name].is_valid(instance))


# Failures that name a member rather than judge a value: the schema's description of the object would
# not say what is wrong.
_STRUCTURAL = frozenset({"required", "additionalProperties", "unevaluatedProperties", "dependentRequired"})


def _rule(error: ValidationError) -> str | None:
    """The rule in words: the `description` of the schema the value failed, or of the `anyOf` (a
    shared definition) it is one branch of, at the same place in the document. jsonschema's own text
    quotes a pattern, which does not say that an amount may not be negative."""
    if error.validator in _STRUCTURAL or not error.absolute_path:
        return None
    where = list(error.absolute_path)
    node: _Error | None = error
    while node is not None and list(node.absolute_path) == where:
        schema = node.schema
        if isinstance(schema, dict) and isinstance(schema.get("description"), str):
            return str(schema["description"])
        node = node.parent
    return None


def _short(message: str, limit: int = 300) -> str:
    # jsonschema quotes the whole offending value; a huge payload must not become a huge header.
    return message if len(message) <= limit else message[: limit - 1] + "…"


@cache
def default_validators() -> Validators:
    return Validators()
