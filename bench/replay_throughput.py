"""`replay` throughput and peak memory on chaos-style logs, this tree against a baseline tree.

    .venv/bin/python bench/replay_throughput.py --sizes 10000,100000 --baseline /path/to/old/worktree

For each size, a log from testkit/chaos_traffic.py (creates, shipments, returns, receipts, appeasements,
reshipments, upstream refunds, duplicates, held messages); then, per run, each tree replays it in a
child process (`python -m workers replay … --now …` with PYTHONPATH set to that tree). Reported per
child: records/s by wall clock and by CPU time (user + sys, from wait4: the fairer figure on a shared
machine), peak RSS, and the output's sha256, which must be the same for both trees.

Peak RSS is wait4's `ru_maxrss`, which Linux carries over fork and exec: a child starts with its
parent's high-water mark. So this process never holds a log or an output in memory: the log is
written by a child process of its own, and outputs are hashed in chunks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from testkit.chaos_traffic import RULES_TOML, chaos_waves  # noqa: E402

NOW = "2026-11-05T00:00:00Z"


@dataclass(frozen=True)
class Run:
    tree: str
    records: int
    wall: float
    cpu: float
    peak_mb: float
    sha256: str

    def line(self) -> str:
        return (
            f"| {self.tree} | {self.records:,} | {self.records / self.wall:,.0f} | "
            f"{self.records / self.cpu:,.0f} | {self.peak_mb:,.0f} | {self.sha256[:12]} |"
        )


def write_log_apart(path: Path, messages: int, seed: int) -> int:
    """`write_log` in a fresh interpreter (the chaos generator holds every wave in memory)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(write_log, path, messages, seed).result()


def write_log(path: Path, messages: int, seed: int) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for wave in chaos_waves(messages, seed):
            for record in wave.records:
                out.write(json.dumps(record) + "\n")
                count += 1
    return count


def replay_once(tree: Path, name: str, log: Path, rules: Path, records: int, workdir: Path) -> Run:
    output = workdir / f"{name}.out"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "workers", "replay", str(log), "--rules", str(rules), "--now", NOW]
    started = time.perf_counter()
    child = subprocess.Popen(
        [*command, "-o", str(output)], cwd=workdir, env=env, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    stderr = child.stderr.read() if child.stderr else ""
    if status != 0:
        raise SystemExit(f"{name}: replay failed ({status}): {stderr[-2000:]}")
    with output.open("rb") as written:
        digest = hashlib.file_digest(written, "sha256").hexdigest()
    output.unlink()
    # ru_maxrss is in KiB on Linux.
    return Run(name, records, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, digest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="messages per log, comma-separated")
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    trees = [("this tree", HERE.parent)]
    if args.baseline is not None:
        trees.insert(0, ("baseline", args.baseline.resolve()))
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        workdir = Path(tmp)
        rules = workdir / "rules.toml"
        rules.write_text(RULES_TOML, encoding="utf-8")
        print("| tree | records | msgs/s (wall) | msgs/s (CPU) | peak RSS MB | output sha256 |")
        print("|---|---|---|---|---|---|")
        for size in (int(s) for s in args.sizes.split(",")):
            log = workdir / f"chaos-{size}.jsonl"
            records = write_log_apart(log, size, args.seed)
            digests = set()
            for _ in range(args.runs):
                for name, tree in trees:
                    run = replay_once(tree, name, log, rules, records, workdir)
                    digests.add(run.sha256)
                    print(run.line(), flush=True)
            if len(digests) != 1:
                print(f"OUTPUTS DIFFER for {size} messages: {sorted(digests)}", flush=True)
            log.unlink()


if __name__ == "__main__":
    main()
