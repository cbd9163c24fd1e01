"""The RocksDB databases of the worker's tables open with bounded memory and bounded side files: what
the options say is what RocksDB itself writes in the database's OPTIONS file."""

from __future__ import annotations

import re
from pathlib import Path

from workers.kafka.durable_tables import BoundedOptions, store_options


def written_options(folder: Path) -> dict[str, str]:
    """The options RocksDB recorded for the database in `folder` (its latest OPTIONS file)."""
    latest = max(folder.glob("OPTIONS-*"), key=lambda path: int(path.name.split("-")[1]))
    found: dict[str, str] = {}
    for line in latest.read_text().splitlines():
        match = re.match(r"\s*(\w+)=(.*)$", line)
        if match:
            found.setdefault(match[1], match[2])
    return found


def test_the_memory_store_gets_no_rocksdb_options() -> None:
    assert store_options("memory://", 256, 4096) == {}


def test_a_database_opened_for_a_table_has_the_bounds(tmp_path: Path) -> None:
    options = BoundedOptions(**store_options("rocksdb://", 256, 4096), use_rocksdict=True)
    db = options.open(tmp_path / "orders-0.db")
    db[b"k"] = b"v"
    db.close()
    written = written_options(tmp_path / "orders-0.db")
    assert written["write_buffer_size"] == str(256 * 1024)
    assert written["max_write_buffer_number"] == "2"
    assert written["level0_file_num_compaction_trigger"] == "2"
    assert written["max_log_file_size"] == str(256 * 1024)
    assert written["keep_log_file_num"] == "2"
    assert re.search(r"capacity\s*:\s*4194304\b", (tmp_path / "orders-0.db" / "LOG").read_text())
