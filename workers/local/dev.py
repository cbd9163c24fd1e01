"""`oms-postsales dev`: a local Tansu broker, the topics, and a worker process, with no Docker; with
`--demo`, the bundled message log goes through Kafka and the outputs are summarised and checked against
what `replay` says they must be."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from domain import names
from domain.limits import MAX_RECORD_BYTES
from workers.config.rules_file import load_rules
from workers.config.settings import Settings
from workers.engine.codec import InboundRecord, dumps, loads
from workers.engine.pipeline import Pipeline
from workers.kafka.topics import catalogue, create_topics
from workers.local.broker import BrokerError, LocalBroker, free_port
from workers.replay.runner import ReplayInputError, read_records, replay

READY_TIMEOUT = 60.0
# Signals that stop `dev` with everything it started; Ctrl-C included.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class DevInputError(ValueError):
    """An input of `dev` that cannot be used; found before anything is started."""


class Stopped(Exception):
    """A stop signal arrived; raised in the main thread so that every `finally` runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def check_log(log: Path) -> None:
    """The demo's message log must be readable and well formed before a broker is started for it."""
    try:
        with log.open(encoding="utf-8") as lines:
            for _record in read_records(iter(lines), str(log)):
                pass
    except OSError as exc:
        raise DevInputError(f"--log: cannot read {log}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DevInputError(f"--log: {log}: not UTF-8 text ({exc.reason})") from None
    except ReplayInputError as exc:
        raise DevInputError(f"--log: {exc}") from None


def local_env(bootstrap: str, workdir: Path, rules: Path | None, web_port: int) -> dict[str, str]:
    """Settings for a worker on the local broker: memory tables, one record per producer batch (Tansu's
    end offsets are wrong for multi-record batches, docs/local-broker.md), short sessions and settle
    ticks."""
    env = {
        "OMS_BOOTSTRAP_SERVERS": bootstrap,
        "OMS_STORE": "memory://",
        "OMS_DATA_DIR": str(workdir / "data"),
        "OMS_WEB_HOST": "127.0.0.1",
        "OMS_WEB_PORT": str(web_port),
        "OMS_PRODUCER_MAX_BATCH_BYTES": "1",
        "OMS_SESSION_TIMEOUT_SECONDS": "6",
        "OMS_SETTLE_INTERVAL_SECONDS": "5",
        "OMS_LOG_LEVEL": "WARNING",
    }
    if rules is not None:
        env["OMS_RULES_FILE"] = str(rules)
    return env


def export_line(env: dict[str, str]) -> str:
    """A shell line that points the operator verbs (and `orders show`'s API) at this broker and worker."""
    return f"export OMS_BOOTSTRAP_SERVERS={env['OMS_BOOTSTRAP_SERVERS']} OMS_WEB_PORT={env['OMS_WEB_PORT']}"


def settings_from_env(env: dict[str, str]) -> Settings:
    return Settings.model_validate({k.removeprefix("OMS_").lower(): v for k, v in env.items()})


class WorkerProcess:
    """`oms-postsales worker` as a child process, stopped by its PID."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.overrides = env
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.web_port = int(env["OMS_WEB_PORT"])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers", "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def _open(self, path: str) -> Any:
        """GET from the worker's web server: HTTPS, checked against its CA file, when it has a
        certificate (OMS_WEB_TLS_CERTFILE)."""
        if self.env.get("OMS_WEB_TLS_CERTFILE"):
            context = ssl.create_default_context(cafile=self.env.get("OMS_WEB_TLS_CAFILE") or None)
            url = f"https://127.0.0.1:{self.web_port}{path}"
            return urllib.request.urlopen(url, timeout=2, context=context)
        return urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=2)

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with self._open(path) as response:
                return response.status, loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, loads(error.read() or b"{}")

    def handled(self) -> int:
        """Inbound records the worker has finished (outputs delivered), from its /metrics."""
        with self._open("/metrics") as response:
            text = response.read().decode()
        return int(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("oms_records_total{")
            )
        )

    def wait_handled(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.handled() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker handled {self.handled()} of {count} records; see {self.log_path}")
            time.sleep(0.01)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"worker exited early; see {self.log_path}")
            try:
                status, _body = self.get("/ready")
                if status == 200:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        return terminate(self.process, timeout)


def terminate(process: subprocess.Popen[bytes], timeout: float = 30.0, signum: int = signal.SIGTERM) -> int:
    """Stop a child process by its PID: `signum`, then SIGKILL if it is still there after `timeout`."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signum)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def keyed(records: list[InboundRecord], pipeline: Pipeline) -> list[InboundRecord]:
    """Give every record the key a real producer gives it (docs/contract.md, "Keys")."""
    return [
        InboundRecord(r.topic, r.value, pipeline.key_for(r), r.headers, r.partition, r.offset, r.timestamp)
        for r in records
    ]


async def publish(
    settings: Settings, records: list[InboundRecord], after_each: Callable[[int], None] | None = None
) -> None:
    """Send the records in order. `after_each(n)` runs once the n-th is acknowledged: the demo waits
    there until the worker handled it, since Kafka keeps no order across topics and the log's order
    (shipment before return) is what the example means."""
    producer = AIOKafkaProducer(acks="all", enable_idempotence=False, **settings.kafka_client_kwargs())
    await producer.start()
    try:
        for number, record in enumerate(records, start=1):
            timestamp = int(record.timestamp.timestamp() * 1000) if record.timestamp else None
            await producer.send_and_wait(
                record.topic,
                record.value,
                key=record.key.encode("utf-8") if record.key is not None else None,
                headers=[(k, v.encode("utf-8")) for k, v in record.headers.items()],
                timestamp_ms=timestamp,
            )
            if after_each is not None:
                await asyncio.to_thread(after_each, number)
    finally:
        await producer.stop()


@dataclass
class Collected:
    records: list[dict[str, Any]] = field(default_factory=list)

    def count(self) -> Counter[str]:
        return Counter(r["topic"] for r in self.records)


async def collect(settings: Settings, topics: list[str], expected: int, timeout: float) -> Collected:
    """Read the output topics from the start until `expected` records arrived (or the time is up).

    Partitions are assigned by hand and read from offset 0: no group join, and no reliance on the local
    broker's end offsets (docs/local-broker.md)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.kafka_client_kwargs())
    await consumer.start()
    found = Collected()
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or {0})
        ]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        deadline = time.monotonic() + timeout
        while len(found.records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                found.records.extend(as_output(tp, message, settings.dlq_topic) for message in messages)
    finally:
        await consumer.stop()
    return found


def expected_outputs(
    log: Path, rules: Path | None, partitions: int, now: datetime, max_record_bytes: int = MAX_RECORD_BYTES
) -> list[dict[str, Any]]:
    """What replay emits for the log stamped `now` on a worker of `partitions` partitions; held
    messages are not settled, since their deadline is still ahead when the demo ends."""
    stamp = int(now.timestamp() * 1000)
    texts = [line for line in log.read_text("utf-8").splitlines() if line.strip()]
    lines = [dumps({**loads(line), "timestamp": stamp + index}) for index, line in enumerate(texts)]
    out = io.StringIO()
    replay(
        iter(lines),
        out,
        load_rules(rules),
        partitions=partitions,
        settle_at_end=False,
        max_record_bytes=max_record_bytes,
    )
    return [loads(line) for line in out.getvalue().splitlines()]


def stamped(log: Path, now: datetime) -> list[InboundRecord]:
    """The example log as records of now, one millisecond apart in log order (records with one and
    the same timestamp would be taken in lifecycle order): holds then wait their real deadline."""
    with log.open(encoding="utf-8") as lines:
        return [
            InboundRecord(
                r.topic, r.value, r.key, r.headers, r.partition, r.offset, now + timedelta(milliseconds=index)
            )
            for index, r in enumerate(read_records(iter(lines), str(log)))
        ]


# What each credit note command of a log must make of its note.
SETTLES = {names.REFUND_RELEASE: "RELEASED", names.REFUND_CANCEL: "CANCELLED"}


def note_commands(log: Path) -> list[tuple[str, str]]:
    """The release and cancel commands of a message log: (credit note number, the status it must reach)."""
    wanted = []
    with log.open(encoding="utf-8") as lines:
        for record in read_records(iter(lines), str(log)):
            status = SETTLES.get(record.topic)
            if status is None:
                continue
            try:
                value = loads(record.value)
            except ValueError:
                continue  # a dead letter by design (a hostile log); nothing to settle
            params = value.get("params", value) if isinstance(value, dict) else None
            number = params.get("credit_note_number") if isinstance(params, dict) else None
            if isinstance(number, str):
                wanted.append((number, status))
    return wanted


def unsettled(commands: list[tuple[str, str]], found: Collected) -> list[str]:
    """The release and cancel commands whose note never reached its status: the note number they name
    may not exist on this many partitions (numbers carry the partition), or the rules refused them."""
    reached = {
        (refund["credit_note_number"], refund["status"]["code"])
        for record in found.records
        if record["topic"].endswith(names.REFUND_UPDATED)
        for refund in [record["value"]["params"]["refund"]]
    }
    refusals = {
        params["payload"].get("credit_note_number"): f"{params['code']}: {params['message']}"
        for record in found.records
        if record["topic"].endswith(names.ERROR_NOTIFY)
        for params in [record["value"]["params"]]
        if params["topic"] in SETTLES and isinstance(params.get("payload"), dict)
    }
    return [
        f"{number} not {status.lower()}"
        + (f" ({refusals[number]})" if number in refusals else " (no such note)")
        for number, status in commands
        if (number, status) not in reached
    ]


def as_output(tp: Any, message: Any, dlq_topic: str) -> dict[str, Any]:
    """A consumed record in replay's output shape (a dead letter's value: its text)."""
    value = message.value or b""
    return {
        "topic": tp.topic,
        "partition": tp.partition,
        "offset": message.offset,
        "key": message.key.decode() if message.key is not None else None,
        "headers": {k: v.decode("utf-8", "replace") for k, v in message.headers},
        "value": value.decode("utf-8", "surrogateescape")
        if tp.topic == dlq_topic
        else loads(value or b"null"),
    }


def summary(
    found: Collected,
    expected: list[dict[str, Any]],
    elapsed: float,
    dlq: str,
    commands: list[tuple[str, str]] | None = None,
) -> tuple[str, bool]:
    """The demo's report, and whether it passed: the outputs match replay's and every release and cancel
    of the log (`commands`) settled its note."""
    lines = []
    have, want = found.count(), Counter(r["topic"] for r in expected)
    same = have == want
    missed = unsettled(commands or [], found)
    ok = same and not missed
    lines.append(
        f"outputs: {sum(have.values())} of {sum(want.values())} expected in {elapsed:.1f}s "
        f"({'match replay' if same else 'DIFFER from replay'})"
    )
    for topic in sorted(set(have) | set(want)):
        mark = "" if have[topic] == want[topic] else f"   (replay: {want[topic]})"
        lines.append(f"  {have[topic]:4d}  {topic}{mark}")
    refunds = [r["value"]["params"]["refund"] for r in found.records if r["topic"] == names.REFUND_UPDATED]
    if refunds:
        lines.append("credit notes:")
    for refund in refunds:
        totals = refund["totals"]
        flag = "  standalone" if refund["standalone"] else ""
        kept = _fees_kept(refund)
        fees = f"  fees kept {kept}" if kept else ""
        lines.append(
            f"  {refund['credit_note_number']:<20} {refund['sales_channel_id']}:{refund['order_id']:<20} "
            f"{refund['status']['code']:<15} {refund['refund_type']:<12} {refund['document_type']:<22} "
            f"{totals['cost_gross']:>9} (net {totals['cost_net']}, tax {totals['cost_vat']}){flag}{fees}"
        )
    rejections = [r for r in found.records if r["topic"] == names.ERROR_NOTIFY]
    if rejections:
        lines.append("rejections:")
    for record in rejections:
        params = record["value"]["params"]
        lines.append(f"  {record['key']:<28} {params['code']:<18} {params['message']}")
    lines.extend(_return_rules(refunds, rejections))
    dead = [r for r in found.records if r["topic"] == dlq]
    if dead:
        lines.append("dead letters:")
    for record in dead:
        headers = record["headers"]
        lines.append(
            f"  {headers['dlq.error.class']:<18} {headers['dlq.original.topic']}"
            f"@{headers['dlq.original.partition']}:{headers['dlq.original.offset']}  "
            f"{headers['dlq.error.message'][:80]}"
        )
    if missed:
        lines.append("FAILED: credit note commands of the log that did not settle their note:")
        lines.extend(f"  {problem}" for problem in missed)
    return "\n".join(lines), ok


def _fees_kept(refund: dict[str, Any]) -> str:
    """The return fees a credit note kept ("RESTOCKING_FEE 9.90, RETURN_SHIPPING_FEE 5.95"), or ""."""
    kept: dict[str, Decimal] = {}
    for line in refund["lines"]:
        if "fee" in line:
            gross = Decimal(line["payments"][0]["details"]["cost_gross"])
            kept[line["fee"]] = kept.get(line["fee"], Decimal(0)) - gross
    return ", ".join(f"{kind} {amount}" for kind, amount in kept.items())


def _return_rules(refunds: list[dict[str, Any]], rejections: list[dict[str, Any]]) -> list[str]:
    """What the channels' final-sale and fee rules did, in two counts (README, "Rules per sales
    channel"): so a demo shows the rules at work, not only their documents."""
    refused = [r for r in rejections if r["value"]["params"]["code"] == "FINAL_SALE"]
    charged = [refund for refund in refunds if _fees_kept(refund)]
    if not refused and not charged:
        return []
    total = sum(
        (
            -Decimal(line["payments"][0]["details"]["cost_gross"])
            for refund in charged
            for line in refund["lines"]
            if "fee" in line
        ),
        Decimal(0),
    )
    return [
        "return rules:",
        f"  final-sale refusals: {len(refused)}",
        f"  return fees kept: {total} on {len(charged)} credit note(s)",
    ]


def through_kafka(
    settings: Settings,
    worker: WorkerProcess,
    log: Path,
    rules: Path | None,
    timeout: float = 45.0,
    step_timeout: float = 30.0,
    barrier: Callable[[int], bool] | None = None,
) -> tuple[Collected, list[dict[str, Any]]]:
    """Publish a message log to a running worker, in order, and read back everything it emitted, next to
    what replay says it must emit. Topics carry `settings.topic_prefix`.

    By default each record is published once the one before it was handled. `barrier(n)` narrows
    that: the n-th record (from 1) waits for everything before it only when it returns true, for logs
    whose records are known not to depend on each other's order (bench/hostile.py)."""
    now = datetime.now(UTC)
    expected = [
        {
            **r,
            "topic": settings.dlq_topic
            if r["topic"] == names.DEFAULT_DLQ_TOPIC
            else settings.topic_prefix + r["topic"],
        }
        for r in expected_outputs(log, rules, settings.partitions, now, settings.max_record_bytes)
    ]
    pipeline = Pipeline(load_rules(rules), max_record_bytes=settings.max_record_bytes)
    records = [
        InboundRecord(
            settings.topic_prefix + r.topic, r.value, r.key, r.headers, r.partition, r.offset, r.timestamp
        )
        for r in keyed(stamped(log, now), pipeline)
    ]
    before = worker.handled()
    outputs = [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]
    earlier = {_where(r) for r in asyncio.run(collect(settings, outputs, 10**9, timeout=1.0)).records}

    def after(n: int) -> None:
        if barrier is None or n == len(records) or barrier(n + 1):
            worker.wait_handled(before + n, step_timeout)

    asyncio.run(publish(settings, records, after))
    found = asyncio.run(collect(settings, outputs, len(earlier) + len(expected), timeout))
    found.records = [r for r in found.records if _where(r) not in earlier]
    return found, expected


def _where(record: dict[str, Any]) -> tuple[str, int, int]:
    return record["topic"], record["partition"], record["offset"]


@contextlib.contextmanager
def raising_on_stop_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise `Stopped` in the main thread, once (a second signal must not
    interrupt the cleanup), so that every `finally` that stops a process it started runs.

    While an event loop runs, an exception raised by the handler would end whichever task was running
    at that moment (a Kafka client's reader, whose failure then looks like a lost broker), not the
    run: the handler cancels the loop's tasks instead, and `Stopped` is raised once the loop is left."""
    stopping = False
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise Stopped(signum) from None
        received.append(signum)
        loop.call_soon_threadsafe(_cancel_all, loop)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    except Stopped:
        raise
    except BaseException as exc:
        if received:
            raise Stopped(received[0]) from exc
        raise
    else:
        if received:
            raise Stopped(received[0])
    finally:
        stopping = True
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()


def run(workdir: Path | None, rules: Path | None, demo: Path | None, echo: Any) -> int:
    """Broker, topics, worker (and the demo); every process started here is stopped on return, also
    on SIGINT, SIGTERM and SIGHUP, and a temporary folder (no `workdir`) is removed unless the run
    failed, when it holds the logs to look at."""
    folder = workdir or Path(tempfile.mkdtemp(prefix="oms-postsales-dev-"))
    code = 1
    try:
        with raising_on_stop_signals():
            code = _run(folder, rules, demo, echo)
    except Stopped as stop:
        code = 128 + stop.signum
        echo(f"stopped by {stop}")
    except (BrokerError, RuntimeError) as exc:
        echo(f"oms-postsales: error: {exc}")
        code = 1
    finally:
        if workdir is None:
            if code in (0, *(128 + sig for sig in STOP_SIGNALS)):
                shutil.rmtree(folder, ignore_errors=True)
            else:
                echo(f"kept {folder} (logs of the failed run)")
    return code


def _run(workdir: Path, rules: Path | None, demo: Path | None, echo: Any) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    with LocalBroker(log_dir=workdir) as broker:
        web_port = free_port()
        env = local_env(broker.bootstrap, workdir, rules, web_port)
        settings = settings_from_env(env)
        report = asyncio.run(create_topics(settings, catalogue(settings)))
        echo(
            f"broker  127.0.0.1:{broker.port} (Tansu, pid {broker.pid}); {len(report.created)} topics created"
        )
        worker = WorkerProcess(env, workdir / "worker.log")
        try:
            worker.start()
            worker.wait_ready()
            assert worker.process is not None
            echo(
                f"worker  pid {worker.process.pid}, http://127.0.0.1:{web_port}/ready /health /metrics; "
                f"log {worker.log_path}"
            )
            # Both ports are picked free at each start: the operator verbs, curl and `orders show`
            # reach this broker and worker only with these two settings in their environment.
            echo("for the operator verbs and curl, in another shell:")
            echo(export_line(env))
            if demo is None:
                echo("running; Ctrl-C (or SIGTERM, SIGHUP) stops the worker and the broker")
                while worker.process.poll() is None:
                    time.sleep(0.5)
                return worker.process.returncode or 0
            started = time.monotonic()
            found, expected = through_kafka(settings, worker, demo, rules)
            echo(f"published {demo}")
            text, ok = summary(
                found, expected, time.monotonic() - started, settings.dlq_topic, note_commands(demo)
            )
            echo(text)
            return 0 if ok else 1
        finally:
            code = worker.stop()
            echo(f"stopped worker (exit {code}) and broker")
