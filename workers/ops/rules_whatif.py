"""`rules publish … --dry-run --against LOG.jsonl`: a log replayed under the live rules and under the
proposed ones, and what would change per sales channel (README, "What-if").

Credit notes are matched across the two runs by the message that made them (its order key, its
`causation_id`, and its place among that message's notes), not by number: a note added earlier in a
series renumbers the ones after it, and those are the same refunds all the same.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain import names
from domain.rule_versions import RuleVersions
from workers.engine.codec import loads
from workers.replay.runner import replay

EXAMPLES_SHOWN = 5


@dataclass(frozen=True)
class Note:
    """A credit note as one run issued it (its first publication) and as it stands last."""

    channel: str
    order_key: str
    number: str
    gross: Decimal
    restocked: int
    status: str
    rules_version: str | None

    @property
    def refunded(self) -> Decimal:
        return Decimal(0) if self.status == "CANCELLED" else self.gross


NoteKey = tuple[str, str, int]


def notes_of(lines: Iterable[str]) -> dict[NoteKey, Note]:
    """The credit notes of a replay output (or any JSONL of output records), by what made them."""
    first: dict[str, tuple[NoteKey, dict[str, Any], str | None]] = {}
    last_status: dict[str, str] = {}
    per_cause: dict[tuple[str, str], int] = {}
    for line in lines:
        if not line.strip():
            continue
        item = loads(line)
        if item.get("topic") != names.REFUND_UPDATED or not isinstance(item.get("value"), dict):
            continue
        params = item["value"]["params"]
        refund = params["refund"]
        number = str(refund["credit_note_number"])
        last_status[number] = str(refund["status"]["code"])
        if number in first:
            continue
        cause = (str(item.get("key")), str((item.get("headers") or {}).get("causation_id")))
        index = per_cause.get(cause, 0)
        per_cause[cause] = index + 1
        first[number] = ((cause[0], cause[1], index), refund, params.get("rules_version"))
    found: dict[NoteKey, Note] = {}
    for number, (key, refund, version) in first.items():
        restocked = sum(int(line.get("quantity") or 0) for line in refund["lines"] if line.get("restock"))
        found[key] = Note(
            str(refund["sales_channel_id"]),
            key[0],
            number,
            Decimal(str(refund["totals"]["cost_gross"])),
            restocked,
            last_status[number],
            version,
        )
    return found


@dataclass
class ChannelChange:
    channel: str
    added: list[Note] = field(default_factory=list)
    removed: list[Note] = field(default_factory=list)
    different: list[tuple[Note, Note]] = field(default_factory=list)
    refunded_before: Decimal = Decimal(0)
    refunded_after: Decimal = Decimal(0)
    restocked_before: int = 0
    restocked_after: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.different)

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "added": [n.number for n in self.added],
            "removed": [n.number for n in self.removed],
            "different": [
                {
                    "order_key": a.order_key,
                    "before": a.number,
                    "after": b.number,
                    "gross": [str(a.gross), str(b.gross)],
                }
                for a, b in self.different
            ],
            "refunded": [str(self.refunded_before), str(self.refunded_after)],
            "refunded_difference": str(self.refunded_after - self.refunded_before),
            "restocked": [self.restocked_before, self.restocked_after],
        }


def compare(before: dict[NoteKey, Note], after: dict[NoteKey, Note]) -> list[ChannelChange]:
    by_channel: dict[str, ChannelChange] = {}

    def slot(channel: str) -> ChannelChange:
        return by_channel.setdefault(channel, ChannelChange(channel))

    for key, note in before.items():
        change = slot(note.channel)
        change.refunded_before += note.refunded
        change.restocked_before += note.restocked
        other = after.get(key)
        if other is None:
            change.removed.append(note)
        elif (note.gross, note.restocked, note.status) != (other.gross, other.restocked, other.status):
            change.different.append((note, other))
    for key, note in after.items():
        change = slot(note.channel)
        change.refunded_after += note.refunded
        change.restocked_after += note.restocked
        if key not in before:
            change.added.append(note)
    return [by_channel[channel] for channel in sorted(by_channel)]


def replayed(log: Path, versions: RuleVersions, partitions: int) -> str:
    out = io.StringIO()
    with log.open(encoding="utf-8") as lines:
        replay(lines, out, versions.copy(), source=str(log), partitions=partitions)
    return out.getvalue()


def what_if(log: Path, live: RuleVersions, proposed: RuleVersions, partitions: int) -> list[ChannelChange]:
    before = notes_of(replayed(log, live, partitions).splitlines())
    after = notes_of(replayed(log, proposed, partitions).splitlines())
    return compare(before, after)


def render(changes: list[ChannelChange]) -> str:
    lines: list[str] = []
    for change in changes:
        if not change.changed:
            lines.append(f"{change.channel}: no credit note changes")
            continue
        difference = change.refunded_after - change.refunded_before
        lines.append(
            f"{change.channel}: credit notes added {len(change.added)}, removed {len(change.removed)}, "
            f"different {len(change.different)}; "
            f"refunded {change.refunded_before} -> {change.refunded_after} "
            f"({difference:+}); restocked units {change.restocked_before} -> {change.restocked_after} "
            f"({change.restocked_after - change.restocked_before:+})"
        )
        for a, b in change.different[:EXAMPLES_SHOWN]:
            lines.append(
                f"  different {a.order_key} {a.number}: {a.gross} -> {b.gross}"
                + (f" ({b.number})" if b.number != a.number else "")
                + (f", restocked {a.restocked} -> {b.restocked}" if a.restocked != b.restocked else "")
                + (f", {a.status} -> {b.status}" if a.status != b.status else "")
            )
        for note in change.added[:EXAMPLES_SHOWN]:
            lines.append(f"  added {note.order_key} {note.number}: {note.gross}")
        for note in change.removed[:EXAMPLES_SHOWN]:
            lines.append(f"  removed {note.order_key} {note.number}: {note.gross}")
    return "\n".join(lines) + "\n" if lines else "no credit notes in the log\n"
