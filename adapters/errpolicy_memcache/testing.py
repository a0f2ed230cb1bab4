"""Real memcached processes for tests, demos and benchmarks.

Each :class:`MemcachedServer` is a child process listening on 127.0.0.1 only (UDP off),
with fault injection: :meth:`~MemcachedServer.kill` (SIGKILL), :meth:`~MemcachedServer.pause`
(SIGSTOP, a hung node whose socket still accepts connections),
:meth:`~MemcachedServer.resume` and :meth:`~MemcachedServer.restart` (an empty cache on the
same port). Every started process is also stopped at interpreter exit, so none is orphaned.
:class:`Clocks` is every clock a store's core reads, for a store's ``clock`` option
(a simulation's time).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from types import TracebackType

from ._clocks import Clocks

__all__ = ["Clocks", "MemcachedCluster", "MemcachedError", "MemcachedServer", "find_memcached"]

_HOST = "127.0.0.1"
_READY_TIMEOUT = 10.0
_CANDIDATES = ("/usr/bin/memcached", "/usr/local/bin/memcached", "/opt/homebrew/bin/memcached")

_live: set[MemcachedServer] = set()
_live_lock = threading.Lock()


class MemcachedError(RuntimeError):
    """A memcached process could not be found, started or reached."""


def find_memcached() -> str | None:
    """Return the path of the memcached binary, or None if there is none.

    ``$MEMCACHED`` wins, then ``memcached`` on ``$PATH``, then the usual install locations.
    """
    explicit = os.environ.get("MEMCACHED")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("memcached")
    if found:
        return found
    for candidate in _CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _served_by(port: int) -> int | None:
    """The pid of the memcached answering on ``port`` (from its ``stats``), or None if
    what answers is not (yet) memcached."""
    with socket.create_connection((_HOST, port), timeout=0.5) as sock:
        sock.sendall(b"stats\r\n")
        reply = b""
        while not reply.endswith(b"END\r\n") and len(reply) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    for line in reply.split(b"\r\n"):
        if line.startswith(b"STAT pid "):
            return int(line[9:])
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class MemcachedServer:
    """One memcached process on 127.0.0.1; ``port=None`` picks a free port.

    Usable as a context manager (started on enter, stopped on exit).
    """

    def __init__(
        self,
        port: int | None = None,
        memory_mb: int = 64,
        extra_args: Sequence[str] = (),
        *,
        binary: str | None = None,
    ) -> None:
        self._requested_port = port
        self._port: int | None = port
        self.memory_mb = memory_mb
        self.extra_args = tuple(extra_args)
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    def __repr__(self) -> str:
        state = "paused" if self._paused else ("running" if self.running else "stopped")
        return f"<MemcachedServer {_HOST}:{self._port} {state}>"

    @property
    def host(self) -> str:
        """Always ``"127.0.0.1"``."""
        return _HOST

    @property
    def port(self) -> int:
        """The TCP port; known once the server has been started (or was given)."""
        if self._port is None:
            raise MemcachedError("the server has not been started yet, so it has no port")
        return self._port

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``, the form the session store takes."""
        return f"{_HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process is alive (also while paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._paused and self.running

    @property
    def pid(self) -> int | None:
        """The process id, or None when not running."""
        return self._proc.pid if self.running and self._proc is not None else None

    def start(self) -> MemcachedServer:
        """Start the process and wait until it answers ``version``; return self."""
        if self.running:
            raise MemcachedError(f"{self!r} is already running")
        attempts = 5 if self._requested_port is None else 1
        last: MemcachedError | None = None
        for _ in range(attempts):
            if self._requested_port is None:
                self._port = _free_port()
            try:
                self._spawn()
            except MemcachedError as exc:
                # Another process may take the free port between probing and binding.
                last = exc
                continue
            return self
        assert last is not None
        raise last

    def _spawn(self) -> None:
        binary = self._binary or find_memcached()
        if binary is None:
            raise MemcachedError("memcached not found (install it, or set $MEMCACHED)")
        args = [binary, "-l", _HOST, "-p", str(self.port), "-U", "0", "-m", str(self.memory_mb)]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args += ["-u", "root"]
        args += self.extra_args
        self._close_log()
        self._log = tempfile.NamedTemporaryFile(prefix="memcached-", suffix=".log")  # noqa: SIM115  # kept open for the process's whole life
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._paused = False
        with _live_lock:
            _live.add(self)
        try:
            self._wait_ready()
        except MemcachedError:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            if not self.running:
                raise MemcachedError(f"memcached exited at start: {self._read_log()!r}")
            try:
                pid = _served_by(self.port)
            except OSError:
                pid = None
            if pid is not None:
                # Another process may have taken the port while this one was down (a
                # restart keeps its port): its answer must not pass for this server's.
                if self._proc is not None and pid == self._proc.pid:
                    return
                raise MemcachedError(f"port {self.port} is served by another process ({pid})")
            if time.monotonic() > deadline:
                raise MemcachedError(f"memcached on port {self.port} did not become ready")
            time.sleep(0.01)

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        with open(self._log.name, "rb") as f:
            return f.read(2000).decode(errors="replace").strip()

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def _forget(self) -> None:
        self._proc = None
        self._paused = False
        with _live_lock:
            _live.discard(self)

    def kill(self) -> None:
        """SIGKILL the process and wait for it (a crashed node; no-op if not running)."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._forget()

    def pause(self) -> None:
        """SIGSTOP the process and wait until it is stopped: connections are still
        accepted (by the kernel), but nothing is answered."""
        if not self.running or self._proc is None:
            raise MemcachedError(f"cannot pause {self!r}")
        if self._paused:
            return
        self._proc.send_signal(signal.SIGSTOP)
        # The signal is asynchronous: wait until the child is really stopped, or a request
        # sent right after pause() could still be answered.
        os.waitpid(self._proc.pid, os.WUNTRACED)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT a paused process; it answers again, with its old data."""
        if not self.running or self._proc is None:
            raise MemcachedError(f"cannot resume {self!r}")
        if not self._paused:
            return
        self._proc.send_signal(signal.SIGCONT)
        os.waitpid(self._proc.pid, os.WCONTINUED)
        self._paused = False

    def restart(self) -> None:
        """Replace the process by a fresh one on the same port (an empty cache)."""
        self.kill()
        self._requested_port = self.port
        self._spawn()

    def stop(self) -> None:
        """End the process and wait for it; also works on a paused or killed server.

        SIGKILL: memcached keeps nothing on disk, and its SIGTERM shutdown waits for its
        one-second clock tick, which would slow every test down.
        """
        self.kill()
        self._close_log()

    def stats(self) -> dict[str, str]:
        """The server's ``stats`` counters, read over a fresh connection."""
        with socket.create_connection((_HOST, self.port), timeout=2.0) as sock:
            sock.sendall(b"stats\r\n")
            buf = b""
            while not buf.endswith(b"END\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise MemcachedError("connection closed while reading stats")
                buf += chunk
        result: dict[str, str] = {}
        for line in buf.decode().splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == "STAT":
                result[parts[1]] = parts[2]
        return result

    def __enter__(self) -> MemcachedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class MemcachedCluster:
    """Several :class:`MemcachedServer` on distinct free ports; a context manager."""

    def __init__(self, size: int = 3, memory_mb: int = 64, extra_args: Iterable[str] = ()) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one server, not {size}")
        extra = tuple(extra_args)
        self.servers: list[MemcachedServer] = [
            MemcachedServer(memory_mb=memory_mb, extra_args=extra) for _ in range(size)
        ]

    def __repr__(self) -> str:
        return f"<MemcachedCluster {self.servers!r}>"

    def __len__(self) -> int:
        return len(self.servers)

    def __getitem__(self, index: int) -> MemcachedServer:
        return self.servers[index]

    @property
    def addresses(self) -> list[str]:
        """The ``"127.0.0.1:PORT"`` of every server, in order."""
        return [server.address for server in self.servers]

    def start(self) -> MemcachedCluster:
        """Start every server; if one fails, stop those already started and re-raise."""
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every server (also the killed or paused ones)."""
        for server in self.servers:
            if server.running and server._proc is not None:
                server._proc.kill()  # signal them all first, then reap each
        for server in self.servers:
            server.stop()

    def __enter__(self) -> MemcachedCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()
