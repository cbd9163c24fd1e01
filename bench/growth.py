"""Growth of state over a history of 1x, 3x and 10x the retention, through `replay` and the live worker.

The code is testkit/growth.py (the tests use it too); this is its script: `--help` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ on the path, not the checkout that holds testkit/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.growth import main

if __name__ == "__main__":
    sys.exit(main())
