"""Rule sets that change mid-log, end to end with the installed CLI: `replay` reads rules records from
its input as the worker reads the rules topic, and `rules publish --dry-run --against` says what a
proposed rule change would do to a log."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain import names
from domain.rule_versions import RuleVersion
from domain.timeutil import EPOCH
from tests.e2e.test_replay_cli import EXAMPLES, run
from workers.config.rules_file import load_rules
from workers.engine.rule_records import RULES_TOPIC, encode

LOG = EXAMPLES / "message-log.jsonl"
RULES = EXAMPLES / "rules.toml"
# ST1:12135's reshipment is dated 1793524320000 ms, its return request (which brings the shipping line
# along under `shipping_refund_rule`) 1793524380000, and the receipt that refunds it after.
BETWEEN = datetime.fromtimestamp(1793524350, UTC)


def _changed_rules(tmp_path: Path, old: str, new: str) -> Path:
    text = RULES.read_text(encoding="utf-8")
    assert old in text
    changed = tmp_path / "changed.toml"
    changed.write_text(text.replace(old, new, 1), encoding="utf-8")
    return changed


ST1_NEVER = ('shipping_refund_rule = "onFirst"', 'shipping_refund_rule = "never"')


def _rules_line(found: RuleVersion, timestamp_ms: int) -> str:
    record = encode(found, RULES_TOPIC)
    return json.dumps(
        {
            "topic": record.topic,
            "key": record.key,
            "timestamp": timestamp_ms,
            "value": json.loads(record.value),
        }
    )


def _replay(log: Path, rules: Path, out: Path) -> list[dict[str, Any]]:
    done = run("replay", str(log), "--rules", str(rules), "--partitions", "4", "-o", str(out))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def _notes(records: list[dict[str, Any]]) -> dict[str, tuple[Decimal, str | None]]:
    """Each credit note's first publication: gross amount and the rule set it names."""
    found: dict[str, tuple[Decimal, str | None]] = {}
    for record in records:
        if record["topic"] == names.REFUND_UPDATED:
            params = record["value"]["params"]
            refund = params["refund"]
            found.setdefault(
                refund["credit_note_number"],
                (Decimal(refund["totals"]["cost_gross"]), params.get("rules_version")),
            )
    return found


def test_a_rules_record_in_the_log_decides_the_messages_dated_from_its_effective_from(tmp_path: Path) -> None:
    changed = _changed_rules(tmp_path, *ST1_NEVER)
    new = RuleVersion("ST1", 2, BETWEEN, load_rules(changed).sales_channels["ST1"])
    lines = LOG.read_text().splitlines()
    # Published (record time) before the reshipment; effective only from between it and the request.
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join([*lines[:12], _rules_line(new, 1793524300000), *lines[12:]]) + "\n")
    outputs = _replay(log, RULES, tmp_path / "out.jsonl")
    old_all = _notes(_replay(LOG, RULES, tmp_path / "old.jsonl"))
    new_all = _notes(_replay(LOG, changed, tmp_path / "new.jsonl"))
    mixed = _notes(outputs)
    # The return's note is ST1@2's: shipping is no longer refunded; what came before is ST1@1's.
    assert mixed["CN-ST1-0-000001"] == (new_all["CN-ST1-0-000001"][0], "ST1@2")
    assert new_all["CN-ST1-0-000001"][0] < old_all["CN-ST1-0-000001"][0]
    assert mixed["CN-OCTO-2-000001"] == (old_all["CN-OCTO-2-000001"][0], "OCTO@1")
    returns = [
        r["value"]["params"]
        for r in outputs
        if r["topic"] == names.RETURN_UPDATED and r["key"] == "ST1:12135"
    ]
    # The reshipment's return (closed at once) and its child order, then the requested return.
    assert [(p["return"]["status"]["code"], p["rules_version"]) for p in returns][:2] == [
        ("CLOSED", "ST1@1"),
        ("REQUESTED", "ST1@2"),
    ]
    child = [r["value"]["params"] for r in outputs if r["topic"] == names.ORDER_CREATED]
    assert child and child[0]["rules_version"] == "ST1@1"


def test_a_bad_rules_record_in_the_log_is_dead_lettered_and_the_rules_stay(tmp_path: Path) -> None:
    lines = LOG.read_text().splitlines()
    bad = {
        "topic": RULES_TOPIC,
        "key": "ST1@2",
        "timestamp": 1793524300000,
        "value": {"sales_channel": "ST1"},
    }
    older = RuleVersion("ST1", 1, EPOCH, load_rules(RULES).sales_channels["ST1"])
    log = tmp_path / "log.jsonl"
    # Its own version 1 again (a worker's start-up publication of the same file) is no change.
    log.write_text(
        "\n".join([_rules_line(older, 1793523600000), *lines[:12], json.dumps(bad), *lines[12:]]) + "\n"
    )
    outputs = _replay(log, RULES, tmp_path / "out.jsonl")
    dead = [r for r in outputs if r["topic"] == names.DEFAULT_DLQ_TOPIC and r["key"] == "ST1@2"]
    assert len(dead) == 1 and dead[0]["headers"]["dlq.error.class"] == "SchemaValidation"
    assert dead[0]["headers"]["dlq.original.topic"] == RULES_TOPIC
    assert _notes(outputs) == _notes(_replay(LOG, RULES, tmp_path / "plain.jsonl"))


def test_what_if_names_the_notes_whose_amounts_change_and_the_total_as_two_replays_do(tmp_path: Path) -> None:
    changed = _changed_rules(tmp_path, *ST1_NEVER)
    before = _notes(_replay(LOG, RULES, tmp_path / "before.jsonl"))
    after = _notes(_replay(LOG, changed, tmp_path / "after.jsonl"))
    different = sorted(n for n in before if n in after and before[n][0] != after[n][0])
    total = sum((after[n][0] - before[n][0] for n in different), Decimal(0))
    assert different and total < 0
    done = run(
        "rules",
        "publish",
        str(changed),
        "--dry-run",
        "--against",
        str(LOG),
        "--base",
        str(RULES),
        "--partitions",
        "4",
    )
    assert done.returncode == 0, done.stderr
    assert 'shipping_refund_rule: "onFirst" -> "never"' in done.stdout
    st1 = [line for line in done.stdout.splitlines() if line.startswith("ST1:") and "different" in line]
    assert st1 and f"({total:+})" in st1[0] and "different 1;" in st1[0]
    for number in different:
        assert f" {number}: {before[number][0]} -> {after[number][0]}" in done.stdout
    assert "OCTO: no credit note changes" in done.stdout


def test_publish_without_yes_or_dry_run_and_misuse_are_one_line_and_exit_2(tmp_path: Path) -> None:
    changed = _changed_rules(tmp_path, *ST1_NEVER)
    both = run("rules", "publish", str(changed), "--yes", "--dry-run")
    assert both.returncode == 2 and "choose one" in both.stderr
    against = run("rules", "publish", str(changed), "--against", str(LOG))
    assert against.returncode == 2 and "--dry-run" in against.stderr

    def dry_run(*options: str) -> subprocess.CompletedProcess[str]:
        return run("rules", "publish", str(changed), "--dry-run", "--base", str(RULES), *options)

    channel = dry_run("--channel", "NOPE")
    assert channel.returncode == 2 and "NOPE" in channel.stderr
    only = dry_run("--channel", "ST1")
    assert only.returncode == 0 and only.stdout.startswith("ST1@2: effective from")
    past = dry_run("--effective-from", "2020-01-01T00:00:00Z")
    assert past.returncode == 0 and "in the past" in past.stderr
    # The file's version 1 is effective from the start of time: nothing can take effect before it.
    before = dry_run("--effective-from", "1969-12-31T00:00:00Z")
    assert before.returncode == 2 and "before" in before.stderr and "--effective-from" in before.stderr


def test_preview_names_the_rule_set_that_decides_the_message(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = run(
        "replay",
        str(LOG),
        "--rules",
        str(RULES),
        "--partitions",
        "4",
        "--state",
        str(state),
        "-o",
        "/dev/null",
    )
    assert done.returncode == 0, done.stderr
    shown = run(
        "preview",
        str(EXAMPLES / "return.json"),
        "--state",
        str(state),
        "--rules",
        str(RULES),
        "--partitions",
        "4",
    )
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    channel = result["order_key"].split(":", 1)[0]
    assert result["rules_version"] == f"{channel}@1"


def test_the_verbs_without_a_broker_are_one_line_and_exit_2() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMS_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    cli = str(Path(sys.executable).parent / "oms-postsales")
    done = subprocess.run(
        [cli, "rules", "show"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2 and done.stderr.startswith(
        "oms-postsales: error: cannot read the rules topic"
    )
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_log_that_carries_its_own_version_1_replays_by_it_not_by_the_file(tmp_path: Path) -> None:
    changed = _changed_rules(tmp_path, *ST1_NEVER)
    first = RuleVersion("ST1", 1, EPOCH, load_rules(changed).sales_channels["ST1"])
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join([_rules_line(first, 1793523600000), *LOG.read_text().splitlines()]) + "\n")
    outputs = _replay(log, RULES, tmp_path / "out.jsonl")
    assert _notes(outputs) == _notes(_replay(LOG, changed, tmp_path / "changed.jsonl"))
    assert not [r for r in outputs if r["topic"] == names.DEFAULT_DLQ_TOPIC and r["key"] == "ST1@1"]
