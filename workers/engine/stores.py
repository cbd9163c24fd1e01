"""The stores the pipeline keeps, declared once.

Every place that needs the list derives it from `STORES`: the `Stores` bundle handed to the pipeline,
the faust tables of the worker and their changelog topics, the batch overlays and the order in which a
batch writes them, replay's database, the read-only view of a preview. A store added here reaches all
of them; `tests/unit/test_stores.py` checks that `Stores` and `STORES` name the same stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from domain.credit_notes import Ledger
from domain.state import OrderState, Series, StockItem, TakenNumbers
from workers.engine.values import JsonValues

V = TypeVar("V")

# A batch writes its changes in these steps, each made durable before the next one starts: the numbers
# each message took and the upstream numbers used, then the series counters, then everything else. A
# redelivered message then finds the numbers it took whenever a counter moved past them.
Step = Literal["numbers", "series", "orders"]
STEPS: tuple[Step, ...] = ("numbers", "series", "orders")


@dataclass(frozen=True)
class Store(Generic[V]):
    """One store: the `Stores` field that holds it, the name of its faust table (and so of its
    changelog topic, `<consumer group>-<table>-changelog`, and of its key prefix in replay's database),
    how its values are written, the batch step that writes it, and whether it is keyed and partitioned
    like the stock movements ("<source>:<sku>") rather than like the orders."""

    attribute: str
    table: str
    values: JsonValues[V]
    step: Step
    by_stock: bool = False

    def of(self, stores: Stores) -> MutableMapping[str, V]:
        mapping: MutableMapping[str, V] = getattr(stores, self.attribute)
        return mapping


STORES: tuple[Store[Any], ...] = (
    # Credit note numbers recent messages of each order took, and upstream numbers used: see Ledger.
    Store("taken", "taken-numbers", JsonValues(TakenNumbers), "numbers"),
    Store("upstream", "upstream-numbers", JsonValues(str), "numbers"),
    Store("series", "series", JsonValues(Series), "series"),
    # SKUs seen per source, so that a FULL snapshot can zero the ones it leaves out.
    Store("source_skus", "source-skus", JsonValues(list[str]), "orders"),
    Store("stock", "stock", JsonValues(StockItem), "orders", by_stock=True),
    Store("orders", "orders", JsonValues(OrderState), "orders"),
)


@dataclass
class Stores:
    """One mapping per store (dicts by default: replay's in-memory state, or one record's changes)."""

    orders: MutableMapping[str, OrderState] = field(default_factory=dict)
    stock: MutableMapping[str, StockItem] = field(default_factory=dict)
    series: MutableMapping[str, Series] = field(default_factory=dict)
    source_skus: MutableMapping[str, list[str]] = field(default_factory=dict)
    taken: MutableMapping[str, TakenNumbers] = field(default_factory=dict)
    upstream: MutableMapping[str, str] = field(default_factory=dict)

    @classmethod
    def over(cls, make: Callable[[Store[Any]], MutableMapping[str, Any]]) -> Stores:
        """A mapping per store, each made by `make` from its declaration."""
        return cls(**{store.attribute: make(store) for store in STORES})

    def each(self) -> Iterator[tuple[Store[Any], MutableMapping[str, Any]]]:
        """Every store with its mapping, in the order a batch writes them."""
        for store in STORES:
            yield store, store.of(self)

    def update(self, changes: Stores) -> None:
        """Write every value of `changes` (one record's or one batch's) into these stores."""
        for name in _FIELDS:
            mapping = getattr(changes, name)
            if mapping:
                target = getattr(self, name)
                for key, value in mapping.items():
                    target[key] = value

    def delete(self, keys: Mapping[str, Iterable[str]]) -> None:
        """Delete these keys (per store field) where they are present."""
        for store, mapping in self.each():
            for key in keys.get(store.attribute, ()):
                if key in mapping:
                    del mapping[key]

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.series, self.taken, self.upstream)


# The fields in write order, for the loops that run for every record.
_FIELDS = tuple(store.attribute for store in STORES)


def table_names() -> dict[str, bool]:
    """The tables of the stores -> whether they follow the stock partitions."""
    return {store.table: store.by_stock for store in STORES}
