"""`replay` on long logs: streamed input, state on disk behind bounded caches, the promise that a
broken line emits nothing, one summary count per record, and the wall clock for logs without one."""

from __future__ import annotations

import io
import json
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from domain import names
from domain.rules import parse_rules
from domain.state import OrderState
from domain.timeutil import iso
from testkit.chaos_traffic import RULES_TOML, chaos_waves
from tests.e2e.test_replay_cli import EXAMPLES, run
from workers.config.rules_file import load_rules
from workers.engine.stores import Stores
from workers.replay.disk_stores import DiskStores
from workers.replay.runner import ReplayInputError, replay


@pytest.fixture(scope="module")
def chaos_log() -> str:
    return "".join(json.dumps(r) + "\n" for wave in chaos_waves(1500, seed=3) for r in wave.records)


def _replay(log: str, stores: Stores | None) -> tuple[str, dict[str, int], int]:
    out = io.StringIO()
    summary = replay(
        iter(log.splitlines(keepends=True)),
        out,
        parse_rules(tomllib.loads(RULES_TOML)),
        stores=stores,
        now=datetime(2026, 11, 5, tzinfo=UTC),
    )
    return out.getvalue(), summary.counts, summary.records


def test_state_on_disk_behind_a_tiny_cache_replays_like_state_in_memory(
    chaos_log: str, tmp_path: Path
) -> None:
    in_memory, counts, records = _replay(chaos_log, Stores())
    disk = DiskStores(tmp_path / "state", cache_entries=4)
    try:
        on_disk, _, _ = _replay(chaos_log, disk)
    finally:
        disk.close()
    assert on_disk == in_memory
    assert names.REFUND_UPDATED in in_memory and "CN-CHAOS-A-0-000001" in in_memory
    # One count per record read: held records are not counted again when they are settled.
    assert counts["held"] > 0 and sum(counts.values()) == records


def test_a_broken_line_emits_nothing_even_when_the_input_is_not_a_file(chaos_log: str) -> None:
    lines = chaos_log.splitlines(keepends=True)
    broken = [*lines[:200], "{not json\n", *lines[200:]]
    for source in (io.StringIO("".join(broken)), iter(broken)):  # a file is checked in a first pass
        out = io.StringIO()
        with pytest.raises(ReplayInputError, match=":201: not a JSON line"):
            replay(source, out, load_rules(None))
        assert out.getvalue() == ""


def test_a_log_without_a_clock_runs_on_the_wall_clock_and_says_how_to_repeat_it(tmp_path: Path) -> None:
    # An appeasement for an order that never comes, with no date anywhere: it is held, then refused at
    # the end of the log with its deadline (the clock + the hold) in the refusal.
    appeasement = {
        "appeasement": {
            "sales_channel_id": "WEB",
            "order_id": "NOPE",
            "user": "u",
            "lines": [{"line_number": 1, "amount": "5.00", "reason": "R", "reason_description": "d"}],
        }
    }
    log = tmp_path / "clockless.jsonl"
    record = {
        "topic": names.APPEASEMENT_CREATE,
        "value": {"jsonrpc": "2.0", "id": "a-1", "params": appeasement},
    }
    record["value"]["method"] = names.APPEASEMENT_CREATE
    log.write_text(json.dumps(record) + "\n")
    rules = str(EXAMPLES / "rules.toml")
    first = run("replay", str(log), "--rules", rules)
    assert first.returncode == 0, first.stderr
    found = re.search(r"--now (\S+) replays it the same way", first.stderr)
    assert found is not None, first.stderr
    taken = datetime.fromisoformat(found[1])
    assert abs(datetime.now(UTC) - taken) < timedelta(minutes=5)
    assert f"did not arrive by {iso(taken + timedelta(minutes=60))}" in first.stdout  # the hold
    again = run("replay", str(log), "--rules", rules, "--now", found[1])
    assert again.returncode == 0 and again.stdout == first.stdout
    assert "wall clock" not in again.stderr


def test_a_state_folder_of_the_older_json_layout_is_imported(tmp_path: Path) -> None:
    lines = (EXAMPLES / "message-log.jsonl").read_text().splitlines(keepends=True)
    stores = Stores()
    replay(iter(lines[:3]), io.StringIO(), load_rules(EXAMPLES / "rules.toml"), stores=stores)
    state = tmp_path / "state"
    state.mkdir()
    orders = {key: json.loads(msgspec.json.encode(order)) for key, order in stores.orders.items()}
    (state / "orders.json").write_text(json.dumps(orders))
    assert all(msgspec.json.decode(json.dumps(o), type=OrderState) for o in orders.values())
    second = tmp_path / "b.jsonl"
    second.write_text(lines[3])  # the watches' return
    done = run("replay", str(second), "--rules", str(EXAMPLES / "rules.toml"), "--state", str(state))
    assert done.returncode == 0, done.stderr
    refunds = [
        json.loads(line)["value"]["params"]["refund"]
        for line in done.stdout.splitlines()
        if names.REFUND_UPDATED in line
    ]
    assert [r["totals"]["cost_gross"] for r in refunds] == ["270.60"]
