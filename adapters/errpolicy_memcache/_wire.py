"""The store's memcached commands, and the text protocol for reading several nodes at once.

A :class:`Command` carries its arguments (for a pymemcache client's API, whose method of
the same name runs it when a batch has one node) and its request bytes and reply reader
(for the fan-out of a batch over several nodes, by either transport: every node is sent
its requests before any reply is read, so reading several copies costs about one round
trip; see docs/memcache/benchmarks.md). A :class:`Connection` wraps a socket, the store's
own (pipelined transport) or a pymemcache client's. Both ways give the same reply values.

A node is not trusted to be well-behaved (docs/memcache/security.md): a reply line is at
most :data:`MAX_LINE` bytes, a value at most the transport's ``max_value``, the grammar
is memcached's exactly (the C round in ``_speedups.c`` reads the same one), and every
read keeps the operation's deadline (:attr:`Connection.deadline`): once it passed, a
read takes only what has already arrived.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import socket
import struct
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final, NamedTuple

__all__ = [
    "KERNEL_TIMEOUTS",
    "MAX_LINE",
    "MAX_VALUE",
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

#: The longest reply line read, without its CRLF: a ``VALUE`` line with memcached's
#: longest key (250 bytes) is under 300; a node that sends more without a line end is
#: broken or hostile, and the read stops there instead of buffering it.
MAX_LINE: Final = 1024

#: The largest value read by default: memcached's default item size limit (``-I 1m``).
MAX_VALUE: Final = 1024 * 1024

_DONTWAIT = socket.MSG_DONTWAIT
_now = time.perf_counter  # the deadline's clock (CLOCK_MONOTONIC, as the C round's)
_LATE = "operation deadline passed"
# memcached's VALUE line: single spaces, a key of printable non-space ASCII, digits only.
_VALUE_LINE = re.compile(rb"VALUE [\x21-\x7e]{1,250} ([0-9]{1,20}) ([0-9]{1,20}) ([0-9]{1,20})")
_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1


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


class GuardedSocket(socket.socket):
    """A socket whose reads keep an operation's deadline and byte budget, for the
    pymemcache clients: their own reader buffers a line until its end comes and a
    value of any declared length. The transport sets both before each operation."""

    deadline: float = math.inf
    budget: int = _U64

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        late = _now() >= self.deadline
        try:
            chunk = super().recv(bufsize, flags | socket.MSG_DONTWAIT if late else flags)
        except BlockingIOError:
            if late:
                raise TimeoutError(_LATE) from None
            raise
        self.budget -= len(chunk)
        if self.budget < 0:
            raise NodeFailure("error", "reply too long")
        return chunk


def kernel_timeout_sockets(read_timeout: float) -> ModuleType:
    """A stand-in for the socket module, for pymemcache's ``socket_module``, whose new
    sockets are :class:`GuardedSocket` objects that wait at most ``read_timeout`` in each
    send and recv, enforced by the kernel where it can (see :func:`_set_read_timeout`;
    the client is then given no timeout of its own, so it does not poll)."""
    kernel = KERNEL_TIMEOUTS  # read now: the tests switch it

    def new_socket(
        family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
    ) -> socket.socket:
        sock = GuardedSocket(family, kind, proto)
        if kernel:
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
    costs one slice per line or value, not a copy of everything after it. ``deadline``
    (``time.perf_counter()`` time) is the current operation's: past it a read does not
    wait. ``max_value`` bounds a value's declared length.
    """

    __slots__ = ("_buf", "_pos", "_sock", "deadline", "max_value", "reused")

    def __init__(self, sock: socket.socket, max_value: int = MAX_VALUE) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0  # the first unread byte of _buf
        self.reused = False
        self.deadline = math.inf
        self.max_value = max_value

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        connect_timeout: float,
        read_timeout: float,
        max_value: int = MAX_VALUE,
    ) -> Connection:
        """Connect within ``connect_timeout``; later reads wait at most ``read_timeout``."""
        sock = socket.create_connection((host, port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _set_read_timeout(sock, read_timeout)
        except OSError:
            sock.close()
            raise
        return cls(sock, max_value)

    def fileno(self) -> int:
        """The socket's file descriptor (for the C ``gets`` round)."""
        return self._sock.fileno()

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except BlockingIOError:  # SO_SNDTIMEO expired: the node stopped reading
            raise TimeoutError("timed out") from None

    def _recv(self) -> bytes:
        """One recv; past the deadline only what already arrived (else a timeout)."""
        late = _now() >= self.deadline
        try:
            chunk = self._sock.recv(_CHUNK, _DONTWAIT if late else 0)
        except BlockingIOError:  # SO_RCVTIMEO expired, or nothing arrived in time
            raise TimeoutError(_LATE if late else "timed out") from None
        if not chunk:
            raise NodeFailure("closed", "connection closed by the server")
        return chunk

    def _fill(self) -> bytes:
        """Receive once more: the buffer (returned) becomes its unread bytes and the new
        ones, from position 0."""
        chunk = self._recv()  # a line is usually read with this one call
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
            if len(buf) - start > MAX_LINE + 1:  # no line end within a line's length
                raise NodeFailure("error", "reply line too long")
            buf = self._fill()
            start = 0
        if end - start > MAX_LINE:
            raise NodeFailure("error", "reply line too long")
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
    if line.startswith(b"SERVER_ERROR"):  # a proxy's backend is down: a node failure
        raise NodeFailure("server_error", line[:80].decode("ascii", "replace"))
    if line == b"ERROR" or line.startswith(b"CLIENT_ERROR"):
        raise NodeFailure("error", line[:80].decode("ascii", "replace"))


def _read_gets(conn: Connection) -> tuple[bytes, int] | None:
    """A ``gets`` reply in memcached's grammar exactly, as the C round reads it (no
    sign, tab, ``_`` or second space); a value above ``conn.max_value`` is an error."""
    line = conn.readline()
    if line == b"END":
        return None
    parsed = _VALUE_LINE.fullmatch(line)
    if parsed is None or int(parsed[1]) > _U32 or max(int(parsed[2]), int(parsed[3])) > _U64:
        _check_error(line)
        raise NodeFailure("error", f"unexpected reply {line[:40]!r}")
    size = int(parsed[2])
    if size > conn.max_value:
        raise NodeFailure("error", "value too large")
    # The value, its CRLF and the closing "END\r\n" usually came in the same recv.
    return conn.read_block(size, b"\r\nEND\r\n"), int(parsed[3])


def _status_reader(*known: bytes) -> Callable[[Connection], str]:
    def status(line: bytes) -> str:
        if line in known:
            return line.decode("ascii")
        _check_error(line)
        raise NodeFailure("error", f"unexpected reply {line[:40]!r}")

    def read(conn: Connection) -> str:
        return status(conn.readline())

    # The C round of store commands reads the line; this judges it (see _transport).
    STATUS[read] = status
    return read


#: The status reply readers' line parsers, by reader: what a line means.
STATUS: dict[Callable[[Connection], Any], Callable[[bytes], str]] = {}


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
