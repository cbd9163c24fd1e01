"""A record's envelope `method` must be a message its topic carries (the topic map): Kafka's ACLs are
per topic, so a producer allowed to write one topic cannot send another message through it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from domain import names
from domain.rules import RuleBook
from workers.config.settings import Settings
from workers.engine.codec import InboundRecord, decode, dumps
from workers.engine.pipeline import Pipeline, Topics

ROOT = Path(__file__).resolve().parents[2]
LOG = [json.loads(line) for line in (ROOT / "examples" / "message-log.jsonl").read_text().splitlines()]


def example(method: str) -> dict[str, Any]:
    for line in LOG:
        value = line["value"]
        if isinstance(value, dict) and value.get("method") == method:
            found: dict[str, Any] = value
            return found
    raise AssertionError(method)


def record(topic: str, value: Any) -> InboundRecord:
    return InboundRecord(topic=topic, value=dumps(value).encode("utf-8"), key="OCTO:1234")


def test_a_refund_sent_on_the_return_request_topic_is_dead_lettered_in_route_and_process() -> None:
    refund = example(names.APPEASEMENT_CREATE)
    smuggled = record(names.RETURN_REQUEST, refund)
    pipeline = Pipeline(RuleBook())
    for processed in (pipeline.route(smuggled).dead, pipeline.process(smuggled)):
        assert processed is not None and processed.status == "dead_letter"
        (dead,) = processed.records
        assert dead.topic == names.DEFAULT_DLQ_TOPIC
        assert dead.headers["dlq.error.class"] == "MethodTopicMismatch"
        assert dead.headers["dlq.error.path"] == "/method"
        message = dead.headers["dlq.error.message"]
        assert names.APPEASEMENT_CREATE in message and "its topic" in message
        assert dead.headers["dlq.original.topic"] == names.RETURN_REQUEST
        assert dead.value == smuggled.value
    # On its own topic the same record is handled.
    assert pipeline.route(record(names.APPEASEMENT_CREATE, refund)).dead is None


@pytest.mark.parametrize("topic", [names.RESHIPMENT_CREATE, names.RESHIPMENT_CREATE_SEED])
@pytest.mark.parametrize("method", [names.RESHIPMENT_CREATE, names.RESHIPMENT_CREATE_SEED])
def test_both_reshipment_spellings_are_taken_on_either_reshipment_topic(topic: str, method: str) -> None:
    carried = Topics().methods_by_topic()
    assert method in carried[topic]
    (params,) = [line["value"] for line in LOG if line["topic"] == names.RESHIPMENT_CREATE_SEED]
    envelope = {"jsonrpc": "2.0", "id": "reship-1", "method": method, "params": params}
    assert (
        decode(record(topic, envelope), Topics().names_by_topic(), methods_for_topic=carried).name == method
    )


def test_bare_params_take_their_name_from_the_topic() -> None:
    params = example(names.APPEASEMENT_CREATE)["params"]
    topics = Topics()
    decoded = decode(
        record(names.APPEASEMENT_CREATE, params),
        topics.names_by_topic(),
        methods_for_topic=topics.methods_by_topic(),
    )
    assert decoded.name == names.APPEASEMENT_CREATE


def test_a_topic_the_map_gives_several_messages_carries_each_of_them_and_no_other() -> None:
    settings = Settings(
        topic_map={
            names.RETURN_AUTHORIZE: "returns",
            names.RETURN_REQUEST: "returns",
            names.RETURN_RECEIVED: "returns",
        }
    )
    topics = Topics({name: settings.topic_for(name) for name in names.INBOUND})
    carried = topics.methods_by_topic()
    assert carried["returns"] == {names.RETURN_AUTHORIZE, names.RETURN_REQUEST, names.RETURN_RECEIVED}
    pipeline = Pipeline(RuleBook(), topics=topics)
    for method in (names.RETURN_AUTHORIZE, names.RETURN_REQUEST, names.RETURN_RECEIVED):
        assert pipeline.route(record("returns", example(method))).dead is None, method
    refused = pipeline.route(record("returns", example(names.APPEASEMENT_CREATE))).dead
    assert refused is not None and refused.detail == "MethodTopicMismatch"
    # A mapped message's old default topic carries nothing any more.
    gone = pipeline.route(record(names.RETURN_REQUEST, example(names.RETURN_REQUEST))).dead
    assert gone is not None and gone.detail == "MethodTopicMismatch"


def test_a_prefixed_topic_carries_its_message() -> None:
    settings = Settings(topic_prefix="staging.")
    topics = Topics({name: settings.topic_for(name) for name in names.INBOUND})
    pipeline = Pipeline(RuleBook(), topics=topics)
    create = example(names.ORDER_CREATE)
    assert pipeline.route(record("staging." + names.ORDER_CREATE, create)).dead is None
    assert pipeline.route(record(names.ORDER_CREATE, create)).dead is not None


def test_an_unknown_method_is_refused_first_and_its_text_is_capped() -> None:
    envelope = {**example(names.APPEASEMENT_CREATE), "method": "magento." + "x" * 5000}
    processed = Pipeline(RuleBook()).process(record(names.APPEASEMENT_CREATE, envelope))
    (dead,) = processed.records
    assert dead.headers["dlq.error.class"] == "UnknownMessage"
    assert len(dead.headers["dlq.error.message"]) < 300
