"""Hostile input: generated records of every kind, interleaved with the example log, as a replay JSONL
file or through a live worker; every generated record must meet the fate its kind has in `KINDS`.

The code is testkit/hostile.py (the tests use it too); this is its script: `--help` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ on the path, not the checkout that holds testkit/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.hostile import main

if __name__ == "__main__":
    sys.exit(main())
