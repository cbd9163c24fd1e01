"""The AsyncAPI 3.0 document of the worker's topics, generated from the JSON Schemas and the topic
catalogue: `python -m workers.asyncapi > docs/asyncapi.yaml`.

One channel per topic (default names: no prefix, no mapping), one message per message name with its
schema as payload, the record key and the headers; the dead-letter topic with its dlq.* headers; the
rules topic with its rule-set records; the worker's internal topics (stock movements, settle ticks,
table changelogs) marked internal, with no message contract. Payloads are the message schemas with the
shared definitions inlined, so the document stands alone; their `$id` is the `schema_id` header of
the records.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import jsonschema_rs
import simplejson

from domain import names
from schemas import DEFS_NAME, SCHEMA_DIR
from workers.config.settings import Settings
from workers.engine import codec
from workers.engine.rule_records import SCHEMA_NAME as RULES_SCHEMA
from workers.kafka.topics import (
    INBOUND_TOPIC,
    STOCK_MOVEMENTS_TOPIC,
    TABLES,
    TICKS_TOPIC,
    catalogue,
    changelog_topic,
    rules_topic,
)

# JSON Schema 2020-12 is not among the formats AsyncAPI 3.0 lists, so it is named the way the listed
# draft-07 format is; tools that do not know it still show the schema as JSON.
SCHEMA_FORMAT = "application/schema+json;version=2020-12"
KAFKA_BINDING = "0.5.0"
ORDER_KEY = "<sales channel>:<order id> (the order's store / the message's sales_channel_id, and its id)"
STOCK_KEY = "<source id>:<sku>"
SOURCE_KEY = "<source id> (the snapshot's source_id)"

_HEADERS = {
    codec.H_NAME: "The message name (JSON-RPC method).",
    codec.H_ID: "The message id: unique, derived from the causing message id, so a re-run repeats it.",
    codec.H_CORRELATION: "The id of the inbound message that started the chain.",
    codec.H_CAUSATION: "The id of the inbound message that caused this one.",
    codec.H_SCHEMA: "The $id of the JSON Schema of the params.",
    codec.H_PRODUCER: "Producer name and version, e.g. oms-postsales/0.1.0.",
}
_DLQ_HEADERS = {
    "dlq.error.class": "Why the record failed, e.g. InvalidJson, SchemaValidation, DomainValidation.",
    "dlq.error.message": "A short human-readable reason.",
    "dlq.error.path": "JSON pointer of the failing member within the record value (empty when none).",
    "dlq.original.topic": "The topic the record was read from.",
    "dlq.original.partition": "Its partition.",
    "dlq.original.offset": "Its offset.",
    "dlq.failed_at": "When it failed (ISO 8601, UTC).",
}


def _string_headers(descriptions: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": {name: {"type": "string", "description": text} for name, text in descriptions.items()},
    }


def _schemas() -> dict[str, dict[str, Any]]:
    loaded = {
        path.name.removesuffix(".json"): simplejson.loads(path.read_text(encoding="utf-8"))
        for path in sorted(SCHEMA_DIR.glob("*.json"))
    }
    registry = jsonschema_rs.Registry([(str(s["$id"]), s) for s in loaded.values()])
    inlined: dict[str, dict[str, Any]] = {}
    for name, schema in loaded.items():
        if name != DEFS_NAME:
            inlined[name] = jsonschema_rs.dereference(schema, registry=registry, offline=True)
    return inlined


def _envelope(name: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["jsonrpc", "id", "method", "params"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer"], "description": "The message id."},
            "method": {"const": name},
            "params": params,
        },
    }


def _inbound_payload(name: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "$id": params["$id"],
        "description": "A JSON-RPC 2.0 envelope, or its params alone (the topic names the message).",
        "$defs": {"params": {key: value for key, value in params.items() if key != "$id"}},
        "anyOf": [_envelope(name, {"$ref": "#/$defs/params"}), {"$ref": "#/$defs/params"}],
    }


def _outbound_payload(name: str, params: dict[str, Any]) -> dict[str, Any]:
    envelope = _envelope(name, {key: value for key, value in params.items() if key != "$id"})
    return {"$id": params["$id"], "description": "A JSON-RPC 2.0 envelope.", **envelope}


def _key(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _message(name: str, schema: dict[str, Any], payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        "name": name,
        "title": name,
        "summary": str(schema.get("description", name)),
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/headers"},
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": payload},
        "bindings": {"kafka": {"key": _key(key), "bindingVersion": KAFKA_BINDING}},
    }


def document(settings: Settings | None = None) -> dict[str, Any]:
    """The AsyncAPI document for `settings` (default: the built-in defaults, environment ignored)."""
    settings = settings or Settings(_env_prefix="OMS_ASYNCAPI_DEFAULTS_ONLY_", _env_file=None)
    schemas = _schemas()
    specs = {spec.name: spec for spec in catalogue(settings)}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def channel(topic: str, description: str, **extra: Any) -> dict[str, Any]:
        spec = specs[topic]
        kafka: dict[str, Any] = {
            "topic": topic,
            "partitions": spec.partitions,
            "bindingVersion": KAFKA_BINDING,
        }
        # Without OMS_REPLICATION_FACTOR the broker's default replication applies: nothing to say.
        if spec.replication is not None:
            kafka["replicas"] = spec.replication
        configuration: dict[str, Any] = {}
        if spec.config.get("cleanup.policy"):
            configuration["cleanup.policy"] = [spec.config["cleanup.policy"]]
        if spec.config.get("retention.ms"):
            configuration["retention.ms"] = int(spec.config["retention.ms"])
        if spec.config.get("max.message.bytes"):
            configuration["max.message.bytes"] = int(spec.config["max.message.bytes"])
        if configuration:
            kafka["topicConfiguration"] = configuration
        found: dict[str, Any] = channels.setdefault(
            topic,
            {"address": topic, "description": description, "messages": {}, "bindings": {"kafka": kafka}},
        )
        found.update(extra)
        return found

    def add(name: str, action: str, payload: dict[str, Any], key: str, description: str) -> None:
        topic = settings.topic_for(name)
        messages[name] = _message(name, schemas[name], payload, key)
        channel(topic, description)["messages"][name] = {"$ref": f"#/components/messages/{name}"}
        operations[f"{action}.{name}"] = {
            "action": action,
            "summary": str(schemas[name].get("description", name)),
            "channel": {"$ref": f"#/channels/{topic}"},
            "messages": [{"$ref": f"#/channels/{topic}/messages/{name}"}],
        }

    for name in names.INBOUND:
        key = SOURCE_KEY if name == names.STOCK_UPDATE else ORDER_KEY
        add(name, "receive", _inbound_payload(name, schemas[name]), key, f"Inbound: {name}.")
    for name in names.OUTBOUND:
        key = STOCK_KEY if name == names.STOCK_ADJUSTED else ORDER_KEY
        add(name, "send", _outbound_payload(name, schemas[name]), key, f"Outbound: {name}.")

    dlq = "dead-letter"
    messages[dlq] = {
        "name": dlq,
        "title": "Dead letter",
        "summary": "A record that could not be decoded or failed its schema, kept as it arrived.",
        "contentType": "application/octet-stream",
        "headers": {
            **_string_headers(_DLQ_HEADERS, list(_DLQ_HEADERS)),
            "description": "The original record's headers, plus the dlq.* headers.",
            "additionalProperties": {"type": "string"},
        },
        "payload": {
            "schemaFormat": SCHEMA_FORMAT,
            "schema": {"description": "The original record value, byte for byte (it may not be JSON)."},
        },
        "bindings": {"kafka": {"key": _key("The original record's key."), "bindingVersion": KAFKA_BINDING}},
    }
    channel(settings.dlq_topic, "Dead letters: every record that cannot be processed.")["messages"][dlq] = {
        "$ref": f"#/components/messages/{dlq}"
    }
    operations[f"send.{dlq}"] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{settings.dlq_topic}"},
        "messages": [{"$ref": f"#/channels/{settings.dlq_topic}/messages/{dlq}"}],
    }

    # The rule sets per sales channel: read whole by every worker, written by `rules publish` (and by a
    # worker once, the rules file as version 1, when the topic is empty).
    rule_set = "rule-set"
    rules_schema = schemas[RULES_SCHEMA]
    messages[rule_set] = _message(
        rule_set,
        rules_schema,
        rules_schema,
        "<sales channel>@<version> (* for the defaults): one key per version",
    )
    rules_channel = channel(
        rules_topic(settings),
        "Rule sets per sales channel, one record per version, read whole by every worker (compacted).",
    )
    rules_channel["messages"][rule_set] = {"$ref": f"#/components/messages/{rule_set}"}
    for action in ("receive", "send"):
        operations[f"{action}.{rule_set}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{rules_topic(settings)}"},
            "messages": [{"$ref": f"#/channels/{rules_topic(settings)}/messages/{rule_set}"}],
        }

    internal = {
        settings.topic_prefix
        + INBOUND_TOPIC: "every decodable inbound record, bytes and headers as sent plus "
        "oms.origin.* headers, re-keyed by the order (or source) its payload names.",
        settings.topic_prefix + STOCK_MOVEMENTS_TOPIC: "Stock movements re-keyed <source>:<sku> between the "
        "worker's own agents.",
        settings.topic_prefix + TICKS_TOPIC: "Clock ticks that settle messages held for orders not seen yet.",
        **{
            changelog_topic(settings, table): f"Changelog of the worker's {table!r} table (compacted)."
            for table in TABLES
        },
    }
    for topic, description in internal.items():
        channel(topic, "Internal to the worker, not a contract: " + description, **{"x-internal": True})

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "oms-postsales",
            "version": codec.PRODUCER.split("/", 1)[1],
            "description": "Post-sales worker speaking the Magento Order Management (MOM 1.0.3) message "
            "contract over Kafka: one topic per message name, JSON values (a JSON-RPC 2.0 envelope, or "
            "for inbound messages its params alone), string keys and headers.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": settings.bootstrap_servers,
                "protocol": "kafka",
                "description": "The default bootstrap servers (OMS_BOOTSTRAP_SERVERS).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {
                "headers": {
                    **_string_headers(_HEADERS, []),
                    "description": "Emitted records carry every header below. Inbound records may carry "
                    "any of them: the message id is the envelope's id, else the message_id header, else "
                    "a hash of the value.",
                }
            },
            "messages": messages,
        },
    }


_PLAIN_KEY = re.compile(r"^[A-Za-z$][A-Za-z0-9_.$-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _key_text(key: str) -> str:
    plain = _PLAIN_KEY.match(key) and key.lower() not in _YAML_WORDS
    return key if plain else json.dumps(key)


def to_yaml(value: Any, indent: int = 0) -> str:
    """YAML block style; scalars are written as JSON (valid YAML), so the output is exact and stable."""
    pad = "  " * indent
    if isinstance(value, dict) and value:
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{_key_text(key)}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{_key_text(key)}: {to_yaml(item).strip()}")
        return "\n".join(lines)
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            if isinstance(item, dict | list) and item:
                body = to_yaml(item, indent + 1)
                lines.append(f"{pad}- {body.lstrip()}")
            else:
                lines.append(f"{pad}- {to_yaml(item).strip()}")
        return "\n".join(lines)
    return pad + simplejson.dumps(value, ensure_ascii=False)


def render(settings: Settings | None = None) -> str:
    header = (
        "# Generated by `python -m workers.asyncapi` from schemas/ and the topic catalogue: do not edit.\n"
    )
    return header + to_yaml(document(settings)) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
