"""The operator's toolbox offline: the refund report ties out with the credit notes of a chaos-sized log,
the preview equals what the message then does, order views keep personal data out unless asked, dead
letter re-drive plans, the web exposure rule, and the dashboard's metrics exist."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import SecretStr

from domain import names
from tests.unit.harness import OCTOPUS
from workers.config import logging as oms_logging
from workers.config.rules_file import load_rules
from workers.config.settings import Settings
from workers.engine.codec import dumps, loads
from workers.engine.order_view import order_view
from workers.engine.pipeline import Pipeline
from workers.engine.preview import message_record, preview, preview_pipeline
from workers.engine.stores import Stores
from workers.kafka import metrics
from workers.kafka.topics import inbound_topics, stray_topics
from workers.kafka.web import authorized, exposure_problem
from workers.ops import dlq, report
from workers.ops.reading import Fetched, OpsError, Progress
from workers.replay.runner import read_records, replay

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "oms-postsales.json"
PERSONAL = ("first_name", "last_name", "email", "phone", "address1", "city", "zip")
TOKEN = "unit-token-0123456789abcdef"

from testkit.chaos_traffic import RULES_TOML, chaos_waves  # noqa: E402


@pytest.fixture(scope="module")
def chaos_output(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    oms_logging.configure("ERROR")
    rules = tmp_path_factory.mktemp("chaos") / "rules.toml"
    rules.write_text(RULES_TOML)
    lines = [json.dumps(r) for wave in chaos_waves(3000, seed=5) for r in wave.records]
    out = io.StringIO()
    replay(iter(lines), out, load_rules(rules), partitions=4)
    return out.getvalue().splitlines()


def test_report_totals_tie_out_with_the_credit_notes_of_a_chaos_log(chaos_output: list[str]) -> None:
    # The notes, read here on their own: every amount from its text, summed per group and tax slot.
    published = [
        json.loads(line, parse_float=Decimal)["value"]["params"]["refund"]
        for line in chaos_output
        if f'"method": "{names.REFUND_UPDATED}"' in line or f'"method":"{names.REFUND_UPDATED}"' in line
    ]
    # A note published again (released, cancelled) counts as it stands last; a cancelled one not at all.
    latest = {(n["store_id"], n["credit_note_number"]): n for n in published}
    notes = [n for n in latest.values() if n["status"]["code"] != "CANCELLED"]
    assert len(notes) > 300 and len(latest) < len(published) and len(notes) < len(latest)
    want: dict[tuple[str, ...], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    want_tax: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)
    for note in notes:
        group = (note["store_id"], note["currency"], note["credit_note_date"])
        group += (note["document_type"], note["refund_type"])
        for i, field in enumerate(("cost_gross", "cost_net", "cost_vat")):
            want[group][i] += Decimal(note["totals"][field])
        for line in note["lines"]:
            for part in line["payments"][0]["details"]["vat_detail"]:
                want_tax[(*group, part["type"], part["rate"])] += Decimal(part["amount"])

    built = report.build(report.notes_from_file(chaos_output), None, None)
    assert len(built.notes) == len(notes)
    got = {g.key: [g.gross, g.net, g.tax] for g in built.groups}
    assert got == dict(want)
    got_tax = {(*g.key, *slot): amount for g in built.groups for slot, amount in g.taxes.items()}
    assert got_tax == dict(want_tax)
    assert len({g.key[4] for g in built.groups}) == 3  # return, appeasement and cancellation all there

    # The CSV says the same: its total rows add up to every note, and to its own note rows.
    out = io.StringIO()
    report.write_csv(built, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    all_gross = sum(Decimal(n["totals"]["cost_gross"]) for n in notes)
    assert sum(Decimal(r["gross"]) for r in rows if r["kind"] == "total") == all_gross
    assert sum(Decimal(r["gross"]) for r in rows if r["kind"] == "note") == all_gross
    # Per payment method: every note's money went back to some payment, split tender included.
    assert sum(Decimal(r["gross"]) for r in rows if r["kind"] == "payment") == all_gross
    assert {r["payment_method"] for r in rows if r["kind"] == "payment"} >= {"CARD", "GIFT_CARD"}
    assert sum(Decimal(r["tax"]) for r in rows if r["kind"] == "tax") == sum(
        Decimal(n["totals"]["cost_vat"]) for n in notes
    )


def test_report_filters_dates_and_store_and_counts_a_redelivered_note_once(chaos_output: list[str]) -> None:
    notes = list(report.notes_from_file(chaos_output))
    day = date.fromisoformat(notes[len(notes) // 2].credit_note_date)
    store = notes[0].store
    built = report.build([*notes, notes[0], notes[1]], day, day, store)
    cancelled = {(n.store, n.number) for n in notes if n.status == "CANCELLED"}
    live = {(n.store, n.number) for n in notes} - cancelled
    expected = {
        n.number
        for n in notes
        if n.credit_note_date == day.isoformat() and n.store == store and (n.store, n.number) in live
    }
    assert {n.number for n in built.notes} == expected and len(built.notes) == len(expected)
    # A pending version delivered again after the note's release does not take its place back.
    everything = report.build([*notes, *(n for n in notes if n.status == "PENDINGRELEASE")], None, None)
    assert len(everything.notes) == len(live) and cancelled
    released = {(n.store, n.number) for n in notes if n.status == "RELEASED"}
    assert all(n.status == "RELEASED" for n in everything.notes if (n.store, n.number) in released)


def test_preview_equals_what_each_message_of_the_example_log_then_does() -> None:
    oms_logging.configure("ERROR")
    book = load_rules(RULES)
    stores = Stores()
    pipeline = Pipeline(book, stores=stores, partitions=1)
    kinds = {
        names.RETURN_AUTHORIZE,
        names.RETURN_REQUEST,
        names.RETURN_RECEIVED,
        names.APPEASEMENT_CREATE,
        names.REFUND_CREATE,
        names.REFUND_RELEASE,
        names.REFUND_CANCEL,
    }
    compared = 0
    settled: dict[str, str] = {}
    with LOG.open() as lines:
        records = list(read_records(iter(lines), str(LOG)))
    for record in records:
        try:
            method = loads(record.value).get("method")
        except ValueError:
            method = None  # the log's undecodable records
        if method in kinds:
            before = {key: msgspec.json.encode(order) for key, order in stores.orders.items()}
            looked = preview(preview_pipeline(book, stores, partitions=1), record)
            assert {key: msgspec.json.encode(order) for key, order in stores.orders.items()} == before
        processed = pipeline.process(record)
        pipeline.store(processed)
        pipeline.apply_movements(processed.movements)
        if method in kinds:
            real = [
                loads(r.value)["params"]["refund"]
                for r in processed.records
                if r.headers.get("message_name") == names.REFUND_UPDATED
            ]
            for note in looked["credit_notes"]:
                provisional = note.pop("credit_note_number_provisional")
                if method in (names.REFUND_RELEASE, names.REFUND_CANCEL):
                    # A note settled: not a new number, and money only where a cancel gives it back.
                    assert not provisional
                    sign = "-" if note["status"]["code"] == "CANCELLED" else ""
                    want = sign + note["totals"]["cost_gross"] if sign else "0.00"
                    assert looked["totals"]["gross"] == want
                    settled[note["credit_note_number"]] = note["status"]["code"]
            assert looked["status"] == processed.status and looked["credit_notes"] == real
            compared += len(real)
    # The log's Doshii refund of unshipped units waits for its reorder window (previewed as held).
    assert compared >= 5
    assert sorted(settled.values()) == ["CANCELLED", "RELEASED"]


def test_preview_takes_bare_params_with_a_name_and_shows_rejections() -> None:
    book = load_rules(RULES)
    pipeline = preview_pipeline(book, Stores(), partitions=1)
    params = {"appeasement": {"sales_channel_id": "OCTO", "order_id": "nope", "lines": []}}
    with pytest.raises(ValueError, match="name the message"):
        message_record(params, pipeline.topics)
    record = message_record(params, pipeline.topics, message=names.APPEASEMENT_CREATE, at=datetime.now(UTC))
    looked = preview(pipeline, record)
    assert looked["credit_notes"] == [] and looked["status"] in ("held", "rejected", "dead_letter")


def test_preview_sees_the_upstream_numbers_other_orders_used() -> None:
    """An upstream credit note number already used by another order of the store (same partition) is
    refused DUPLICATE_REFUND by the worker; the preview must say so, not "applied"."""
    book = load_rules(RULES)
    stores = Stores()
    pipeline = Pipeline(book, stores=stores, partitions=1)
    at = datetime(2026, 11, 2, tzinfo=UTC)

    def record(name: str, params: dict[str, Any], message_id: str) -> Any:
        envelope = {"jsonrpc": "2.0", "id": message_id, "method": name, "params": params}
        return message_record(envelope, pipeline.topics, at=at)

    def send(name: str, params: dict[str, Any], message_id: str) -> str:
        processed = pipeline.process(record(name, params, message_id))
        pipeline.store(processed)
        pipeline.apply_movements(processed.movements)
        return processed.status

    def upstream_refund(order_id: str) -> dict[str, Any]:
        line = {
            "order_line": "1",
            "reason_description": "d",
            "payments": [{"ref": "PAY1", "details": {"cost_gross": "5.00"}}],
        }
        return {
            "refund": {
                "client": "shop",
                "order_id": order_id,
                "store_id": "OCTO",
                "status": {"date": "2026-11-05"},
                "refund_mode": "AMOUNT_ONLY",
                "credit_note_number": "UP-7",
                "lines": [line],
            }
        }

    for order_id in ("1234", "5678"):
        params = {**OCTOPUS, "order": {**OCTOPUS["order"], "id": order_id}}
        assert send(names.ORDER_CREATE, params, f"create-{order_id}") == "applied"
    assert send(names.REFUND_CREATE, upstream_refund("1234"), "refund-1") == "applied"
    again = record(names.REFUND_CREATE, upstream_refund("5678"), "refund-2")
    looked = preview(preview_pipeline(book, stores, partitions=1), again)
    assert looked["status"] == "rejected", looked
    assert pipeline.process(again).status == "rejected"


def _personal(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in PERSONAL and isinstance(item, str) and len(item) >= 3:
                found.add(item)
            found |= _personal(item)
    elif isinstance(value, list):
        for item in value:
            found |= _personal(item)
    return found


def test_order_view_has_no_personal_data_unless_asked() -> None:
    oms_logging.configure("ERROR")
    stores = Stores()
    with LOG.open() as lines:
        replay(lines, io.StringIO(), load_rules(RULES), stores=stores)
    personal = _personal([json.loads(line)["value"] for line in LOG.read_text().splitlines()])
    assert personal
    for order in stores.orders.values():
        plain = json.dumps(order_view(order))
        assert not [p for p in personal if p in plain], order.key
    order = stores.orders["OCTO:1234"]
    view = order_view(order)
    assert view["ledger"]["refunded"] == str(order.refunded_gross) and view["credit_notes"]
    assert all("shipped" in line and "refunded" in line for line in view["lines"])
    full = dumps(order_view(order, with_personal_data=True))
    assert [p for p in personal if p in full]


INBOUND = dlq.Destination(frozenset({"in.topic"}))


def _letter(value: bytes, key: bytes | None = b"OCTO:1", topic: bytes = b"in.topic") -> dlq.DeadLetter:
    headers = [
        ("message_id", b"m-1"),
        ("trace", b"t"),
        ("dlq.error.class", b"SchemaValidation"),
        ("dlq.error.path", b"/params/shipment/source_id"),
        ("dlq.original.topic", topic),
        ("dlq.original.partition", b"3"),
        ("dlq.original.offset", b"17"),
        ("dlq.failed_at", b"2026-11-01T10:00:00Z"),
    ]
    return dlq.DeadLetter(Fetched("oms.dlq", 1, 5, None, key, value, headers))


def test_redrive_plan_fixes_the_value_and_keeps_key_and_headers() -> None:
    letter = _letter(b'{"id":"m-1","params":{"shipment":{"source_id":42}}}')
    assert letter.detail()["value_at_pointer"] == 42
    patch = dlq.load_patch('[{"op":"replace","path":"/params/shipment/source_id","value":"S"}]')
    plan = dlq.plan(letter, patch, "oms.dlq", INBOUND)
    assert plan.topic == "in.topic" and plan.key == b"OCTO:1" and plan.partition is None
    assert loads(plan.value) == {"id": "m-1", "params": {"shipment": {"source_id": "S"}}}
    assert plan.headers == [("message_id", b"m-1"), ("trace", b"t"), ("dlq.redriven", b"oms.dlq:1:5")]
    assert dlq.plan(letter, None, "oms.dlq", INBOUND).value == letter.record.value
    assert dlq.plan(_letter(b"{}", key=None), None, "oms.dlq", INBOUND).partition == 3
    with pytest.raises(OpsError, match="not JSON"):
        dlq.plan(_letter(b"\xff"), patch, "oms.dlq", INBOUND)
    with pytest.raises(OpsError, match="does not apply"):
        dlq.plan(_letter(b"{}"), patch, "oms.dlq", INBOUND)
    with pytest.raises(OpsError, match="RFC 6902"):
        dlq.load_patch('{"op": "replace"}')


@pytest.mark.parametrize(
    "original",
    [
        names.ORDER_UPDATED,  # an output topic
        "oms-postsales-orders-changelog",  # a changelog
        "oms-postsales.inbound",  # the worker's internal topic
        "oms-postsales.dlq",
    ],
)
def test_redrive_goes_only_to_the_inbound_topics_of_the_topic_map(original: str) -> None:
    settings = Settings()
    destination = dlq.Destination.of(settings)
    assert destination.allowed == frozenset(inbound_topics(settings))
    forged = _letter(b"{}", topic=original.encode())
    with pytest.raises(OpsError, match="not an inbound topic"):
        dlq.plan(forged, None, "oms.dlq", destination)
    # To an inbound topic it goes; --to-topic another inbound topic too, with the key's partitioning.
    assert dlq.plan(_letter(b"{}", topic=names.ORDER_CREATE.encode()), None, "d", destination).topic == (
        names.ORDER_CREATE
    )
    moved = dlq.plan(forged, None, "d", dlq.Destination.of(settings, to_topic=names.RETURN_REQUEST))
    assert moved.topic == names.RETURN_REQUEST
    # Another topic only when named and allowed explicitly, and only that one.
    with pytest.raises(OpsError, match="not an inbound topic"):
        dlq.plan(forged, None, "d", dlq.Destination.of(settings, to_topic="elsewhere"))
    anywhere = dlq.Destination.of(settings, to_topic="elsewhere", any_topic=True)
    assert dlq.plan(forged, None, "d", anywhere).topic == "elsewhere"
    with pytest.raises(OpsError, match="--to-topic"):
        dlq.Destination.of(settings, any_topic=True)


def test_redrive_follows_a_prefix_and_a_topic_map() -> None:
    settings = Settings(topic_prefix="acme.", topic_map={names.RETURN_REQUEST: "returns"})
    destination = dlq.Destination.of(settings)
    assert dlq.plan(_letter(b"{}", topic=b"returns"), None, "d", destination).topic == "returns"
    for refused in (names.RETURN_REQUEST, names.ORDER_CREATE, "acme." + names.ORDER_UPDATED):
        with pytest.raises(OpsError):
            dlq.plan(_letter(b"{}", topic=refused.encode()), None, "d", destination)
    assert dlq.plan(_letter(b"{}", topic=b"acme." + names.ORDER_CREATE.encode()), None, "d", destination)


def test_dead_letter_selection() -> None:
    letter = _letter(b"{}")
    assert dlq.Selection(error_class="SchemaValidation", original_topic="in.topic").matches(letter)
    assert not dlq.Selection(error_class="InvalidJson").matches(letter)
    assert dlq.Selection(since=datetime(2026, 11, 1, tzinfo=UTC)).matches(letter)
    assert not dlq.Selection(until=datetime(2026, 11, 1, 10, tzinfo=UTC)).matches(letter)
    assert dlq.Selection(records=frozenset({(1, 5)})).matches(letter)
    assert not dlq.Selection(records=frozenset({(1, 6)})).matches(letter)
    with pytest.raises(OpsError):
        dlq.parse_where("1-5")


def test_a_public_web_host_needs_a_token() -> None:
    assert exposure_problem(Settings(web_host="127.0.0.1")) is None
    assert exposure_problem(Settings(web_host="localhost")) is None
    assert exposure_problem(Settings(web_host="::1")) is None
    problem = exposure_problem(Settings(web_host="0.0.0.0"))
    assert problem is not None and "OMS_API_TOKEN" in problem
    assert exposure_problem(Settings(web_host="0.0.0.0", api_token=SecretStr(TOKEN))) is None
    guarded = Settings(web_host="0.0.0.0", api_token=SecretStr(TOKEN))
    assert authorized(guarded, "Bearer " + TOKEN)
    assert not authorized(guarded, "Bearer " + TOKEN[:-1]) and not authorized(guarded, None)
    assert TOKEN not in json.dumps(guarded.masked())


def _exposed_names() -> set[str]:
    """Every sample name the worker's registry can expose (labelled series included before first use)."""
    suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"]}
    exposed = set()
    for family in metrics.REGISTRY.collect():
        exposed.add(family.name)
        exposed.update(family.name + suffix for suffix in suffixes.get(family.type, []))
        exposed.update(sample.name for sample in family.samples)
    return exposed


def test_every_dashboard_panel_reads_metrics_the_worker_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exposed = _exposed_names()
    assert {
        "oms_build_info",
        "oms_delivery_retries_total",
        "process_cpu_seconds_total",
        "python_info",
    } <= exposed
    titles = []
    for panel in dashboard["panels"]:
        titles.append(panel["title"].lower())
        exprs = [target["expr"] for target in panel["targets"]]
        assert exprs, panel["title"]
        for expr in exprs:
            used = set(re.findall(r"\b((?:oms|process|python)_[a-z_]+)\b", expr))
            assert used and used <= exposed, (panel["title"], used - exposed)
    for wanted in ("outcome", "dead letter", "rejection", "processing", "lag", "ready"):
        assert any(wanted in title for title in titles), wanted


def test_lag_help_says_what_it_measures() -> None:
    (family,) = [f for f in metrics.REGISTRY.collect() if f.name == "oms_consumer_lag"]
    assert "high-water mark minus the consumer's position" in family.documentation


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_only() -> None:
    quiet = io.StringIO()
    progress = Progress("re-driving", total=3, stream=quiet)
    progress.advance(3)
    progress.close()
    assert quiet.getvalue() == ""
    terminal = _Terminal()
    progress = Progress("re-driving", total=3, stream=terminal)
    progress.advance(3)
    progress.close()
    assert "re-driving" in terminal.getvalue() and "3/3" in terminal.getvalue()


def test_preview_of_an_exchange_shows_its_child_order_and_the_reservation_it_makes() -> None:
    oms_logging.configure("ERROR")
    book = load_rules(RULES)
    stores = Stores()
    pipeline = Pipeline(book, stores=stores, partitions=1)
    with LOG.open() as lines:
        records = list(read_records(iter(lines), str(LOG)))
    exchange = next(r for r in records if r.topic == names.EXCHANGE_CREATE)
    for record in records[: records.index(exchange)]:
        processed = pipeline.process(record)
        pipeline.store(processed)
        pipeline.apply_movements(processed.movements)
    looked = preview(preview_pipeline(book, stores, partitions=1), exchange)
    assert looked["status"] == "applied" and looked["totals"]["gross"] == "0"
    assert not looked["credit_notes"]
    (child,) = looked["child_orders"]
    assert (child["id"], child["origin"], child["lines"][0]["sku"]) == ("E12346-1", "EX", "24-MB02")
    assert looked["follow_ups"] == [{"message_name": names.ORDER_CREATE, "order_key": "ST1:E12346-1"}]
    reserved = [m for m in looked["restock"] if m["reason"] == "RESERVATION"]
    assert [(m["source_id"], m["sku"], m["reserved_delta"]) for m in reserved] == [("SOU1", "24-MB02", 1)]
    assert [r["lines"][0]["exchange"] for r in looked["returns"]] == [True]
    # Nothing was written: the child is not in state, the original keeps its lines as they were.
    assert "ST1:E12346-1" not in stores.orders
    assert stores.orders["ST1:12346"].lines[1].exchanged == 0


def _bare_letter(value: bytes, headers: list[tuple[str, bytes]]) -> dlq.DeadLetter:
    return dlq.DeadLetter(Fetched("oms.dlq", 0, 1, None, None, value, headers))


def test_dlq_list_gives_the_envelope_id_when_there_is_no_message_id_header() -> None:
    letter = _bare_letter(b'{"jsonrpc": "2.0", "id": "env-7", "method": "m", "params": {}}', [])
    summary = letter.summary()
    assert (summary["message_id"], summary["message_id_from"]) == ("env-7", "envelope")


def test_dlq_list_gives_the_header_when_the_value_has_no_envelope_id() -> None:
    letter = _bare_letter(b'{"order": {}}', [("message_id", b"hdr-1")])
    summary = letter.summary()
    assert (summary["message_id"], summary["message_id_from"]) == ("hdr-1", "header")


def test_dlq_list_gives_the_id_the_worker_uses_when_envelope_and_header_differ() -> None:
    letter = _bare_letter(
        b'{"jsonrpc": "2.0", "id": 42, "method": "m", "params": {}}', [("message_id", b"hdr-1")]
    )
    assert letter.summary()["message_id"] == "42" and letter.summary()["message_id_from"] == "envelope"


def test_dlq_list_gives_the_hash_for_a_record_without_any_id() -> None:
    value = b"\xff\xfe not json"
    summary = _bare_letter(value, []).summary()
    assert summary["message_id"] == "sha256:" + hashlib.sha256(value).hexdigest()
    assert summary["message_id_from"] == "sha256"


def test_stray_topics_are_those_named_like_a_message_that_no_message_maps_to() -> None:
    settings = Settings(topic_prefix="p.", topic_map={names.RETURN_REQUEST: "returns-in"})
    existing = [
        "p.magento.sales.order_management.create",  # the worker's
        "p.magento.sales.order_management.creat",  # misspelt
        "p.magento.postsales.return_management.request",  # mapped elsewhere: nothing reads it
        "magento.sales.order_management.creat",  # another deployment's (no prefix)
        "returns-in",
        "p.oms-postsales.dlq",
    ]
    assert stray_topics(settings, existing) == [
        "p.magento.postsales.return_management.request",
        "p.magento.sales.order_management.creat",
    ]
