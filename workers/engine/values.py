"""How stored values (orders, stock items, credit note series, lists of keys) are written and read:
compact JSON by msgspec, the same text for faust tables, replay's database and the order lookup."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

V = TypeVar("V")

_ENCODER = msgspec.json.Encoder()


class JsonValues(Generic[V]):
    """The JSON of one kind of value. Reading checks the value's shape (msgspec.ValidationError, a
    ValueError, for a value that is not one)."""

    def __init__(self, kind: type[V]) -> None:
        self._decoder = msgspec.json.Decoder(kind)

    def encode(self, value: V) -> bytes:
        return _ENCODER.encode(value)

    def decode(self, data: bytes | str) -> V:
        return self._decoder.decode(data)
