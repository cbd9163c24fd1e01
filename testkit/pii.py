"""Personal data in the example log, and a check that a text carries none of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"
PERSONAL = ("first_name", "last_name", "email", "phone", "address1", "address2", "city", "zip")


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def personal_data() -> set[str]:
    """Every personal value in the example log (names, emails, phones, street, city, zip)."""
    found = set()
    for line in LOG.read_text().splitlines():
        value = json.loads(line)["value"]
        for key, item in _walk(value):
            if key in PERSONAL and isinstance(item, str) and len(item) >= 3:
                found.add(item)
    return found


def leaks(text: str) -> list[str]:
    return sorted(value for value in personal_data() if value in text)
