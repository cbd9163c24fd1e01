"""Replay's state on disk: the pipeline's stores as mappings over one RocksDB database (rocksdict, the
library faust's RocksDB tables use), each with a bounded in-memory cache of decoded values.

Replay's memory then stays bounded however long the log is: a value that falls out of its cache is
encoded (if it changed) and kept on disk, and read back when its key comes again. Within the cache a
value is handed out as is, like a dict would: the pipeline never changes a stored value in place (the
domain works on a copy and stores a new one).
"""

from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from rocksdict import Options, Rdict

from workers.engine.stores import STORES, Stores
from workers.engine.values import JsonValues

V = TypeVar("V")

# Decoded values kept per store. An order is ~20–30 KB as Python objects: 4,096 orders are ~100 MB.
CACHE_ENTRIES = 4096
DATABASE = "rocksdb"


class DiskMap(MutableMapping[str, V], Generic[V]):
    """One store: keys under `prefix` in the database, values as JSON, recent values decoded in memory."""

    def __init__(self, db: Rdict, prefix: str, values: JsonValues[V], cache_entries: int) -> None:
        self._db = db
        self._prefix = prefix.encode("utf-8") + b"\x00"
        self._values = values
        self._cache: OrderedDict[str, V] = OrderedDict()
        self._dirty: set[str] = set()
        self._limit = cache_entries

    def _key(self, key: str) -> bytes:
        return self._prefix + key.encode("utf-8", errors="surrogatepass")

    def __getitem__(self, key: str) -> V:
        value = self._cache.get(key)
        if value is not None:
            self._cache.move_to_end(key)
            return value
        raw = self._db.get(self._key(key))
        if raw is None:
            raise KeyError(key)
        value = self._values.decode(raw)
        self._remember(key, value)
        return value

    def __setitem__(self, key: str, value: V) -> None:
        self._dirty.add(key)
        self._remember(key, value)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._cache.pop(key, None)
        self._dirty.discard(key)
        self._db.delete(self._key(key))

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return key in self._cache or self._db.get(self._key(key)) is not None

    def __iter__(self) -> Iterator[str]:
        self.flush()
        for raw in self._db.keys(from_key=self._prefix):
            assert isinstance(raw, bytes)  # raw mode: keys are bytes
            if not raw.startswith(self._prefix):
                break
            yield raw[len(self._prefix) :].decode("utf-8", errors="surrogatepass")

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _remember(self, key: str, value: V) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self._limit:
            old, old_value = self._cache.popitem(last=False)
            if old in self._dirty:
                self._dirty.discard(old)
                self._db[self._key(old)] = self._values.encode(old_value)

    def flush(self) -> None:
        """Write every changed value still only in memory."""
        for key in self._dirty:
            self._db[self._key(key)] = self._values.encode(self._cache[key])
        self._dirty.clear()


class DiskStores(Stores):
    """The pipeline's stores in one database under `folder` (a temporary one when None), closed by
    `close()`; a temporary database is removed then."""

    def __init__(self, folder: Path | None = None, cache_entries: int = CACHE_ENTRIES) -> None:
        self._temporary = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="oms-postsales-replay-")) if folder is None else folder
        self.folder.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(str(self.folder / DATABASE), options)
        maps: dict[str, DiskMap[Any]] = {
            store.attribute: DiskMap(self._db, store.table, store.values, cache_entries) for store in STORES
        }
        self._maps = list(maps.values())
        super().__init__(**maps)

    def flush(self) -> None:
        for store in self._maps:
            store.flush()

    def close(self) -> None:
        self.flush()
        self._db.close()
        if self._temporary:
            shutil.rmtree(self.folder, ignore_errors=True)
