"""The nemesis: real memcached nodes and the faults the scenarios inject into them, each
recorded as a :class:`NodeEvent` on the history's clock."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable

from errpolicy_memcache.testing import MemcachedServer

from ._history import Fault, NodeEvent, Recorder

SHORT_PAUSE = 0.15  # under the store's timeout: requests only wait
LONG_PAUSE = (1.0, 2.0)  # over it: writes time out and land when the node resumes (lost acks)


class Nodes:
    """``count`` memcached nodes on loopback; the last ``evicting`` ones get a tiny
    memory limit and a filler thread that keeps them evicting."""

    def __init__(self, recorder: Recorder, count: int = 5, evicting: int = 0) -> None:
        self._recorder = recorder
        self.servers = [MemcachedServer(memory_mb=32) for _ in range(count - evicting)]
        self.servers += [MemcachedServer(memory_mb=2) for _ in range(evicting)]
        self.evicting = frozenset(range(count - evicting, count))
        self._lock = threading.Lock()
        self._held: dict[int, socket.socket] = {}  # the ports of killed nodes, reserved
        self._stop = threading.Event()
        self._fillers: list[threading.Thread] = []

    @property
    def addresses(self) -> list[str]:
        """``"127.0.0.1:PORT"`` of every node, in order."""
        return [server.address for server in self.servers]

    def __enter__(self) -> Nodes:
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise
        for index in sorted(self.evicting):
            filler = threading.Thread(target=self._fill, args=(index,), daemon=True)
            filler.start()
            self._fillers.append(filler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the fillers and every node (also the paused or killed ones)."""
        self._stop.set()
        for filler in self._fillers:
            filler.join(timeout=5)
        for server in self.servers:
            server.stop()
        for held in self._held.values():
            held.close()
        self._held.clear()

    def _fill(self, index: int) -> None:
        """Keep writing items of about a session's size, so the node evicts sessions."""
        server = self.servers[index]
        rng = random.Random(index)
        sent = 0
        while not self._stop.is_set():
            try:
                with socket.create_connection((server.host, server.port), timeout=1.0) as sock:
                    while not self._stop.is_set():
                        batch = b"".join(
                            b"set filler:%d 0 0 %d noreply\r\n%s\r\n"
                            % (sent + i, size, b"f" * size)
                            for i, size in enumerate(rng.randint(300, 700) for _ in range(50))
                        )
                        sock.sendall(batch)
                        sent += 50
                        time.sleep(0.02)  # about 2,500 items a second: sessions last seconds
            except OSError:
                time.sleep(0.1)

    # -- faults ----------------------------------------------------------------------

    def _do(self, index: int, fault: Fault, action: Callable[[MemcachedServer], None]) -> None:
        server = self.servers[index]
        with self._lock:
            start = time.monotonic()
            action(server)
            end = time.monotonic()
        self._recorder.event(NodeEvent(server.address, fault, start, end))

    def kill(self, index: int) -> None:
        """SIGKILL: the node is gone, with everything it held.

        Its port stays reserved until :meth:`start`: bound but not listening, so a
        connection is refused as by a dead node, and no other process can take the port
        meanwhile (the ports are in the ephemeral range: any test run on the machine
        picking a free port, or any connection's local port, could; a node restarted
        then failed to bind and exited while the other process's memcached answered for
        it, and the nemesis later found it stopped).
        """

        def kill(server: MemcachedServer) -> None:
            server.kill()
            if index not in self._held:
                self._held[index] = _reserve(server.port)

        self._do(index, Fault.KILL, kill)

    def start(self, index: int) -> None:
        """Start an empty node on the same port (after :meth:`kill`), then free the
        port's reservation (memcached binds beside it: both reuse the address)."""

        def start(server: MemcachedServer) -> None:
            server.restart()
            held = self._held.pop(index, None)
            if held is not None:
                held.close()

        self._do(index, Fault.START, start)

    def restart(self, index: int) -> None:
        """Kill and start at once: the node comes back empty."""
        self.kill(index)
        self.start(index)

    def pause(self, index: int) -> None:
        """SIGSTOP: a hung node that still accepts connections."""
        self._do(index, Fault.PAUSE, MemcachedServer.pause)

    def resume(self, index: int) -> None:
        """SIGCONT: the node answers again, with its data and any writes that waited."""
        self._do(index, Fault.RESUME, MemcachedServer.resume)

    def flush(self, index: int) -> None:
        """``flush_all``: the node stays up but forgets everything."""
        self._do(index, Fault.FLUSH, _flush_all)

    def heal(self) -> None:
        """Every node running and answering."""
        for index, server in enumerate(self.servers):
            if server.paused:
                self.resume(index)
            elif not server.running:
                self.start(index)

    def evicted(self) -> frozenset[str]:
        """The evicting nodes, and any other that evicted an item (the checker must not
        count on what such a node held; 32 MB is far more than a run writes)."""
        found = {self.servers[i].address for i in self.evicting}
        for server in self.servers:
            if server.running and not server.paused and int(server.stats()["evictions"]):
                found.add(server.address)
        return frozenset(found)


def _reserve(port: int) -> socket.socket:
    """A socket bound to ``port`` on loopback, not listening."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        held.bind(("127.0.0.1", port))
    except OSError:
        held.close()
        raise
    return held


def _flush_all(server: MemcachedServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=2.0) as sock:
        sock.sendall(b"flush_all\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(64)
            if not chunk:
                break
            reply += chunk
    if reply != b"OK\r\n":
        raise RuntimeError(f"flush_all on {server.address}: {reply!r}")


# -- one fault on one node, healed before returning --------------------------------------

Wait = Callable[[float], bool]  # sleeps, returns True if the run is over


FAULTS = ("kill", "hang-short", "hang-long", "restart", "flush")


class Deck:
    """The single faults in a random order, each once per round: a short run still
    injects every kind."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._left: list[str] = []

    def draw(self) -> str:
        """The next fault's name."""
        if not self._left:
            self._left = self._rng.sample(FAULTS, len(FAULTS))
        return self._left.pop()


def single_fault(nodes: Nodes, index: int, name: str, rng: random.Random, wait: Wait) -> None:
    """The fault ``name`` (one of :data:`FAULTS`) on node ``index``, healed again."""
    if name == "kill":
        nodes.kill(index)
        wait(rng.uniform(0.5, 3.0))
        nodes.start(index)
    elif name == "hang-short":
        nodes.pause(index)
        time.sleep(SHORT_PAUSE)
        nodes.resume(index)
    elif name == "hang-long":
        nodes.pause(index)
        wait(rng.uniform(*LONG_PAUSE))
        nodes.resume(index)
    elif name == "restart":
        nodes.restart(index)
    else:
        nodes.flush(index)
