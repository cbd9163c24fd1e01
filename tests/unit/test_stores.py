"""The stores, declared once, and the six mapping adapters over them, held to one contract.

Every adapter must behave as the plain dict it stands in for: the pipeline is written against
`MutableMapping` and cannot tell a faust table, a batch overlay or replay's database from a dict.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rocksdict import Options, Rdict

from domain.credit_notes import Layered
from domain.state import Series
from workers.config.settings import Settings
from workers.engine.preview import ReadOnly, read_only
from workers.engine.stores import STEPS, STORES, Stores
from workers.engine.values import JsonValues
from workers.kafka.overlay import BatchStores, Overlay
from workers.kafka.table_map import TableMap
from workers.kafka.topics import RETENTION_TABLE, TABLES, WAITING_TABLE, catalogue, changelog_topic
from workers.replay.disk_stores import DiskMap, DiskStores

SERIES = JsonValues(Series)

# -- the declaration ---------------------------------------------------------------------------------


def test_the_bundle_and_the_declaration_name_the_same_stores() -> None:
    assert {f.name for f in dataclasses.fields(Stores)} == {store.attribute for store in STORES}
    assert len({store.table for store in STORES}) == len(STORES)
    assert {store.step for store in STORES} == set(STEPS)


def test_every_store_is_a_table_with_a_changelog_topic_of_the_catalogue() -> None:
    assert set(TABLES) == {store.table for store in STORES} | {WAITING_TABLE, RETENTION_TABLE}
    settings = Settings()
    topics = {spec.name for spec in catalogue(settings)}
    for store in STORES:
        assert changelog_topic(settings, store.table) in topics
    stock = [store.table for store in STORES if store.by_stock]
    assert stock == ["stock"]


def test_every_runner_has_every_store() -> None:
    stores = Stores()
    batch = BatchStores(stores)
    preview = read_only(stores)
    disk = DiskStores()
    try:
        for store in STORES:
            assert isinstance(store.of(batch.view), Overlay)
            assert isinstance(store.of(preview), ReadOnly)
            assert isinstance(store.of(disk), DiskMap)
    finally:
        disk.close()


def test_one_record_s_changes_are_written_to_every_store() -> None:
    changes = Stores.over(lambda store: {f"{store.table}-key": object()})
    target = Stores()
    target.update(changes)
    for store in STORES:
        assert list(store.of(target)) == [f"{store.table}-key"]


async def test_a_batch_writes_its_stores_step_by_step() -> None:
    written: list[str] = []

    class Recording(dict[str, Any]):
        def __init__(self, table: str) -> None:
            super().__init__()
            self.table = table

        def __setitem__(self, key: str, value: Any) -> None:
            written.append(self.table)
            super().__setitem__(key, value)

    batch = BatchStores(Stores.over(lambda store: Recording(store.table)))
    for store in reversed(STORES):
        store.of(batch.view)["k"] = store.table
    await batch.flush("test")
    steps = [next(store.step for store in STORES if store.table == table) for table in written]
    assert steps == sorted(steps, key=STEPS.index)
    assert sorted(written) == sorted(store.table for store in STORES)


# -- the mapping contract --------------------------------------------------------------------------

Adapter = MutableMapping[str, Series]
KEYS = st.sampled_from(["a", "b", "CH:1", "ü:ß", "k" * 40])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.integers(0, 5)),
        st.tuples(st.just("delete"), KEYS, st.just(0)),
    ),
    max_size=25,
)


@contextmanager
def database(tmp_path: Path) -> Iterator[Rdict]:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(tmp_path / f"db-{uuid.uuid4().hex}"), options)
    try:
        yield db
    finally:
        db.close()


@dataclasses.dataclass
class Writable:
    """An adapter under test over an empty base, and what its writes leave underneath once flushed."""

    adapter: Adapter
    underneath: Callable[[], Mapping[str, Series]]
    deletes: bool = True


def writable_adapters(db: Rdict) -> dict[str, Writable]:
    plain: dict[str, Series] = {}
    table: dict[str, bytes] = {}
    base: dict[str, Series] = {}
    overlay: Overlay[Series] = Overlay(base)
    # A cache of two values: most values are evicted to the database and read back.
    disk = DiskMap(db, "series", SERIES, cache_entries=2)

    def overlay_flushed() -> Mapping[str, Series]:
        overlay.flush()
        return base

    def disk_flushed() -> Mapping[str, Series]:
        disk.flush()
        return dict(DiskMap(db, "series", SERIES, cache_entries=2).items())

    return {
        "dict": Writable(plain, lambda: plain),
        "TableMap": Writable(
            TableMap(table, SERIES), lambda: {k: SERIES.decode(v) for k, v in table.items()}
        ),
        "Overlay": Writable(overlay, overlay_flushed),
        "DiskMap": Writable(disk, disk_flushed),
    }


def assert_reads_like(adapter: Mapping[str, Series], model: dict[str, Series]) -> None:
    # Lookups first: listing a DiskMap writes its cache out, which would hide a value its cache lost.
    for key in ["a", "b", "CH:1", "ü:ß", "k" * 40, "never"]:
        assert (key in adapter) == (key in model)
        assert adapter.get(key) == model.get(key)
        if key in model:
            assert adapter[key] == model[key]
        else:
            with pytest.raises(KeyError):
                adapter[key]
    assert sorted(adapter) == sorted(model)
    assert len(adapter) == len(model)


@pytest.mark.parametrize("name", ["dict", "TableMap", "Overlay", "DiskMap"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_a_writable_adapter_reads_and_writes_as_a_dict(
    name: str, operations: list[Any], tmp_path: Path
) -> None:
    with database(tmp_path) as db:
        subject = writable_adapters(db)[name]
        model: dict[str, Series] = {}
        for operation, key, last in operations:
            if operation == "set":
                value = Series(name=key, last=last)
                subject.adapter[key] = value
                model[key] = value
            elif subject.deletes:
                if key in model:
                    del subject.adapter[key], model[key]
                else:
                    with pytest.raises(KeyError):
                        del subject.adapter[key]
            else:
                with pytest.raises(NotImplementedError):
                    del subject.adapter[key]
            assert_reads_like(subject.adapter, model)
        assert dict(subject.underneath()) == model


BASE = {"a": Series(name="a", last=1), "ü:ß": Series(name="ü:ß", last=2)}
CHANGES = {"b": Series(name="b", last=3), "a": Series(name="a", last=4)}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda base, changes: ReadOnly({**base, **changes}), id="ReadOnly"),
        pytest.param(lambda base, changes: Layered(base, changes), id="Layered"),
    ],
)
def test_a_read_only_adapter_reads_as_a_dict(
    make: Callable[[Mapping[str, Series], Mapping[str, Series]], Mapping[str, Series]],
) -> None:
    adapter = make(BASE, CHANGES)
    assert_reads_like(adapter, {**BASE, **CHANGES})


def test_a_read_only_store_refuses_every_write() -> None:
    adapter = ReadOnly(dict(BASE))
    with pytest.raises(TypeError):
        adapter["a"] = Series(name="a", last=9)
    with pytest.raises(TypeError):
        del adapter["a"]
    assert adapter["a"] == BASE["a"]
