"""JSON Schemas (draft 2020-12) of every message the worker reads or writes, one file each."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
