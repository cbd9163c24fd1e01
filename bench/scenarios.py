"""Ordinary post-sales stories as an upstream would write them, for the real-producer run.

The code is testkit/scenarios.py (the tests use it too); this is its script: `--help` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ on the path, not the checkout that holds testkit/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.scenarios import main

if __name__ == "__main__":
    sys.exit(main())
