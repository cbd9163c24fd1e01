"""Garbage-collector settings for the long runs (`replay`, `worker`).

Handling a record allocates thousands of short-lived containers (parsed JSON, models, output
documents) and almost no reference cycles, so CPython's default young-generation threshold (700
allocations) runs a collection every few records, each one scanning for cycles that are not there.
Measured on a 10k-message log: the collector was 6-9% of replay's CPU; with the settings below it
costs what switching it off does, and peak memory is unchanged."""

from __future__ import annotations

import gc

# Young generation every 50,000 net allocations (a few records' worth) instead of 700; older
# generations as rarely as CPython's own guard for full collections allows.
THRESHOLDS = (50_000, 20, 100)


def tune_for_long_runs() -> None:
    """Call once, after start-up: what exists by then (modules, schemas, validators, the app) lives as
    long as the process, so it is frozen out of every later collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
