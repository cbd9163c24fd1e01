"""The outsider's test: ordinary scenarios produced as a real upstream would, against a live worker,
compared with `oms-postsales replay` of the log in the order the producer wrote it.

The code is testkit/real_producers.py (the tests use it too); this is its script: `--help` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ on the path, not the checkout that holds testkit/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testkit.real_producers import main

if __name__ == "__main__":
    sys.exit(main())
