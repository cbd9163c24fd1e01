"""A faust table seen as a typed mapping, so the pipeline never knows its stores are Kafka."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from workers.engine.values import JsonValues

V = TypeVar("V")


class TableMap(MutableMapping[str, V], Generic[V]):
    """A faust table of JSON bytes seen as a typed mapping; the pipeline never knows it is Kafka.
    Values are bytes (faust's "raw" serializer): as `str` faust would JSON-encode the JSON text again."""

    def __init__(self, table: Any, values: JsonValues[V]) -> None:
        self._table = table
        self._values = values

    def __getitem__(self, key: str) -> V:
        raw = self._table.get(key)
        if raw is None:
            raise KeyError(key)
        return self._values.decode(raw)

    def __setitem__(self, key: str, value: V) -> None:
        self._table[key] = self._values.encode(value)

    def __delitem__(self, key: str) -> None:
        del self._table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._table.keys()))

    def __len__(self) -> int:
        return len(self._table)

    async def settle(self) -> None:
        await self._table.settle()
