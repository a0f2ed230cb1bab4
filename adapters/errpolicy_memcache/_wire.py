"""The store's memcached commands, and the text protocol for reading several nodes at once.

A :class:`Command` carries its arguments (for a pymemcache client's API, whose method of
the same name runs it when a batch has one node) and its request bytes and reply reader
(for the fan-out of a batch over several nodes, by either transport: every node is sent
its requests before any reply is read, so reading several copies costs about one round
trip; see docs/memcache/benchmarks.md). A :class:`Connection` wraps a socket, the store's
own (pipelined transport) or a pymemcache client's. Both ways give the same reply values.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import struct
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

__all__ = [
    "KERNEL_TIMEOUTS",
    "Command",
    "Connection",
    "NodeFailure",
    "add",
    "cas",
    "delete",
    "gets",
    "kernel_timeout_sockets",
    "set_",
    "touch",
]

_CHUNK = 65536


#: True where the kernel enforces the read timeout (see :func:`_set_read_timeout`): a
#: timeval of two C longs, the layout of 64-bit Linux, the platform the store runs on.
KERNEL_TIMEOUTS = sys.platform.startswith("linux") and struct.calcsize("@l") == 8


def _set_read_timeout(sock: socket.socket, seconds: float) -> None:
    """Make every later send and recv wait at most ``seconds``.

    On 64-bit Linux the kernel enforces it (SO_RCVTIMEO, SO_SNDTIMEO) on a blocking
    socket: one system call per recv. A Python timeout (``settimeout``) would poll
    before each recv and send, which costs as much again; elsewhere it is the fallback.
    A kernel timeout surfaces as BlockingIOError, which send and recv turn into
    TimeoutError.
    """
    if not KERNEL_TIMEOUTS:
        sock.settimeout(seconds)
        return
    # At least 1 µs: a zero timeval means "wait forever".
    whole, micros = divmod(max(round(seconds * 1_000_000), 1), 1_000_000)
    timeval = struct.pack("@ll", whole, micros)
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def kernel_timeout_sockets(read_timeout: float) -> ModuleType | None:
    """A stand-in for the socket module, for pymemcache's ``socket_module``, whose new
    sockets wait at most ``read_timeout`` in each send and recv, enforced by the kernel
    (see :func:`_set_read_timeout`); the client is then given no timeout of its own,
    so it does not poll. None where kernel timeouts are not used."""
    if not KERNEL_TIMEOUTS:
        return None

    def new_socket(
        family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
    ) -> socket.socket:
        sock = socket.socket(family, kind, proto)
        try:
            _set_read_timeout(sock, read_timeout)
        except OSError:
            sock.close()
            raise
        return sock

    module = ModuleType("errpolicy_memcache.kernel_timeout_sockets")
    # Everything but socket() is the real module's (module-level __getattr__, PEP 562).
    module.__dict__.update(socket=new_socket, __getattr__=functools.partial(getattr, socket))
    return module


class NodeFailure(Exception):
    """One node did not answer usefully; ``kind`` is refused, timeout, closed or error."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


class Connection:
    """One TCP connection to one node, with a read buffer.

    The buffer is read from a position rather than cut after each read, so a reply
    costs one slice per line or value, not a copy of everything after it.
    """

    __slots__ = ("_buf", "_pos", "_sock", "reused")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0  # the first unread byte of _buf
        self.reused = False

    @classmethod
    def open(cls, host: str, port: int, connect_timeout: float, read_timeout: float) -> Connection:
        """Connect within ``connect_timeout``; later reads wait at most ``read_timeout``."""
        sock = socket.create_connection((host, port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _set_read_timeout(sock, read_timeout)
        except OSError:
            sock.close()
            raise
        return cls(sock)

    def fileno(self) -> int:
        """The socket's file descriptor (for the C ``gets`` round)."""
        return self._sock.fileno()

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except BlockingIOError:  # SO_SNDTIMEO expired: the node stopped reading
            raise TimeoutError("timed out") from None

    def _recv(self) -> bytes:
        try:
            chunk = self._sock.recv(_CHUNK)
        except BlockingIOError:  # SO_RCVTIMEO expired
            raise TimeoutError("timed out") from None
        if not chunk:
            raise NodeFailure("closed", "connection closed by the server")
        return chunk

    def _fill(self) -> bytes:
        """Receive once more: the buffer (returned) becomes its unread bytes and the new
        ones, from position 0."""
        try:  # _recv() inlined: a line is read with one call less
            chunk = self._sock.recv(_CHUNK)
        except BlockingIOError:  # SO_RCVTIMEO expired
            raise TimeoutError("timed out") from None
        if not chunk:
            raise NodeFailure("closed", "connection closed by the server")
        if self._pos != len(self._buf):  # unread bytes: keep them (else no copy)
            chunk = self._buf[self._pos :] + chunk
        self._buf = chunk
        self._pos = 0
        return chunk

    def _fill_to(self, size: int) -> bytes:
        """Receive until ``size`` bytes are unread: the buffer (returned), from position
        0. One join however many receives: a large value is not copied once per chunk."""
        chunks = [self._buf[self._pos :]]
        have = len(chunks[0])
        while have < size:
            chunk = self._recv()
            chunks.append(chunk)
            have += len(chunk)
        buf = self._buf = b"".join(chunks)
        self._pos = 0
        return buf

    def readline(self) -> bytes:
        """The next line, without its CRLF."""
        start = self._pos
        if start == len(self._buf):  # the usual case: nothing buffered, nothing to search
            buf = self._fill()
            start = 0
        else:
            buf = self._buf
        while (end := buf.find(b"\r\n", start)) < 0:
            buf = self._fill()
            start = 0
        self._pos = end + 2
        return buf[start:end]

    def read_block(self, size: int, trailer: bytes) -> bytes:
        """The next ``size`` bytes, which ``trailer`` must follow (read too); NodeFailure
        "error" if it does not."""
        if size < 0:
            raise NodeFailure("error", f"negative size {size}")
        buf = self._buf
        start = self._pos
        end = start + size
        stop = end + len(trailer)
        if len(buf) < stop:
            buf = self._fill_to(stop - start)
            start, end, stop = 0, size, stop - start
        if not buf.startswith(trailer, end):
            raise NodeFailure("error", "malformed value block")
        if stop == len(buf):  # all read (the usual case): keep no reference to the value
            self._buf = b""
            self._pos = 0
        else:
            self._pos = stop
        return buf[start:end]

    @property
    def clean(self) -> bool:
        """True if no unread bytes are buffered (safe to reuse)."""
        return self._pos == len(self._buf)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


class Command(NamedTuple):
    """One memcached command: its arguments, its request bytes and its reply reader.

    A named tuple: immutable, and about 4x cheaper to make than a frozen dataclass
    (one or more per operation).
    """

    name: str
    key: str
    request: bytes
    read: Callable[[Connection], Any]
    value: bytes | None = None
    ttl: int = 0
    token: int | None = None


def _check_error(line: bytes) -> None:
    if line == b"ERROR" or line.startswith((b"CLIENT_ERROR", b"SERVER_ERROR")):
        raise NodeFailure("error", line[:80].decode("ascii", "replace"))


def _read_gets(conn: Connection) -> tuple[bytes, int] | None:
    line = conn.readline()
    if line == b"END":
        return None
    parts = line.split()
    if len(parts) != 5 or parts[0] != b"VALUE":
        _check_error(line)
        raise NodeFailure("error", f"unexpected reply {line[:40]!r}")
    # The value, its CRLF and the closing "END\r\n" usually came in the same recv.
    return conn.read_block(int(parts[3]), b"\r\nEND\r\n"), int(parts[4])


def _status_reader(*known: bytes) -> Callable[[Connection], str]:
    def read(conn: Connection) -> str:
        line = conn.readline()
        if line in known:
            return line.decode("ascii")
        _check_error(line)
        raise NodeFailure("error", f"unexpected reply {line[:40]!r}")

    return read


_read_store = _status_reader(b"STORED", b"NOT_STORED", b"EXISTS", b"NOT_FOUND")
_read_touch = _status_reader(b"TOUCHED", b"NOT_FOUND")
_read_delete = _status_reader(b"DELETED", b"NOT_FOUND")


def gets(key: str) -> Command:
    """Read a value and its CAS token; the reply is ``(value, cas)`` or None."""
    return Command("gets", key, b"gets " + key.encode("ascii") + b"\r\n", _read_gets)


def _store(verb: bytes, key: str, value: bytes, ttl: int, extra: bytes = b"") -> bytes:
    head = b"%s %s 0 %d %d%s\r\n" % (verb, key.encode("ascii"), ttl, len(value), extra)
    return head + value + b"\r\n"


def set_(key: str, value: bytes, ttl: int) -> Command:
    """Store unconditionally; the reply is ``"STORED"``."""
    return Command("set", key, _store(b"set", key, value, ttl), _read_store, value, ttl)


def add(key: str, value: bytes, ttl: int) -> Command:
    """Store only if absent; the reply is ``"STORED"`` or ``"NOT_STORED"``."""
    return Command("add", key, _store(b"add", key, value, ttl), _read_store, value, ttl)


def cas(key: str, value: bytes, ttl: int, token: int) -> Command:
    """Store only if unchanged since read; ``"STORED"``, ``"EXISTS"`` or ``"NOT_FOUND"``."""
    request = _store(b"cas", key, value, ttl, b" %d" % token)
    return Command("cas", key, request, _read_store, value, ttl, token)


def touch(key: str, ttl: int) -> Command:
    """Renew the TTL without rewriting; ``"TOUCHED"`` or ``"NOT_FOUND"``."""
    request = b"touch %s %d\r\n" % (key.encode("ascii"), ttl)
    return Command("touch", key, request, _read_touch, None, ttl)


def delete(key: str) -> Command:
    """Remove; ``"DELETED"`` or ``"NOT_FOUND"``."""
    return Command("delete", key, b"delete %s\r\n" % key.encode("ascii"), _read_delete)
