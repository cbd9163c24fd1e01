"""`oms-postsales replay` end to end: the installed console script on the bundled examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain import names
from workers.engine.validation import default_validators

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CLI = str(Path(sys.executable).parent / "oms-postsales")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, input=stdin, timeout=120, check=False)


def replay_examples(*extra: str) -> list[dict[str, Any]]:
    done = run("replay", str(EXAMPLES / "message-log.jsonl"), "--rules", str(EXAMPLES / "rules.toml"), *extra)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def outputs() -> list[dict[str, Any]]:
    return replay_examples()


def params(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r["value"]["params"] for r in records if r["topic"] == name]


def test_every_emitted_record_matches_its_schema_and_carries_headers(outputs: list[dict[str, Any]]) -> None:
    validators = default_validators()
    for record in outputs:
        if record["topic"] == names.DEFAULT_DLQ_TOPIC:
            assert validators.check("dead-letter", record) is None
            continue
        envelope = record["value"]
        assert validators.check("jsonrpc-envelope", envelope) is None
        assert validators.check(envelope["method"], envelope["params"]) is None, envelope["method"]
        headers = record["headers"]
        assert headers["message_name"] == envelope["method"] == record["topic"]
        assert headers["message_id"] == envelope["id"]
        assert headers["schema_id"].startswith("https://") and headers["producer"].startswith(
            "oms-postsales/"
        )
        assert headers["correlation_id"] and headers["causation_id"]


def test_the_examples_cover_every_outbound_message(outputs: list[dict[str, Any]]) -> None:
    topics = Counter(record["topic"] for record in outputs)
    for name in (*names.OUTBOUND, names.DEFAULT_DLQ_TOPIC):
        assert topics[name] > 0, name


def test_octopus_watches_refund_and_upstream_number(outputs: list[dict[str, Any]]) -> None:
    refunds = {r["refund"]["credit_note_number"]: r["refund"] for r in params(outputs, names.REFUND_UPDATED)}
    watches = refunds["CN-OCTO-0-000001"]
    assert watches["totals"] == {"cost_gross": "270.60", "cost_net": "246.00", "cost_vat": "24.60"}
    assert refunds["SHOP-RF-1001"]["lines"][0]["restock"] is False
    assert refunds["CN-DOSHII-0-000002"]["standalone"] is True


def test_the_documented_reshipment_and_exchange_ids(outputs: list[dict[str, Any]]) -> None:
    requests = [p["shipment_request"] for p in params(outputs, names.SHIPMENT_REQUESTED)]
    assert [(r["id"], r["origin"]) for r in requests] == [
        ("ST1-R00000548-01", "RE"),
        ("ST1-E12346-1-01", "EX"),
    ]


def test_dead_letters_keep_the_original_text_and_say_why(outputs: list[dict[str, Any]]) -> None:
    dead = [r for r in outputs if r["topic"] == names.DEFAULT_DLQ_TOPIC]
    classes = {r["headers"]["dlq.error.class"]: r for r in dead}
    assert set(classes) == {"InvalidJson", "UnknownMessage", "SchemaValidation"}
    assert classes["InvalidJson"]["value"].startswith('{"return": {"sales_channel_id": "OCTO"')
    schema = classes["SchemaValidation"]["headers"]
    assert schema["dlq.error.path"].startswith("/params/appeasement/lines/0/amount")
    assert schema["dlq.original.partition"] == "0" and schema["dlq.original.offset"].isdigit()


def test_replay_is_deterministic_and_output_file_matches_stdout(
    tmp_path: Path, outputs: list[dict[str, Any]]
) -> None:
    target = tmp_path / "out.jsonl"
    done = run(
        "replay",
        str(EXAMPLES / "message-log.jsonl"),
        "--rules",
        str(EXAMPLES / "rules.toml"),
        "--output",
        str(target),
    )
    assert done.returncode == 0 and done.stdout == ""
    assert [json.loads(line) for line in target.read_text().splitlines()] == outputs
    records = len((EXAMPLES / "message-log.jsonl").read_text().splitlines())
    assert f"replayed {records} records" in done.stderr


def test_state_folder_carries_orders_across_runs(tmp_path: Path) -> None:
    log = (EXAMPLES / "message-log.jsonl").read_text().splitlines(keepends=True)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(log[:3]))  # stock snapshot, Octopus order, shipment
    second.write_text("".join(log[3:4]))  # the watches' return
    state = tmp_path / "state"
    assert (
        run("replay", str(first), "--rules", str(EXAMPLES / "rules.toml"), "--state", str(state)).returncode
        == 0
    )
    done = run("replay", str(second), "--rules", str(EXAMPLES / "rules.toml"), "--state", str(state))
    refunds = [
        json.loads(line)["value"]["params"]["refund"]
        for line in done.stdout.splitlines()
        if names.REFUND_UPDATED in line
    ]
    assert [r["totals"]["cost_gross"] for r in refunds] == ["270.60"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ('[defaults]\nshiping_refund_rule = "onFirst"\n', "defaults.shiping_refund_rule"),
        ('[sales_channels.ST1]\nrefund_on = "sometimes"\n', "sales_channels.ST1.refund_on"),
        ("[defaults\n", "not valid TOML"),
    ],
)
def test_bad_rules_file_is_refused_with_one_line_naming_the_key(
    tmp_path: Path, rules: str, message: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(rules)
    done = run("replay", str(EXAMPLES / "message-log.jsonl"), "--rules", str(path))
    assert done.returncode == 2 and done.stdout == ""
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_unreadable_input_is_one_line_error(tmp_path: Path) -> None:
    missing = run("replay", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"topic": "x", "value": {}}\nnot json\n')
    done = run("replay", str(broken))
    assert done.returncode == 2 and f"{broken}:2" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_hostile_records_become_dead_letters_and_the_run_goes_on(tmp_path: Path) -> None:
    order_topic = names.ORDER_CREATE
    lines = [
        {"topic": order_topic, "value": "\udcff\udcfe not utf-8"},
        {"topic": order_topic, "value": "[" * 5000 + "]" * 5000},
        {"topic": order_topic, "value": {"order": {"id": "1", "store": "S", "lines": "many"}}},
        {"topic": order_topic, "value": "x" * 2_000_000},
        {"topic": "unknown.topic", "value": {"a": 1}},
        {"topic": order_topic, "value": [1, 2, 3]},
        {
            "topic": names.APPEASEMENT_CREATE,
            "value": {
                "appeasement": {
                    "sales_channel_id": "S",
                    "order_id": "1",
                    "user": "u",
                    "lines": [{"line_number": 1, "amount": "abc", "reason": "r", "reason_description": "d"}],
                }
            },
        },
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run("replay", str(path))
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["topic"] for r in out] == [names.DEFAULT_DLQ_TOPIC] * len(lines)
    assert [r["headers"]["dlq.error.class"] for r in out] == [
        "InvalidUtf8",
        "TooDeep",
        "SchemaValidation",
        "PayloadTooLarge",
        "UnknownMessage",
        "InvalidStructure",
        "SchemaValidation",
    ]
    assert out[0]["value"] == lines[0]["value"]


def test_config_show_masks_secrets() -> None:
    env = {
        **os.environ,
        "OMS_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "OMS_SASL_MECHANISM": "PLAIN",
        "OMS_SASL_USERNAME": "svc",
        "OMS_SASL_PASSWORD": "hunter2-very-secret",
    }
    done = subprocess.run(
        [CLI, "config", "show"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["sasl_username"] == "svc" and shown["sasl_password"] == "**********"
    assert "hunter2" not in done.stdout + done.stderr


def test_bad_settings_name_the_variable_not_the_value() -> None:
    env = {**os.environ, "OMS_PARTITIONS": "many", "OMS_SASL_PASSWORD": "hunter2-very-secret"}
    done = subprocess.run(
        [CLI, "config", "show"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 2 and "OMS_PARTITIONS" in done.stderr
    assert "hunter2" not in done.stderr and "many" not in done.stderr


def test_thousands_of_hostile_records_replay_without_a_crash(tmp_path: Path) -> None:
    from testkit.hostile import hostile_log

    records = hostile_log(2000, seed=3)
    path = tmp_path / "hostile.jsonl"
    with path.open("w", encoding="utf-8", errors="surrogateescape") as out:
        out.writelines(json.dumps(record) + "\n" for record in records)
    done = run("replay", str(path), "--rules", str(EXAMPLES / "rules.toml"), "--log-level", "ERROR")
    assert done.returncode == 0, done.stderr[-2000:]
    out = [json.loads(line) for line in done.stdout.splitlines()]
    dead = [r for r in out if r["topic"] == names.DEFAULT_DLQ_TOPIC]
    undecodable = sum(1 for r in records if isinstance(r["value"], str))
    assert len(dead) >= undecodable > 200
    assert all(
        r["headers"]["dlq.error.class"] and r["headers"]["dlq.original.offset"].isdigit() for r in dead
    )
    assert f"replayed {len(records)} records" in done.stderr


def test_every_record_leaves_one_log_line_with_its_ids() -> None:
    done = run(
        "replay",
        str(EXAMPLES / "message-log.jsonl"),
        "--rules",
        str(EXAMPLES / "rules.toml"),
        "--log-level",
        "INFO",
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if '"record.' in line]
    handled = [
        line
        for line in lines
        if line["event"] == "record.handled" and not line.get("settled") and not line.get("follow_up_of")
    ]
    dead = [line for line in lines if line["event"] == "record.dead_letter"]
    records = (EXAMPLES / "message-log.jsonl").read_text().splitlines()
    assert len(handled) + len(dead) == len(records)
    # The exchange's child order: handled right after it, saying which message made it.
    (child,) = [line for line in lines if line.get("follow_up_of")]
    assert (child["follow_up_of"], child["message_type"], child["outcome"]) == (
        "st1-12346-exchange",
        names.ORDER_CREATE,
        "applied",
    )
    assert {line["offset"] for line in handled + dead} == set(range(len(records)))
    applied = [line for line in handled if line["outcome"] == "applied"]
    assert applied and all(line["message_id"] and "topic" in line and "events" in line for line in applied)
    settled = [line for line in lines if line.get("settled")]  # held until a deadline, at the end
    assert settled and all("offset" not in line and line["key"] for line in settled)


def test_a_return_window_refuses_late_returns_and_upstream_refunds_pass_over_it(tmp_path: Path) -> None:
    # The example log's returns of order OCTO:1234 come minutes after its shipment: a window of 0 days
    # has closed for them by then.
    rules = (EXAMPLES / "rules.toml").read_text()
    assert "[sales_channels.OCTO]\n" in rules
    closed = tmp_path / "rules.toml"
    closed.write_text(
        rules.replace("[sales_channels.OCTO]\n", "[sales_channels.OCTO]\nreturn_window_days = 0\n")
    )
    done = run("replay", str(EXAMPLES / "message-log.jsonl"), "--rules", str(closed))
    assert done.returncode == 0, done.stderr
    outputs = [json.loads(line) for line in done.stdout.splitlines()]
    validators = default_validators()
    refused = [p for p in params(outputs, names.ERROR_NOTIFY) if p["code"] == "RETURN_WINDOW_CLOSED"]
    assert refused and all(validators.check(names.ERROR_NOTIFY, p) is None for p in refused)
    # The authorization, and the receipt that then finds no return authorized (a blind one, refused too).
    assert {p["topic"] for p in refused} == {names.RETURN_AUTHORIZE, names.RETURN_RECEIVED}
    explanations = [
        line["explanation"]
        for p in params(outputs, names.REFUND_UPDATED)
        if p["refund"]["refund_type"] != "return"
        for line in p["refund"]["lines"]
    ]
    assert any(text.endswith("passed over: decided upstream") for text in explanations)
    # Without the window, the same log refuses nothing for it.
    plain = replay_examples()
    assert not [p for p in params(plain, names.ERROR_NOTIFY) if p["code"] == "RETURN_WINDOW_CLOSED"]


def test_the_outlet_refuses_a_final_sale_return_and_keeps_its_fees(outputs: list[dict[str, Any]]) -> None:
    # Order OUTLET:5001: a rain jacket, 2 units of 132.00 (12.00 VAT), and a clearance scarf (CLEAR-*).
    refused = [p for p in params(outputs, names.ERROR_NOTIFY) if p["code"] == "FINAL_SALE"]
    assert [p["message"] for p in refused] == [
        'line 2: SKU CLEAR-SCARF-7 is final sale (final_sale_skus "CLEAR-*"): it cannot be returned'
    ]
    (note,) = [
        p["refund"] for p in params(outputs, names.REFUND_UPDATED) if p["refund"]["order_id"] == "5001"
    ]
    got = [
        (line["order_line"], line.get("fee"), line["payments"][0]["details"]["cost_gross"])
        for line in note["lines"]
    ]
    # One jacket back (66.00, 6.00 VAT) for a change of mind: 15 % restocking, 9.90 (VAT 0.90), and the
    # 5.95 label (VAT 5.95 x 5.10 / 56.10 = 0.54): 50.15 back, 4.56 of it VAT.
    assert got == [
        ("1", None, "66.00"),
        ("1", "RESTOCKING_FEE", "-9.90"),
        ("1", "RETURN_SHIPPING_FEE", "-5.95"),
    ]
    assert note["totals"] == {"cost_gross": "50.15", "cost_net": "45.59", "cost_vat": "4.56"}
    orders = [p["order"] for p in params(outputs, names.ORDER_UPDATED) if p["order"]["id"] == "5001"]
    assert orders[-1]["postsales"]["lines"][0]["fees"] == "15.85"


def test_without_the_outlet_rules_the_same_log_refuses_nothing_and_keeps_no_fee(tmp_path: Path) -> None:
    rules = (EXAMPLES / "rules.toml").read_text()
    head, outlet = rules.split("[sales_channels.OUTLET]\n")
    plain = tmp_path / "rules.toml"
    plain.write_text(head + "[sales_channels.OUTLET]\n" + outlet.splitlines()[0] + "\n")
    done = run("replay", str(EXAMPLES / "message-log.jsonl"), "--rules", str(plain))
    assert done.returncode == 0, done.stderr
    outputs = [json.loads(line) for line in done.stdout.splitlines()]
    assert not [p for p in params(outputs, names.ERROR_NOTIFY) if p["code"] == "FINAL_SALE"]
    notes = [p["refund"] for p in params(outputs, names.REFUND_UPDATED) if p["refund"]["order_id"] == "5001"]
    # The scarf, then the jacket, each refunded whole.
    assert [note["totals"]["cost_gross"] for note in notes] == ["22.00", "66.00"]
    assert not [line for note in notes for line in note["lines"] if "fee" in line]


def test_a_multi_year_history_leaves_only_the_orders_of_the_last_retention(tmp_path: Path) -> None:
    # Three years of orders (two a day, shipped, some returned and received), retain_days 30.
    from testkit.growth import history, rules_toml, write_log

    log, rules, state = tmp_path / "years.jsonl", tmp_path / "rules.toml", tmp_path / "state"
    messages = history(3 * 365, 2, seed=3)
    write_log(log, messages)
    rules.write_text(rules_toml(30))
    done = run("replay", str(log), "--rules", str(rules), "--state", str(state), "-o", os.devnull)
    assert done.returncode == 0, done.stderr
    summary = done.stderr.strip().splitlines()[-1]
    left = int(summary.split("; ")[1].split()[0])
    assert f"replayed {len(messages)} records" in summary and "applied=" in summary
    assert "dead_letter" not in summary and "rejected" not in summary
    from workers.replay.disk_stores import DiskStores

    stores = DiskStores(state)
    try:
        kept = list(stores.orders.values())
        taken = list(stores.taken)
    finally:
        stores.close()
    end = messages[-1][2]
    # What stays: orders changed within the last 30 days (+ the sweep's day of grace), or still open.
    assert kept and len(kept) + left == 2 * 3 * 365
    for order in kept:
        changed = datetime.fromisoformat(order.changed_at.replace("Z", "+00:00"))
        open_return = any(ret.is_open for ret in order.returns.values())
        assert open_return or end - changed < timedelta(days=31), order.key
    assert len(kept) < 2 * 40  # about two months of orders, not three years
    assert set(taken) <= {order.key for order in kept}


def test_a_bad_input_leaves_an_existing_output_file_as_it_was(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_text("the previous run\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"topic": "magento.sales.order_management.create", "value": {}}\nnot json\n')
    done = run("replay", str(bad), "-o", str(output))
    assert done.returncode == 2, done.stderr
    assert output.read_text() == "the previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "out.jsonl"]  # no temporary left


def test_a_good_input_replaces_the_output_file_keeping_its_mode(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_text("the previous run\n")
    output.chmod(0o640)
    done = run(
        "replay",
        str(EXAMPLES / "message-log.jsonl"),
        "--rules",
        str(EXAMPLES / "rules.toml"),
        "-o",
        str(output),
    )
    assert done.returncode == 0, done.stderr
    lines = output.read_text().splitlines()
    assert lines and "the previous run" not in lines and json.loads(lines[0])["topic"]
    assert output.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_output_to_dev_null_still_works() -> None:
    done = run(
        "replay",
        str(EXAMPLES / "message-log.jsonl"),
        "--rules",
        str(EXAMPLES / "rules.toml"),
        "-o",
        os.devnull,
    )
    assert done.returncode == 0, done.stderr
    assert Path(os.devnull).exists() and not Path(os.devnull).is_file()


def test_replay_dead_letters_a_message_its_topic_does_not_carry(tmp_path: Path) -> None:
    lines = [json.loads(line) for line in (EXAMPLES / "message-log.jsonl").read_text().splitlines()]
    appeasement = next(
        line
        for line in lines
        if isinstance(line["value"], dict) and line["value"].get("method") == names.APPEASEMENT_CREATE
    )
    smuggled = {**appeasement, "topic": names.RETURN_REQUEST}
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(smuggled) + "\n" + json.dumps(appeasement) + "\n")
    done = run("replay", str(log), "--rules", str(EXAMPLES / "rules.toml"))
    assert done.returncode == 0, done.stderr
    outputs = [json.loads(line) for line in done.stdout.splitlines()]
    dead = [r for r in outputs if r["topic"] == names.DEFAULT_DLQ_TOPIC]
    (dead,) = dead
    assert dead["headers"]["dlq.error.class"] == "MethodTopicMismatch"
    assert dead["headers"]["dlq.original.topic"] == names.RETURN_REQUEST
    # The same message on its own topic is handled: its order is unknown, refused at the end.
    refused = [r for r in outputs if r["topic"] == names.ERROR_NOTIFY]
    assert [r["value"]["params"]["code"] for r in refused] == ["UNKNOWN_ORDER"]
