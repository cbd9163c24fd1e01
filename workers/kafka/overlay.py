"""The stores as one batch sees them: the tables underneath, this batch's changes on top.

A batch reads through to the tables and keeps what it writes in memory; once its outputs are
delivered, `flush` writes each changed key once (a faust table write is a changelog record, so a key
touched by ten messages of a batch costs one record, not ten). A batch that fails before `flush`
leaves the tables as they were, and its records are handled again.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from faust.streams import _current_event

from workers.engine.stores import STEPS, STORES, Stores
from workers.kafka import crashpoints

V = TypeVar("V")


class _Gone:
    """A key this batch deleted: flushed as a delete (a tombstone on the table's changelog)."""


GONE = _Gone()


class Overlay(MutableMapping[str, V], Generic[V]):
    def __init__(self, base: MutableMapping[str, V], cause: Callable[[], Any] = lambda: None) -> None:
        self._base = base
        self._cause = cause
        self.changes: dict[str, V | _Gone] = {}
        # The record whose handling changed each key: a faust table writes a key's changelog record to
        # that record's partition, the one whose worker owns the key.
        self.causes: dict[str, Any] = {}

    def __getitem__(self, key: str) -> V:
        if key in self.changes:
            value = self.changes[key]
            if isinstance(value, _Gone):
                raise KeyError(key)
            return value
        return self._base[key]

    def get(self, key: str, default: V | None = None) -> V | None:  # type: ignore[override]
        # One lookup in the table, not two (`in` then `[]`): tables decode on every read.
        if key in self.changes:
            value = self.changes[key]
            return default if isinstance(value, _Gone) else value
        return self._base.get(key, default)

    def __contains__(self, key: object) -> bool:
        if key in self.changes:
            return not isinstance(self.changes[key], _Gone)
        return key in self._base

    def __setitem__(self, key: str, value: V) -> None:
        self.changes[key] = value
        self.causes[key] = self._cause()

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.changes[key] = GONE
        self.causes[key] = self._cause()

    def __iter__(self) -> Iterator[str]:
        gone = {key for key, value in self.changes.items() if isinstance(value, _Gone)}
        return iter({*self._base, *self.changes} - gone)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> int:
        for key, value in self.changes.items():
            event = self.causes.get(key)
            token = _current_event.set(weakref.ref(event) if event is not None else None)
            try:
                if not isinstance(value, _Gone):
                    self._base[key] = value
                elif key in self._base:
                    del self._base[key]
            finally:
                _current_event.reset(token)
        written = len(self.changes)
        self.changes, self.causes = {}, {}
        return written

    async def settle(self) -> None:
        """Wait until the table underneath has every changelog record written so far acknowledged (and
        a RocksDB table has written them locally); other mappings have nothing to wait for."""
        settle = getattr(self._base, "settle", None)
        if settle is not None:
            await settle()


class BatchStores:
    """Overlays over every store of the worker, flushed in the order that keeps redelivery safe."""

    def __init__(self, stores: Stores) -> None:
        # The faust event being handled; every write is attributed to it.
        self.event: Any = None
        self.overlays: dict[str, Overlay[Any]] = {
            store.attribute: Overlay(mapping, self._current) for store, mapping in stores.each()
        }
        self.view = Stores.over(lambda store: self.overlays[store.attribute])

    def _current(self) -> Any:
        return self.event

    def of(self, store: str) -> Overlay[Any]:
        return self.overlays[store]

    async def flush(self, stage: str) -> int:
        """Write every change step by step (`STEPS`), each settled (its changelog records acknowledged,
        the local store written) before the next starts, because a crash may keep any subset of a step's
        changelog records. A redelivered message then finds the numbers it took whenever a counter moved
        past them; a counter never moves past a number no message holds. The last step is settled too:
        the batch's offsets are committed only after it."""
        written = 0
        for step in STEPS:
            overlays = [self.overlays[store.attribute] for store in STORES if store.step == step]
            count = sum(overlay.flush() for overlay in overlays)
            if not count:
                continue
            written += count
            crashpoints.reach(f"{stage}.{step}-written")
            for overlay in overlays:
                await overlay.settle()
            crashpoints.reach(f"{stage}.{step}-settled")
        return written
