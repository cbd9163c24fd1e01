"""Hostile input: generated records of every kind, interleaved with the example log, as a replay JSONL
file or through a live worker; every generated record must meet the fate its kind has in `KINDS`.

    .venv/bin/python bench/hostile.py --bad 10000 --out /tmp/hostile.jsonl [--seed 7]
    .venv/bin/python bench/hostile.py --bad 10000 --live /tmp/hostile-live   # through a live worker
    .venv/bin/python bench/hostile.py --poison-pill --live /tmp/pill --store rocksdb://   # issue 31

Kinds (the table `KINDS` gives each one's fate): bytes that are no message (invalid UTF-8, truncated
JSON, text, deep nesting, oversized payloads, JSON that is not an object), unknown message names,
messages on a topic that does not carry them,
messages without what the worker computes with (order id removed, null line number, non-numeric or
negative amount, non-integral or absurd quantity, huge string, wrong structure, unknown enum value) —
all dead letters with their class; well-formed messages the rules refuse (unknown line, over-refund:
rejections with their code; unknown order: held, refused at the deadline); and shapes real producers
send that are valid after all (nulls for optional fields, numeric strings, `[]` for an empty object,
extra members, ...): applied, and counted as valid traffic. Every generated record carries its number
and kind in headers (`hostile.record`, `hostile.kind`) and, when it has one, the message id `h-<n>`;
its outputs are found by the dead letter's copy of those headers or by their `correlation_id`.
Kinds marked pending in `KINDS` are left out unless `--all-kinds`. The live run also compares every
output with replay's.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain import names
from testkit.live import isolated, normalised
from testkit.reading import read_counts
from workers.config.logging import configure
from workers.config.rules_file import load_rules
from workers.config.settings import Settings
from workers.engine.pipeline import Pipeline, partition_for
from workers.local.broker import LocalBroker
from workers.local.dev import Collected, WorkerProcess, keyed, through_kafka
from workers.replay.runner import read_records

ROOT = Path(__file__).resolve().parents[1]

LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"
# Below the client's 1 MiB request limit, so that oversized records can be published at all.
LIVE_LIMIT = 65_536
Record = dict[str, Any]


@dataclass(frozen=True)
class Fate:
    """What must become of a record: `outcome` is `dead_letter` (detail: the `dlq.error.class`),
    `rejected` (detail: the rejection code), `applied` (it emits outputs of its own), or `held` (waits
    for its order; detail: the code it is refused with once the hold ends)."""

    outcome: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.outcome} {self.detail}".strip()


def dead(error_class: str) -> Fate:
    return Fate("dead_letter", error_class)


def rejected(code: str) -> Fate:
    return Fate("rejected", code)


APPLIED = Fate("applied")


@dataclass(frozen=True)
class Kind:
    """`valid`: a shape real producers send that the contract accepts; such records are counted as
    valid traffic, not as hostile. `pending`: the contract says `fate`, today's code does not do it yet."""

    fate: Fate
    valid: bool = False
    pending: bool = False
    # False: not generated one record at a time (hostile_log), but as part of a sequence (poison_pill).
    generated: bool = True


PENDING_REASON = "shapes from issue 9 item 3 not merged yet"

# The expected fate of every kind of generated record. Update this table, and only this table, when the
# contract changes; the offline and live checks both read it.
KINDS: dict[str, Kind] = {
    # Bytes that are no message at all.
    "invalid_utf8": Kind(dead("InvalidUtf8")),
    "truncated_json": Kind(dead("InvalidJson")),
    "garbage_text": Kind(dead("InvalidJson")),
    "deep_nesting": Kind(dead("TooDeep")),
    "oversized": Kind(dead("PayloadTooLarge")),
    "not_an_object": Kind(dead("InvalidStructure")),
    "unknown_message": Kind(dead("UnknownMessage")),
    # A message its topic does not carry: a refund-like appeasement written to the return request topic
    # (a producer allowed only that topic must not move money through it).
    "method_topic_mismatch": Kind(dead("MethodTopicMismatch")),
    # Messages without something the worker computes with, or with a wrong structure.
    "missing_order_id": Kind(dead("SchemaValidation")),
    "null_line_number": Kind(dead("SchemaValidation")),
    "non_numeric_amount": Kind(dead("SchemaValidation")),
    "negative_amount": Kind(dead("SchemaValidation")),
    "non_integral_quantity": Kind(dead("SchemaValidation")),
    "absurd_quantity": Kind(dead("SchemaValidation")),
    "huge_string": Kind(dead("SchemaValidation")),
    "wrong_structure": Kind(dead("SchemaValidation")),
    "unknown_enum": Kind(dead("SchemaValidation")),
    # Well-formed messages the rules refuse.
    "unknown_line": Kind(rejected("UNKNOWN_LINE")),
    "over_refund": Kind(rejected("OVER_REFUND")),
    "unknown_order": Kind(Fate("held", "UNKNOWN_ORDER")),
    # Credit note release / cancel and return update: the same, for the verbs added later.
    "note_without_number": Kind(dead("SchemaValidation")),
    "note_of_unknown_order": Kind(Fate("held", "UNKNOWN_ORDER")),
    "tracking_not_text": Kind(dead("SchemaValidation")),
    # Exchanges: one without its new SKU, one of a line the order does not have.
    "exchange_without_sku": Kind(dead("SchemaValidation")),
    "exchange_of_unknown_line": Kind(rejected("UNKNOWN_LINE")),
    # Valid after all: what real (Magento) producers send. Each is a create of an order of its own with
    # a SKU of its own, so it emits a stock adjustment and changes nothing any other record depends on.
    "plain_order": Kind(APPLIED, valid=True),
    "null_optional": Kind(APPLIED, valid=True),
    "numeric_strings": Kind(APPLIED, valid=True),
    "empty_list_object": Kind(APPLIED, valid=True),
    "extra_members": Kind(APPLIED, valid=True),
    # Today's schemas dead-letter these (SchemaValidation); the contract takes them.
    "decimal_quantity": Kind(APPLIED, valid=True),
    "empty_string": Kind(APPLIED, valid=True),
    "null_unread_required": Kind(APPLIED, valid=True),
    # The poison pill (issue 31): three schema-valid messages of one order at the size the contract
    # allows (an order of 1,000 lines, its shipment, a return of all 1,000 lines) would grow the stored
    # order past one record (OMS_MAX_RECORD_BYTES): its changelog write failed and the worker exited,
    # again at each restart. The message that would take it past is refused, the order kept as it was.
    "poison_create": Kind(APPLIED, generated=False),
    "poison_shipment": Kind(APPLIED, generated=False),
    "poison_return": Kind(rejected("ORDER_TOO_LARGE"), generated=False),
}
GENERATED = [name for name, kind in KINDS.items() if kind.generated]
READY = [name for name in GENERATED if not KINDS[name].pending]
POISON_LINES = 1000
RAW = ("invalid_utf8", "truncated_json", "garbage_text", "deep_nesting", "oversized", "not_an_object")


def _envelope(name: str, message_id: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": message_id, "method": name, "params": params}


def _order(number: int) -> dict[str, Any]:
    """An order of its own (id, SKU and source unique to the record) with one physical line."""
    return {
        "order": {
            "id": f"H{number}",
            "store": "OCTO",
            "ip": "203.0.113.9",
            "language": "en_AU",
            "vat_country": "AU",
            "origin": "WEB",
            "origin_date": "2026-11-01T09:00:00Z",
            "customer": {"id": f"C{number}", "type": "guest"},
            "addresses": [
                {
                    "reference": "B1",
                    "address_type": "billing",
                    "first_name": "A",
                    "last_name": "B",
                    "address1": "1 Street",
                    "city": "Town",
                    "country_code": "AU",
                    "state": "VIC",
                }
            ],
            "payments": [
                {
                    "reference": "PAY",
                    "currency": "AUD",
                    "transactions": [
                        {
                            "payment_method": "CARD",
                            "amount": 11.0,
                            "gateway_information": {
                                "gateway_id": "stripe",
                                "account": "acct",
                                "transaction_id": f"ch_{number}",
                            },
                            "billing_address_reference": "B1",
                        }
                    ],
                }
            ],
            "lines": [
                {
                    "id": "L1",
                    "line_number": 1,
                    "product_type": "PHYSICAL",
                    "sku": f"HSKU-{number}",
                    "quantity": 1,
                    "source_location": "HOSTILE",
                    "shipping_address_reference": "B1",
                    "payment_reference": "PAY",
                    "amount": {
                        "net_amount": 10.0,
                        "gross_amount": 11.0,
                        "tax_amount": 1.0,
                        "tax_rate": 10,
                        "taxes": [{"type": "VAT", "amount": 1.0, "rate": 10}],
                        "currency": "AUD",
                    },
                }
            ],
        }
    }


def _appeasement(order_id: str, line_number: Any, amount: Any) -> dict[str, Any]:
    line = {"line_number": line_number, "amount": amount, "reason": "R", "reason_description": "hostile"}
    return {"appeasement": {"sales_channel_id": "OCTO", "order_id": order_id, "user": "h", "lines": [line]}}


def _raw(rng: random.Random, kind: str, oversize: int) -> str:
    if kind == "invalid_utf8":  # 0xFF is never valid in UTF-8; written with surrogateescape
        return "\udcff" + "".join(chr(rng.randrange(0xDC80, 0xDD00)) for _ in range(rng.randrange(0, 64)))
    if kind == "truncated_json":
        return '{"order": {"id": "' + "x" * rng.randrange(0, 40)
    if kind == "garbage_text":  # "~" never starts a JSON text
        return "~" + "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(0, 200)))
    if kind == "deep_nesting":
        depth = rng.randrange(1200, 5000)
        return "[" * depth + "]" * depth
    if kind == "oversized":
        return json.dumps({"padding": "y" * (oversize + rng.randrange(10))})
    assert kind == "not_an_object", kind
    return json.dumps(rng.choice([[1, 2], "text", 42, None, True]))


def _mutated_order(rng: random.Random, kind: str, number: int) -> dict[str, Any]:
    """The order of its own, changed the way `kind` says."""
    params = _order(number)
    order = params["order"]
    line = order["lines"][0]
    gateway = order["payments"][0]["transactions"][0]["gateway_information"]
    if kind == "missing_order_id":
        del order["id"]
    elif kind == "null_line_number":
        line["line_number"] = None
    elif kind == "non_numeric_amount":
        line["amount"]["gross_amount"] = rng.choice(["not-a-number", "12,50", "", "NaN"])
    elif kind == "negative_amount":
        line["amount"]["gross_amount"] = rng.choice([-11.0, "-11.00"])
    elif kind == "non_integral_quantity":
        line["quantity"] = rng.choice([1.5, "1.5", "0.25"])
    elif kind == "absurd_quantity":
        line["quantity"] = 10**12
    elif kind == "huge_string":
        line["sku"] = "x" * 5000
    elif kind == "wrong_structure":
        order["lines"] = rng.choice([{"nested": []}, "L1", 7])
    elif kind == "null_optional":
        order["language"] = None
        order["customer"]["type"] = None
        order["addresses"][0]["state"] = None
        line["product_name"] = None
    elif kind == "numeric_strings":
        line["line_number"] = "1"
        line["quantity"] = "1"
        line["amount"].update(net_amount="10.00", gross_amount="11.00", tax_amount="1.00", tax_rate="10")
        line["amount"]["taxes"][0].update(amount="1.00", rate="10")
        order["payments"][0]["transactions"][0]["amount"] = "11.00"
    elif kind == "empty_list_object":
        line["promotions_info"] = []
    elif kind == "extra_members":
        order["addresses"][0]["custom_attributes"] = [{"name": "n", "value": "v", "attribute_code": "n"}]
        order["extension_attributes"] = {"channel": "magento"}
        line["weight"] = "1.0000"
    elif kind == "decimal_quantity":
        line["quantity"] = "1.0000"
    elif kind == "empty_string":
        order["customer"]["type"] = ""
        order["original_order_id"] = ""
    elif kind == "null_unread_required":
        order["payments"][0]["transactions"][0]["payment_method"] = "checkmo"
        gateway.update(account=None, transaction_id=None)
    else:
        assert kind == "plain_order", kind
    return params


def make_record(rng: random.Random, kind: str, number: int, valid: list[Record], oversize: int) -> Record:
    """Record `number` of `kind`: its message id is `h-<number>`, and the header `hostile.record`
    carries the number back in a dead letter."""
    headers = {"hostile.record": str(number), "hostile.kind": kind}
    message_id = f"h-{number}"
    if kind in RAW:
        return {"topic": rng.choice(valid)["topic"], "headers": headers, "value": _raw(rng, kind, oversize)}
    if kind == "unknown_message":
        source = rng.choice(valid)["value"]
        value = {**source, "id": message_id, "method": "magento.postsales.teleport"}
        return {"topic": names.ORDER_CREATE, "headers": headers, "value": value}
    if kind == "method_topic_mismatch":
        params = _appeasement("1234", 1, "1.00")
        return {
            "topic": names.RETURN_REQUEST,
            "headers": headers,
            "value": _envelope(names.APPEASEMENT_CREATE, message_id, params),
        }
    if kind == "unknown_enum":
        refund = next(r for r in valid if r["value"]["method"] == names.REFUND_CREATE)["value"]["params"]
        params = copy.deepcopy(refund)
        params["refund"]["refund_mode"] = "TELEPORT"
        return {
            "topic": names.REFUND_CREATE,
            "headers": headers,
            "value": _envelope(names.REFUND_CREATE, message_id, params),
        }
    if kind in ("note_without_number", "note_of_unknown_order"):
        name = names.REFUND_RELEASE if kind == "note_without_number" else names.REFUND_CANCEL
        note: dict[str, Any] = {"sales_channel_id": "OCTO", "order_id": "1234", "user": "h"}
        if kind == "note_of_unknown_order":
            note.update(order_id=f"nope-{number}", credit_note_number="CN-OCTO-0-000001")
        return {"topic": name, "headers": headers, "value": _envelope(name, message_id, note)}
    if kind == "tracking_not_text":
        header = {"sales_channel_id": "OCTO", "order_id": "1234", "source_id": "OCTO-STORE"}
        params = {"return": {**header, "return_tracking_number": 1234567}}
        return {
            "topic": names.RETURN_UPDATE,
            "headers": headers,
            "value": _envelope(names.RETURN_UPDATE, message_id, params),
        }
    if kind in ("exchange_without_sku", "exchange_of_unknown_line"):
        swap: dict[str, Any] = {"line_number": 77, "new_sku": f"H-{number}"}
        if kind == "exchange_without_sku":
            swap = {"line_number": 1}
        params = {"exchange": {"sales_channel_id": "OCTO", "order_id": "1234", "lines": [swap]}}
        return {
            "topic": names.EXCHANGE_CREATE,
            "headers": headers,
            "value": _envelope(names.EXCHANGE_CREATE, message_id, params),
        }
    if kind in ("unknown_line", "over_refund", "unknown_order"):
        params = {
            "unknown_line": lambda: _appeasement("1234", 77, "1.00"),
            "over_refund": lambda: _appeasement("1234", 1, "99999.00"),
            "unknown_order": lambda: _appeasement(f"nope-{number}", 1, "1.00"),
        }[kind]()
        return {
            "topic": names.APPEASEMENT_CREATE,
            "headers": headers,
            "value": _envelope(names.APPEASEMENT_CREATE, message_id, params),
        }
    params = _mutated_order(rng, kind, number)
    return {
        "topic": names.ORDER_CREATE,
        "headers": headers,
        "value": _envelope(names.ORDER_CREATE, message_id, params),
    }


def poison_pill(first: int, lines: int = POISON_LINES) -> list[Record]:
    """Records `first`, `first` + 1 and `first` + 2: an order of `lines` lines (the schema's most), its
    shipment and a return authorize of every line. At 1,000 lines the order as stored after the three
    would be larger than the default OMS_MAX_RECORD_BYTES (1,000,000)."""
    order = _order(first)["order"]
    template = order["lines"][0]
    order["lines"] = [
        {**template, "id": f"L{n}", "line_number": n, "sku": f"P{n}"} for n in range(1, lines + 1)
    ]
    numbers = list(range(1, lines + 1))
    shipment = {
        "store_id": "OCTO",
        "order_id": order["id"],
        "source_id": "HOSTILE",
        "method": "standard",
        "items": [{"order_line_id": f"L{n}", "order_line_number": n, "quantity": 1} for n in numbers],
        "packages": [{"id": "PK1", "items": numbers}],
    }
    ret = {
        "sales_channel_id": "OCTO",
        "order_id": order["id"],
        "source_id": "HOSTILE",
        "user": "h",
        "lines": [
            {
                "id": f"L{n}",
                "line_number": n,
                "sku": f"P{n}",
                "reason": "R",
                "reason_description": "hostile",
                "condition": "GOOD",
            }
            for n in numbers
        ],
    }
    sequence = [
        ("poison_create", names.ORDER_CREATE, {"order": order}),
        ("poison_shipment", names.SHIPMENT_DONE, {"shipment": shipment}),
        ("poison_return", names.RETURN_AUTHORIZE, {"return": ret}),
    ]
    return [
        {
            "topic": name,
            "headers": {"hostile.record": str(first + index), "hostile.kind": kind},
            "value": _envelope(name, f"h-{first + index}", params),
        }
        for index, (kind, name, params) in enumerate(sequence)
    ]


def poison_log(first: int = 1_000_000) -> list[Record]:
    """The poison pill, then the example log (ordinary traffic), stamped a second apart."""
    log = [json.loads(line) for line in LOG.read_text().splitlines()]
    mixed = [*poison_pill(first), *log]
    for offset, record in enumerate(mixed):
        record["timestamp"] = 1_793_523_600_000 + offset * 1000
    return mixed


def _valid(log: list[Record]) -> list[Record]:
    return [r for r in log if isinstance(r["value"], dict) and "jsonrpc" in r["value"]]


def hostile_log(
    count: int, seed: int, oversize: int = 1_048_577, kinds: list[str] | None = None
) -> list[Record]:
    """The example log with `count` generated records of `kinds` (default: every kind whose fate today's
    code already gives) spread through it. `oversize`: the size of the payloads meant to exceed the
    worker's record limit."""
    rng = random.Random(seed)
    log = [json.loads(line) for line in LOG.read_text().splitlines()]
    chosen = kinds if kinds is not None else READY
    valid = _valid(log)
    # Every kind as evenly as the count allows, in a random order.
    sequence = (chosen * (count // len(chosen) + 1))[:count]
    rng.shuffle(sequence)
    bad = [make_record(rng, kind, number, valid, oversize) for number, kind in enumerate(sequence)]
    mixed: list[Record] = []
    spacing = max(1, len(bad) // (len(log) + 1))
    for index, record in enumerate(log):
        mixed.extend(bad[index * spacing : (index + 1) * spacing])
        mixed.append(record)
    mixed.extend(bad[len(log) * spacing :])
    for offset, record in enumerate(mixed):
        record["timestamp"] = 1_793_523_600_000 + offset * 1000
    return mixed


def labels(records: list[Record]) -> dict[int, str]:
    """Record number -> kind, for the generated records of a log."""
    return {
        int(r["headers"]["hostile.record"]): r["headers"]["hostile.kind"]
        for r in records
        if "hostile.record" in r.get("headers", {})
    }


def observed(outputs: list[Record], dlq_topic: str, error_topic: str) -> dict[int, Fate]:
    """The fate of each generated record as its outputs show it: a dead letter carries the record's
    headers back, every other output names the message that caused it (`correlation_id`)."""
    fates: dict[int, Fate] = {}
    for record in outputs:
        headers = record["headers"]
        if record["topic"] == dlq_topic:
            if "hostile.record" in headers:
                fates[int(headers["hostile.record"])] = dead(headers["dlq.error.class"])
            continue
        cause = headers.get("correlation_id", "")
        if not cause.startswith("h-"):
            continue
        number = int(cause.removeprefix("h-"))
        if record["topic"] == error_topic:
            fates[number] = rejected(record["value"]["params"]["code"])
        else:
            fates.setdefault(number, APPLIED)
    return fates


def fate_mismatches(
    records: list[Record], outputs: list[Record], dlq_topic: str, error_topic: str, settled: bool
) -> list[str]:
    """Every generated record whose outputs disagree with the fate its kind has in KINDS. `settled`:
    whether held messages have reached their deadline (replay at the end of its input) or not (a live
    run well within the hold time, where a held message emits nothing)."""
    seen = observed(outputs, dlq_topic, error_topic)
    problems = []
    for number, kind in sorted(labels(records).items()):
        want = KINDS[kind].fate
        if want.outcome == "held":
            want = rejected(want.detail) if settled else Fate("held")
        have = seen.get(number, Fate("held"))  # nothing emitted: still waiting for its order
        if have != want:
            problems.append(f"record {number} ({kind}): {have}, expected {want}")
    return problems


def kind_counts(records: list[Record]) -> tuple[int, int]:
    """(hostile, valid after all) among the generated records."""
    found = Counter(KINDS[kind].valid for kind in labels(records).values())
    return found[False], found[True]


def write_log(records: list[Record], path: Path) -> None:
    with path.open("w", encoding="utf-8", errors="surrogateescape") as out:
        out.writelines(json.dumps(record) + "\n" for record in records)


def barriers(log: Path, rules: Path | None, partitions: int, max_record_bytes: int) -> list[bool]:
    """For each record of the log, whether it must wait until everything before it was handled.

    Kafka keeps order per partition and topic only. A record that replay dead-letters touches no state,
    so its place does not matter; a record that touches state must not overtake, or be overtaken by,
    another pending one of its partition on another topic (credit notes are numbered per store and
    partition), nor one that moves the same stock item (the levels after each movement would
    interleave otherwise than in replay)."""
    pipeline = Pipeline(load_rules(rules), max_record_bytes=max_record_bytes, partitions=partitions)
    with log.open(encoding="utf-8", errors="surrogateescape") as lines:
        records = keyed(list(read_records(lines, str(log))), pipeline)
    flags: list[bool] = []
    # Touching state, published since the last barrier: partition, topic, stock items moved.
    pending: list[tuple[int | None, str, set[str]]] = []
    for record in records:
        processed = pipeline.process(record)
        pipeline.store(processed)
        if processed.status == "dead_letter":
            flags.append(False)
            continue
        where = partition_for(record.key, partitions) if record.key is not None else None
        moves = {movement.key for movement in processed.movements}
        clash = any(
            (moves & other_moves) or where is None or at is None or (at == where and topic != record.topic)
            for at, topic, other_moves in pending
        )
        flags.append(clash)
        pending = [*([] if clash else pending), (where, record.topic, moves)]
    return flags


@dataclass
class LiveRun:
    settings: Settings
    found: Collected
    expected: list[dict[str, Any]]
    waits: int
    ready: bool
    handled: int
    exit_code: int | None


def outputs_of(settings: Settings) -> list[str]:
    return [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]


def through_worker(
    broker: LocalBroker,
    records: list[Record],
    workdir: Path,
    timeout: float,
    *,
    max_record_bytes: int = LIVE_LIMIT,
    store: str = "memory://",
) -> LiveRun:
    """The records through a live worker on `broker`, published with the waits `barriers` asks for;
    the outputs are read until every topic holds what replay predicts, then up to the end offsets.
    `max_record_bytes`: the worker's OMS_MAX_RECORD_BYTES; `store`: its OMS_STORE."""
    log = workdir / "hostile.jsonl"
    write_log(records, log)
    # replay's expectation leaves held messages held; a long run must not see a reorder window end
    # (the worker's ticks would then settle what replay keeps waiting).
    rules = workdir / "rules.toml"
    rules.write_text(
        RULES.read_text().replace("[defaults]\n", "[defaults]\nreorder_window_seconds = 86400\n", 1)
    )
    env, settings = isolated(
        broker.bootstrap, workdir, rules, "h", OMS_MAX_RECORD_BYTES=str(max_record_bytes), OMS_STORE=store
    )
    flags = barriers(log, rules, settings.partitions, max_record_bytes)
    worker = WorkerProcess(env, workdir / "worker.log").start()
    try:
        worker.wait_ready()
        _, expected = through_kafka(
            settings, worker, log, rules, timeout=timeout, barrier=lambda n: flags[n - 1]
        )
        want = Counter(r["topic"] for r in expected)
        found = Collected(asyncio.run(read_counts(settings, outputs_of(settings), want, timeout)))
        ready, handled = worker.get("/ready")[0] == 200, worker.handled()
    finally:
        code = worker.stop()
    return LiveRun(settings, found, expected, sum(flags), ready, handled, code)


def live(
    bad: int, seed: int, workdir: Path, kinds: list[str], *, poison: bool = False, store: str = "memory://"
) -> int:
    """The hostile log through a live worker on a local broker: every generated record's fate as its
    kind says, and every output equal to replay's. `poison`: the poison pill and the example log
    instead, at the default record limit."""
    workdir.mkdir(parents=True, exist_ok=True)
    configure("ERROR")  # the in-process replays stay quiet; the worker logs to its own file
    if poison:
        records, limit = poison_log(), Settings().max_record_bytes
        bad = len(labels(records))
    else:
        records, limit = hostile_log(bad, seed, oversize=LIVE_LIMIT + 1, kinds=kinds), LIVE_LIMIT
    started = time.monotonic()
    with LocalBroker(log_dir=workdir) as broker:
        run = through_worker(broker, records, workdir, timeout=600, max_record_bytes=limit, store=store)
    dlq, found = run.settings.dlq_topic, run.found.records
    error_topic = run.settings.topic_for(names.ERROR_NOTIFY)
    dead = Counter(r["headers"]["dlq.error.class"] for r in found if r["topic"] == dlq)
    rejections = sum(1 for r in found if r["topic"] == error_topic)
    same = normalised(found, dlq) == normalised(run.expected, dlq) and len(found) == len(run.expected)
    wrong = fate_mismatches(records, found, dlq, error_topic, settled=False)
    hostile, valid = kind_counts(records)
    fates = Counter(str(KINDS[kind].fate) for kind in labels(records).values())
    print(f"store {store}, OMS_MAX_RECORD_BYTES {limit}")
    print(
        f"{len(records)} records: {len(records) - bad} of the example log, {valid} generated valid "
        f"after all (Magento shapes, applied), {hostile} hostile; {run.handled} handled, {run.waits} waits"
    )
    print(f"expected fates: {', '.join(f'{k} {v}' for k, v in sorted(fates.items()))}")
    print(
        f"{len(found)} outputs of {len(run.expected)} expected, "
        f"{'equal to' if same else 'DIFFERENT from'} replay; {sum(dead.values())} dead letters "
        f"({', '.join(f'{k} {v}' for k, v in dead.most_common())}), {rejections} rejections; "
        f"{bad - len(wrong)} of {bad} generated records met their kind's fate; "
        f"worker ready at the end: {run.ready}, exit {run.exit_code}; {time.monotonic() - started:.0f}s"
    )
    for problem in wrong[:20]:
        print(f"  {problem}")
    ok = same and not wrong and run.ready and run.exit_code == 0 and run.handled == len(records)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bad", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write the log here (replay JSONL)")
    parser.add_argument("--live", type=Path, metavar="WORKDIR", help="run it through a live worker")
    parser.add_argument(
        "--all-kinds",
        action="store_true",
        help="also the kinds marked pending in KINDS (today's code does not give their fate yet)",
    )
    parser.add_argument(
        "--poison-pill",
        action="store_true",
        help="live: an order of 1,000 lines, its shipment and a 1,000-line return, then the example log, "
        "at the default record limit",
    )
    parser.add_argument("--store", default="memory://", help="live: the worker's OMS_STORE")
    args = parser.parse_args()
    kinds = GENERATED if args.all_kinds else READY
    if args.live is not None:
        return live(args.bad, args.seed, args.live, kinds, poison=args.poison_pill, store=args.store)
    if args.out is None:
        parser.error("--out or --live is needed")
    records = hostile_log(args.bad, args.seed, kinds=kinds)
    write_log(records, args.out)
    hostile, valid = kind_counts(records)
    print(f"{len(records)} records ({hostile} hostile, {valid} valid after all) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
