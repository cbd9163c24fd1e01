"""No names, emails, phones or addresses in replay's log lines at DEBUG level. The live worker's:
tests/integration/test_no_pii_in_logs.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testkit.pii import LOG, RULES, leaks, personal_data


def test_the_example_log_carries_personal_data() -> None:
    assert {"Veronica", "Costello", "you@youremail.com", "(555) 229-3326", "6146 Honey Bluff Parkway"} <= (
        personal_data()
    )


def test_replay_logs_at_debug_carry_no_personal_data() -> None:
    cli = str(Path(sys.executable).parent / "oms-postsales")
    done = subprocess.run(
        [cli, "replay", str(LOG), "--rules", str(RULES), "--log-level", "DEBUG"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "record.dead_letter" in done.stderr  # the logs are there …
    assert leaks(done.stderr) == []  # … without personal data
    assert leaks(done.stdout) != []  # the records themselves do carry it (they are the orders)
