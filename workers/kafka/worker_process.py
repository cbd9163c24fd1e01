"""The `worker` command's process: faust's worker around the app, with a bound on shutdown.

Kept apart from the command line so that the other commands start without loading faust's runtime."""

from __future__ import annotations

import os
import signal
import sys
import threading

import faust
import structlog

from domain.rule_versions import RuleVersions
from domain.rules import RuleBook
from workers.config import gc_tuning
from workers.config.settings import Settings
from workers.kafka.app import build_app
from workers.kafka.rules_reader import RulesReader


def run(
    settings: Settings,
    book: RuleBook | RuleVersions,
    *,
    idempotent: bool = False,
    rules_reader: RulesReader | None = None,
) -> None:
    faust_app, _runtime = build_app(settings, book, idempotent=idempotent, rules_reader=rules_reader)
    worker = BoundedWorker(
        faust_app,
        loglevel=settings.log_level,
        override_logging=False,
        quiet=True,
    )
    worker.shutdown_timeout = settings.shutdown_timeout_seconds
    # faust's start-up spinner writes terminal escapes (cursor show/hide) even when stdout is a log
    # file, which breaks the first JSON line a log shipper reads.
    worker.spinner = None
    gc_tuning.tune_for_long_runs()
    worker.execute_from_commandline()


class BoundedWorker(faust.Worker):
    """faust's worker with a bound on shutdown. Once stopping starts (a signal, or the app ending on
    its own), a watchdog thread exits the process after `shutdown_timeout` seconds: faust waits for
    the broker to flush, commit and leave the group, without limit, so with the broker gone a stop
    used to hang for minutes. Records not committed by then are re-delivered to the next worker."""

    shutdown_timeout: float = 30.0
    _watchdog: threading.Timer | None = None

    def _arm_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Timer(self.shutdown_timeout, _force_exit, (self.shutdown_timeout,))
            self._watchdog.daemon = True
            self._watchdog.start()

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        self._arm_watchdog()
        super()._schedule_shutdown(signal)

    def on_worker_shutdown(self) -> None:
        self._arm_watchdog()
        super().on_worker_shutdown()


def _force_exit(timeout: float) -> None:
    structlog.get_logger("oms_postsales.worker").error("shutdown.forced", after_seconds=timeout)
    sys.stderr.flush()
    os._exit(1)
