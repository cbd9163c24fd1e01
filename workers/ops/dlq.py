"""Dead letters: list, show, and re-drive records of the dead-letter topic.

A dead letter is the original record (bytes, key, headers) plus `dlq.*` headers saying why and where it
came from. Re-driving sends it back to its original topic with its original key and headers, without
the `dlq.*` ones, plus `dlq.redriven` (`<dlq topic>:<partition>:<offset>`). The message id travels with
the record (envelope id or `message_id` header), so re-driving twice makes the second a duplicate that
the worker recognises and skips. `--fix` applies an RFC 6902 JSON Patch to the record's JSON value
first (so the id stays, as long as the patch leaves it alone).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonpatch

from domain.timeutil import parse_time
from workers.config.settings import Settings
from workers.engine.codec import dumps, loads
from workers.engine.personal import REDACTED, personal_pointer, redact
from workers.kafka.topics import inbound_topics
from workers.ops.reading import Fetched, OpsError, Progress, producer, read_topic, started

REDRIVEN = "dlq.redriven"


@dataclass(frozen=True)
class DeadLetter:
    record: Fetched

    @property
    def where(self) -> str:
        return f"{self.record.partition}:{self.record.offset}"

    @property
    def error_class(self) -> str | None:
        return self.record.header("dlq.error.class")

    @property
    def original_topic(self) -> str | None:
        return self.record.header("dlq.original.topic")

    @property
    def failed_at(self) -> datetime | None:
        text = self.record.header("dlq.failed_at")
        return (parse_time(text) if text else None) or self.record.timestamp

    def summary(self) -> dict[str, Any]:
        r = self.record
        return {
            "partition": r.partition,
            "offset": r.offset,
            "failed_at": r.header("dlq.failed_at"),
            "error_class": self.error_class,
            "error_message": r.header("dlq.error.message"),
            "error_path": r.header("dlq.error.path"),
            "original_topic": self.original_topic,
            "original_partition": r.header("dlq.original.partition"),
            "original_offset": r.header("dlq.original.offset"),
            "key": r.key_text,
            **self.message_id(),
            "redriven_from": r.header(REDRIVEN),
            "bytes": len(r.value or b""),
        }

    def message_id(self) -> dict[str, str]:
        """The id the worker knows the record by, and where it comes from, in the worker's order
        (docs/contract.md, "Ids and headers"): the envelope's `id`, else the `message_id` header, else
        the SHA-256 of the bytes. It is the id a re-drive keeps, so the one to look for."""
        value = self.record.value or b""
        envelope_id = _envelope_id(value)
        if envelope_id is not None:
            return {"message_id": envelope_id, "message_id_from": "envelope"}
        header = self.record.header("message_id")
        if header:
            return {"message_id": header, "message_id_from": "header"}
        return {"message_id": "sha256:" + hashlib.sha256(value).hexdigest(), "message_id_from": "sha256"}

    def detail(self, *, personal: bool = False) -> dict[str, Any]:
        """Everything about one record: headers, error, pointer, the original bytes (as text when they
        are UTF-8, else as escaped bytes) and, when the value is JSON, what the pointer points at.

        Without `personal` the personal members of the original (customer, addresses, contacts, IP,
        users, free text: workers.engine.personal) read as REDACTED, and a value that is not JSON,
        which cannot be redacted member by member, is withheld."""
        value = self.record.value or b""
        try:
            text: str | None = value.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        document: Any = None
        if text is not None:
            try:
                document = loads(text)
            except (ValueError, RecursionError):
                document = None
        shown: dict[str, Any] = {
            **self.summary(),
            "headers": {k: v.decode("utf-8", "replace") for k, v in self.record.headers},
            "personal_data": "shown" if personal else "redacted",
            "original_value": text if text is not None else None,
            "original_bytes": None if text is not None else repr(value),
        }
        pointer = self.record.header("dlq.error.path")
        if text is not None and pointer:
            shown["value_at_pointer"] = _at_pointer(text, pointer)
        if personal:
            return shown
        if isinstance(document, dict | list):
            shown["original_value"] = dumps(redact(document))
        elif value:
            shown["original_value"] = shown["original_bytes"] = None
            shown["original_withheld"] = "not JSON, so not redactable: `dlq show --personal` shows it"
        if "value_at_pointer" in shown:
            at = shown["value_at_pointer"]
            shown["value_at_pointer"] = REDACTED if personal_pointer(pointer or "") else redact(at)
        return shown


def _envelope_id(value: bytes) -> str | None:
    try:
        document = loads(value)
    except (ValueError, RecursionError):  # not JSON, or nested past what the decoder takes
        return None
    if isinstance(document, dict) and "jsonrpc" in document:
        found = document.get("id")
        if isinstance(found, str | int) and not isinstance(found, bool) and found != "":
            return str(found)
    return None


def _at_pointer(text: str, pointer: str) -> Any:
    try:
        document = loads(text)
        return jsonpatch.JsonPointer(pointer).resolve(document, None)
    except (ValueError, jsonpatch.JsonPointerException, TypeError):
        return None


@dataclass(frozen=True)
class Selection:
    """Which dead letters: all given filters must hold (None means any)."""

    error_class: str | None = None
    original_topic: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    records: frozenset[tuple[int, int]] | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.error_class is not None and letter.error_class != self.error_class:
            return False
        if self.original_topic is not None and letter.original_topic != self.original_topic:
            return False
        when = letter.failed_at
        if self.since is not None and (when is None or when < self.since):
            return False
        if self.until is not None and (when is None or when >= self.until):
            return False
        return self.records is None or (letter.record.partition, letter.record.offset) in self.records


def parse_where(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise OpsError(f"{text!r} is not <partition>:<offset>")
    return int(partition), int(offset)


def read(settings: Settings, *, progress: Progress | None = None) -> list[DeadLetter]:
    records = asyncio.run(read_topic(settings, settings.dlq_topic, progress=progress))
    return [DeadLetter(record) for record in records]


def select(letters: Iterable[DeadLetter], selection: Selection) -> list[DeadLetter]:
    return [letter for letter in letters if selection.matches(letter)]


def find(settings: Settings, where: str) -> DeadLetter:
    partition, offset = parse_where(where)
    for letter in read(settings):
        if (letter.record.partition, letter.record.offset) == (partition, offset):
            return letter
    raise OpsError(f"no record at {where} in {settings.dlq_topic}")


def load_patch(text: str) -> jsonpatch.JsonPatch:
    """An RFC 6902 patch: a JSON array of operations, given inline or as @FILE."""
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as source:
                text = source.read()
        except OSError as exc:
            raise OpsError(f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        operations = json.loads(text)
        if not isinstance(operations, list):
            raise ValueError("not a list")
        return jsonpatch.JsonPatch(operations)
    except (ValueError, jsonpatch.InvalidJsonPatch) as exc:
        raise OpsError(f"--fix is not an RFC 6902 JSON Patch (a JSON array of operations): {exc}") from None


@dataclass(frozen=True)
class Redrive:
    """What re-driving one dead letter sends."""

    source: DeadLetter
    topic: str
    partition: int | None
    key: bytes | None
    headers: list[tuple[str, bytes]]
    value: bytes


@dataclass(frozen=True)
class Destination:
    """Where re-driven records may go: `allowed`, the inbound topics of the topic map (what the intake
    reads). `to_topic`: every record to this topic instead of its original one; `any_topic`: the
    operator named a topic outside `allowed` on purpose (`--to-topic NAME --allow-any-topic`)."""

    allowed: frozenset[str]
    to_topic: str | None = None
    any_topic: bool = False

    @classmethod
    def of(cls, settings: Settings, to_topic: str | None = None, any_topic: bool = False) -> Destination:
        if any_topic and to_topic is None:
            raise OpsError("--allow-any-topic needs --to-topic NAME: name the one topic outside the map")
        return cls(frozenset(inbound_topics(settings)), to_topic, any_topic)

    def topic_for(self, letter: DeadLetter) -> str:
        topic = self.to_topic or letter.original_topic
        if not topic:
            raise OpsError(f"{letter.where}: no dlq.original.topic header, cannot tell where it came from")
        if topic in self.allowed or (self.any_topic and topic == self.to_topic):
            return topic
        # The header is the record's own: a forged dlq.original.topic must not reach an output
        # topic, a changelog or an internal topic.
        raise OpsError(
            f"{letter.where}: {topic!r} is not an inbound topic of the topic map; re-drive sends "
            "only to those (--to-topic NAME --allow-any-topic sends to another on purpose)"
        )


def plan(
    letter: DeadLetter, patch: jsonpatch.JsonPatch | None, dlq_topic: str, destination: Destination
) -> Redrive:
    """What re-driving `letter` sends, to a topic `destination` allows (OpsError otherwise)."""
    topic = destination.topic_for(letter)
    value = letter.record.value or b""
    if patch is not None:
        try:
            document = loads(value)
        except ValueError:
            raise OpsError(f"{letter.where}: the value is not JSON, a patch cannot apply") from None
        try:
            value = dumps(patch.apply(document)).encode("utf-8")
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise OpsError(f"{letter.where}: the patch does not apply: {exc}") from None
    headers = [(k, v) for k, v in letter.record.headers if not k.startswith("dlq.")]
    headers.append((REDRIVEN, f"{dlq_topic}:{letter.where}".encode()))
    # A keyed record goes where its key hashes (as it did first); an unkeyed one to its old partition.
    original = letter.record.header("dlq.original.partition")
    partition = None
    same_topic = topic == letter.original_topic
    if same_topic and letter.record.key is None and original is not None and original.isdigit():
        partition = int(original)
    return Redrive(letter, topic, partition, letter.record.key, headers, value)


async def send(settings: Settings, plans: list[Redrive], progress: Progress | None = None) -> int:
    sender = await started(producer(settings))
    try:
        for item in plans:
            await sender.send_and_wait(
                item.topic, item.value, key=item.key, headers=item.headers, partition=item.partition
            )
            if progress is not None:
                progress.advance()
    finally:
        await sender.stop()
    return len(plans)


def redrive(
    settings: Settings,
    selection: Selection,
    *,
    patch: jsonpatch.JsonPatch | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    to_topic: str | None = None,
    any_topic: bool = False,
) -> list[Redrive]:
    """Send the selected dead letters back (nothing is sent with `dry_run`); returns what was (or
    would be) sent. Only to the inbound topics of the topic map, unless `to_topic` names another and
    `any_topic` says so. Every plan is made before the first send: one bad record stops all of them."""
    destination = Destination.of(settings, to_topic, any_topic)
    letters = select(read(settings), selection)
    plans = [plan(letter, patch, settings.dlq_topic, destination) for letter in letters]
    if not dry_run and plans:
        if progress is not None:
            progress.total = len(plans)
        asyncio.run(send(settings, plans, progress))
    return plans
