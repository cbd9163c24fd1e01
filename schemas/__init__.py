"""JSON Schemas (draft 2020-12) of every message the worker reads or writes, one file each, plus the
definitions they share (`defs.json`). Every `$id` is SCHEMA_BASE + file name."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
# Names, not addresses: the reserved .invalid domain is never fetched; validators resolve offline.
SCHEMA_BASE = "https://oms-postsales.invalid/schemas/mom/1.0.3/"
DEFS_NAME = "defs"
