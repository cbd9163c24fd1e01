"""The offline toolbox verbs through the CLI: preview on a replay --state folder, the refund report on a
replay output file, and one-line errors (exit 2) for misuse."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from workers.replay.runner import load_state, save_state

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def _state_content(folder: Path) -> dict[str, dict[str, str]]:
    """What a --state folder holds, store by store (its database files change when merely opened)."""
    stores = load_state(folder)
    try:
        return {
            name: {key: repr(value) for key, value in getattr(stores, name).items()}
            for name in ("orders", "stock", "series", "source_skus", "taken", "upstream")
        }
    finally:
        save_state(folder, stores)


def test_preview_on_a_state_folder_equals_what_replay_then_emits(tmp_path: Path) -> None:
    lines = LOG.read_text().splitlines()
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(lines[:3]) + "\n")
    item = json.loads(lines[3])
    assert item["value"]["method"].endswith("return_management.authorize")
    message = tmp_path / "return.json"
    message.write_text(json.dumps(item["value"]))
    state = tmp_path / "state"
    assert (
        cli("replay", str(first), "--rules", str(RULES), "--state", str(state), "-o", "/dev/null").returncode
        == 0
    )
    saved = _state_content(state)

    done = cli(
        "preview", str(message), "--state", str(state), "--rules", str(RULES), "--at", "2026-11-01T09:04:00Z"
    )
    assert done.returncode == 0, done.stderr
    preview = json.loads(done.stdout)
    assert _state_content(state) == saved  # nothing written

    rest = tmp_path / "rest.jsonl"
    rest.write_text(json.dumps({**item, "timestamp": "2026-11-01T09:04:00Z"}) + "\n")
    out = tmp_path / "out.jsonl"
    assert (
        cli("replay", str(rest), "--rules", str(RULES), "--state", str(state), "-o", str(out)).returncode == 0
    )
    (refund,) = [
        json.loads(line)["value"]["params"]["refund"]
        for line in out.read_text().splitlines()
        if "refund_management.updated" in line
    ]
    (note,) = preview["credit_notes"]
    assert note.pop("credit_note_number_provisional") is True
    assert note == refund and preview["totals"]["gross"] == refund["totals"]["cost_gross"]


def test_report_on_a_replay_output_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert cli("replay", str(LOG), "--rules", str(RULES), "-o", str(out)).returncode == 0
    published = [
        json.loads(line)["value"]["params"]["refund"]
        for line in out.read_text().splitlines()
        if '"magento.postsales.refund_management.updated"' in line and '"method"' in line
    ]
    # A note published again with a new status counts once, as it stands last; a cancelled one not at all.
    latest = {(n["store_id"], n["credit_note_number"]): n for n in published}
    notes = [n for n in latest.values() if n["status"]["code"] != "CANCELLED"]
    assert len(notes) < len(published)  # the example log releases one note and cancels another
    done = cli("report", "refunds", "--input", str(out), "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert sum(Decimal(r["gross"]) for r in rows if r["kind"] == "total") == sum(
        Decimal(n["totals"]["cost_gross"]) for n in notes
    )
    assert sorted(r["credit_note_number"] for r in rows if r["kind"] == "note") == sorted(
        n["credit_note_number"] for n in notes
    )
    store = notes[0]["store_id"]
    only = json.loads(
        cli("report", "refunds", "--input", str(out), "--format", "json", "--store", store).stdout
    )
    assert {n["store"] for n in only["notes"]} == {store}


def test_misuse_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bare = tmp_path / "bare.json"
    bare.write_text('{"appeasement": {}}')
    cases = [
        ("report", "refunds", "--input", str(tmp_path / "missing.jsonl")),
        ("report", "refunds", "--input", str(LOG), "--from", "yesterday"),
        ("report", "refunds", "--input", str(LOG), "--format", "xml"),
        ("preview", str(bare), "--state", str(tmp_path)),
        ("preview", str(bare), "--state", str(tmp_path / "nope")),
        ("dlq", "redrive"),
        ("orders", "show", "no-colon"),
    ]
    for args in cases:
        done = cli(*args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
