"""The refund and tax report: credit notes by store, currency, credit note date, document type and refund
type, with gross / net / tax totals and tax per type and rate, plus one row per credit note.

Source: the refund topic on the broker, or a replay output file. Every amount is summed as Decimal from
the notes' own text, so the totals tie out exactly with the notes. A credit note delivered twice (the
worker delivers at least once) carries the same message id both times and is counted once. A note
published again with a new status (released, cancelled) counts as its latest version: a cancelled note
is left out of the totals.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import IO, Any

from domain import names
from domain.money import ZERO
from workers.config.settings import Settings
from workers.engine.codec import loads
from workers.ops.reading import OpsError, Progress, read_topic

GroupKey = tuple[str, str, str, str, str]  # store, currency, credit note date, document type, refund type
TaxKey = tuple[str, str]  # tax type, rate


@dataclass(frozen=True)
class Note:
    message_id: str
    number: str
    credit_note_date: str
    store: str
    sales_channel: str
    order_id: str
    currency: str
    document_type: str
    refund_type: str
    status: str
    gross: Decimal
    net: Decimal
    tax: Decimal
    taxes: dict[TaxKey, Decimal]
    # Gross per payment method the note went back to (notes before split tender: none listed).
    methods: dict[str, Decimal] = field(default_factory=dict)

    @property
    def group(self) -> GroupKey:
        return (self.store, self.currency, self.credit_note_date, self.document_type, self.refund_type)


@dataclass
class Group:
    key: GroupKey
    notes: int = 0
    gross: Decimal = ZERO
    net: Decimal = ZERO
    tax: Decimal = ZERO
    taxes: dict[TaxKey, Decimal] = field(default_factory=dict)
    methods: dict[str, Decimal] = field(default_factory=dict)

    def add(self, note: Note) -> None:
        self.notes += 1
        self.gross += note.gross
        self.net += note.net
        self.tax += note.tax
        for slot, amount in note.taxes.items():
            self.taxes[slot] = self.taxes.get(slot, ZERO) + amount
        for method, amount in note.methods.items():
            self.methods[method] = self.methods.get(method, ZERO) + amount


@dataclass
class Report:
    groups: list[Group]
    notes: list[Note]


def note_from(message_id: str, params: dict[str, Any]) -> Note:
    refund = params["refund"]
    taxes: dict[TaxKey, Decimal] = {}
    for line in refund.get("lines") or []:
        for payment in line.get("payments") or []:
            for part in payment["details"].get("vat_detail") or []:
                slot = (str(part["type"]), str(part["rate"]))
                taxes[slot] = taxes.get(slot, ZERO) + Decimal(str(part["amount"]))
    totals = refund["totals"]
    methods: dict[str, Decimal] = {}
    for share in refund.get("payments") or []:
        method = str(share.get("payment_method") or "UNKNOWN")
        methods[method] = methods.get(method, ZERO) + Decimal(str(share["amount"]))
    return Note(
        message_id=message_id,
        number=str(refund["credit_note_number"]),
        credit_note_date=str(refund["credit_note_date"]),
        store=str(refund["store_id"]),
        sales_channel=str(refund["sales_channel_id"]),
        order_id=str(refund["order_id"]),
        currency=str(refund.get("currency") or ""),
        document_type=str(refund["document_type"]),
        refund_type=str(refund["refund_type"]),
        status=str((refund.get("status") or {}).get("code") or ""),
        gross=Decimal(str(totals["cost_gross"])),
        net=Decimal(str(totals["cost_net"])),
        tax=Decimal(str(totals["cost_vat"])),
        taxes=taxes,
        methods=methods,
    )


def notes_from_file(lines: Iterable[str], source: str = "input") -> Iterator[Note]:
    """Credit notes in a replay output file (or any JSONL of {"topic", "headers", "value"} records)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = loads(line)
        except ValueError:
            raise OpsError(f"{source}:{number}: not a JSON line") from None
        value = item.get("value") if isinstance(item, dict) else None
        if isinstance(value, dict) and value.get("method") == names.REFUND_UPDATED:
            headers = item.get("headers") or {}
            yield note_from(str(headers.get("message_id") or value.get("id")), value["params"])


def notes_from_broker(settings: Settings, progress: Progress | None = None) -> list[Note]:
    topic = settings.topic_for(names.REFUND_UPDATED)
    notes = []
    for record in asyncio.run(read_topic(settings, topic, progress=progress)):
        try:
            value = loads(record.value or b"")
        except ValueError:
            continue  # not ours: the worker only writes JSON-RPC envelopes here
        if isinstance(value, dict) and value.get("method") == names.REFUND_UPDATED:
            notes.append(note_from(str(record.header("message_id") or value.get("id")), value["params"]))
    return notes


def build(notes: Iterable[Note], start: date | None, end: date | None, store: str | None = None) -> Report:
    """Notes dated from `start` to `end`, both included, of `store` if given; each note as its latest
    version, cancelled ones left out. A pending version read after its release or cancel (a redelivery)
    does not take its place back."""
    latest: dict[tuple[str, str], Note] = {}
    for note in notes:
        known = latest.get((note.store, note.number))
        if known is None or _settled(note) or not _settled(known):
            latest[(note.store, note.number)] = note
    kept: list[Note] = []
    for note in latest.values():
        if note.status == "CANCELLED":
            continue
        day = date.fromisoformat(note.credit_note_date[:10])
        if (start and day < start) or (end and day > end) or (store and note.store != store):
            continue
        kept.append(note)
    kept.sort(key=lambda n: (n.group, n.number))
    groups: dict[GroupKey, Group] = {}
    for note in kept:
        groups.setdefault(note.group, Group(note.group)).add(note)
    return Report(list(groups.values()), kept)


def _settled(note: Note) -> bool:
    return note.status in ("RELEASED", "CANCELLED")


def _methods(methods: dict[str, Decimal]) -> list[dict[str, str]]:
    return [{"payment_method": method, "amount": str(amount)} for method, amount in sorted(methods.items())]


def _taxes(taxes: dict[TaxKey, Decimal]) -> list[dict[str, str]]:
    return [
        {"type": kind, "rate": rate, "amount": str(amount)} for (kind, rate), amount in sorted(taxes.items())
    ]


def as_json(report: Report) -> dict[str, Any]:
    return {
        "groups": [
            {
                "store": g.key[0],
                "currency": g.key[1],
                "credit_note_date": g.key[2],
                "document_type": g.key[3],
                "refund_type": g.key[4],
                "credit_notes": g.notes,
                "gross": str(g.gross),
                "net": str(g.net),
                "tax": str(g.tax),
                "tax_detail": _taxes(g.taxes),
                "payment_detail": _methods(g.methods),
            }
            for g in report.groups
        ],
        "notes": [
            {
                "credit_note_number": n.number,
                "credit_note_date": n.credit_note_date,
                "store": n.store,
                "sales_channel": n.sales_channel,
                "order_id": n.order_id,
                "currency": n.currency,
                "document_type": n.document_type,
                "refund_type": n.refund_type,
                "status": n.status,
                "gross": str(n.gross),
                "net": str(n.net),
                "tax": str(n.tax),
                "tax_detail": _taxes(n.taxes),
                "payment_detail": _methods(n.methods),
            }
            for n in report.notes
        ],
    }


CSV_COLUMNS = [
    "kind",
    "store",
    "currency",
    "credit_note_date",
    "document_type",
    "refund_type",
    "credit_notes",
    "credit_note_number",
    "order_id",
    "tax_type",
    "tax_rate",
    "gross",
    "net",
    "tax",
    "payment_method",
]


def write_csv(report: Report, out: IO[str]) -> None:
    """One table: `total` rows per group, `tax` rows per group, tax type and rate, `payment` rows per
    group and payment method (gross), `note` rows per note."""
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for g in report.groups:
        where = dict(zip(CSV_COLUMNS[1:6], g.key, strict=True))
        writer.writerow(
            {"kind": "total", **where, "credit_notes": g.notes, "gross": g.gross, "net": g.net, "tax": g.tax}
        )
        for (kind, rate), amount in sorted(g.taxes.items()):
            writer.writerow({"kind": "tax", **where, "tax_type": kind, "tax_rate": rate, "tax": amount})
        for method, amount in sorted(g.methods.items()):
            writer.writerow({"kind": "payment", **where, "payment_method": method, "gross": amount})
    for n in report.notes:
        where = dict(zip(CSV_COLUMNS[1:6], n.group, strict=True))
        writer.writerow(
            {
                "kind": "note",
                **where,
                "credit_note_number": n.number,
                "order_id": n.order_id,
                "gross": n.gross,
                "net": n.net,
                "tax": n.tax,
            }
        )
