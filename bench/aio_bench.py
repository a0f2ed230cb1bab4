"""``python -m bench.aio_bench [--quick] [--json PATH] [--callgrind]``: async store vs aiomcache.

On the same three local memcached processes, in the same run:

- ``await store.start(sid)`` of an existing session (``replicas=2``: both home nodes
  asked in one round, the copies compared and verified) vs one ``await client.get``
  of aiomcache on the same stored bytes; target <= 1.5x (p50 of single operations,
  the two interleaved one by one, so that the machine's load hits both alike).
- The network floor of that read, to explain it (no target): two bare asyncio
  protocols send ``gets`` to the two home nodes and wait for both replies' ends (no
  parsing, no timer), vs the same aiomcache get.
- Throughput of 1,000 concurrent tasks on one loop, each reading its own session with
  ``start()``, vs 1,000 concurrent aiomcache ``get`` calls, one each (the same
  connection budget per node: ``max_connections`` and aiomcache's ``pool_size``);
  the two alternate, best wall time of each.

The store gets 2-minute timeouts: aiomcache has none, and 1,000 tasks on a loaded
loop (or under valgrind) would otherwise time a node out and measure the failover.

``--callgrind`` also counts the instructions of one operation of each row under
valgrind (:mod:`bench.aio_callgrind`) and prints them beside the timed ratio: the
timed ratio moves with a loaded machine, the count does not.

A missed target reads FAIL in the table; the exit status stays 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import aiomcache
import errpolicy

from errpolicy_memcache._ids import storage_key
from errpolicy_memcache._placement import node_seed, rank
from errpolicy_memcache.aio import AsyncMemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster

_SECRET = "bench-secret-0123456789abcdef-0123"
_PREFIX = "errpolicy:session:"
_SESSION = {"user_id": 4242, "name": "Ada Lovelace", "roles": ["reader", "editor"]}
_CONNECTIONS = 64
_TIMEOUT = 120.0
TASKS = 1000

START = "async start() vs one aiomcache get (p50)"
FLOOR = "network floor: bare asyncio gets to the 2 home nodes vs one aiomcache get (p50)"
MANY = "1,000 concurrent start() vs 1,000 aiomcache get (wall time)"
NAMES = (START, FLOOR, MANY)


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    ours: float  # seconds: p50 of one operation, or the wall time of the batch
    baseline: float
    ratio: float
    target: float | None
    ours_ir: float | None = None  # instructions of one operation (callgrind), per session
    baseline_ir: float | None = None

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        return "ok" if self.ratio <= self.target else "FAIL"

    @property
    def ir_ratio(self) -> float | None:
        if self.ours_ir is None or not self.baseline_ir:
            return None
        return self.ours_ir / self.baseline_ir


@dataclass(frozen=True, slots=True)
class Setup:
    """A store and an aiomcache client on the same cluster, with stored sessions."""

    store: AsyncMemcacheSessionStore
    client: aiomcache.Client
    sid: str  # the session read again and again
    key: bytes
    sids: list[str]  # TASKS sessions, one per concurrent task
    keys: list[bytes]
    home: list[tuple[str, int]]  # the home nodes of ``sid``, in order

    async def close(self) -> None:
        await self.client.close()
        await self.store.aclose()


async def prepare(cluster: MemcachedCluster, sessions: int = TASKS) -> Setup:
    """Store one session and ``sessions`` more; the client reads from the first's home."""
    # Generous timeouts, as aiomcache has none: 1,000 tasks on a loaded loop (or under
    # valgrind) would otherwise time a node out and measure the failover path instead.
    store = AsyncMemcacheSessionStore(
        cluster.addresses,
        _SECRET,
        replicas=2,
        max_connections=_CONNECTIONS,
        connect_timeout=_TIMEOUT,
        timeout=_TIMEOUT,
    )
    session = await store.start(None)
    session.update(_SESSION)
    await store.save(session)
    key = storage_key(_PREFIX, session.id)
    ranked = rank(cluster.servers, [node_seed(a) for a in cluster.addresses], key)
    client = aiomcache.Client(ranked[0].host, ranked[0].port, pool_size=_CONNECTIONS)
    assert await client.get(key.encode()) is not None
    sids = []
    for number in range(sessions):
        own = await store.start(None)
        own["n"] = number
        await store.save(own)
        sids.append(own.id)
    keys = [storage_key(_PREFIX, sid).encode() for sid in sids]
    home = [(server.host, server.port) for server in ranked[:2]]
    return Setup(store, client, session.id, key.encode(), sids, keys, home)


def operations(setup: Setup) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One operation of each contender, by name (the callgrind variants use them too)."""
    store, client = setup.store, setup.client

    async def many_ours() -> None:
        await asyncio.gather(*(store.start(sid) for sid in setup.sids))

    async def many_theirs() -> None:
        await asyncio.gather(*(client.get(key) for key in setup.keys))

    return {
        "start": lambda: store.start(setup.sid),
        "get": lambda: client.get(setup.key),
        "many-start": many_ours,
        "many-get": many_theirs,
    }


class _Bare(asyncio.Protocol):
    """A connection that only notices where a ``gets`` reply ends (no parsing)."""

    def __init__(self, done: Callable[[], None]) -> None:
        self.done = done
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP connection

    def data_received(self, data: bytes) -> None:
        if data.endswith(b"END\r\n"):
            self.done()


async def bare_gets(home: Sequence[tuple[str, int]], key: bytes) -> Callable[[], Awaitable[None]]:
    """Send ``gets key`` to every home node, then wait until each reply ended (no parsing,
    no timer, one future): the least a two-copy read can cost on asyncio."""
    loop = asyncio.get_running_loop()
    waiting: list[Any] = [0, None]  # replies still owed, the future done when none are

    def done() -> None:
        waiting[0] -= 1
        if not waiting[0]:
            waiting[1].set_result(None)

    bare = [
        (await loop.create_connection(lambda: _Bare(done), host, port))[1] for host, port in home
    ]
    request = b"gets " + key + b"\r\n"

    async def floor() -> None:
        waiting[0] = len(bare)
        waiting[1] = loop.create_future()
        for connection in bare:
            connection.transport.write(request)  # type: ignore[union-attr]  # connected
        await waiting[1]

    return floor


async def _latencies(
    ours: Callable[[], Awaitable[Any]], baseline: Callable[[], Awaitable[Any]], rounds: int
) -> tuple[float, float]:
    """p50 of each, interleaved one by one so that the machine's load hits both."""
    mine: list[float] = []
    theirs: list[float] = []
    clock = time.perf_counter
    for _ in range(rounds):
        began = clock()
        await ours()
        mine.append(clock() - began)
        began = clock()
        await baseline()
        theirs.append(clock() - began)
    return statistics.median(mine), statistics.median(theirs)


async def _walls(
    ours: Callable[[], Awaitable[Any]], baseline: Callable[[], Awaitable[Any]], repeats: int
) -> tuple[float, float]:
    """The best wall time of each batch, the two alternating."""
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for index, batch in enumerate((ours, baseline)):
            began = time.perf_counter()
            await batch()
            best[index] = min(best[index], time.perf_counter() - began)
    return best[0], best[1]


async def run(cluster: MemcachedCluster, quick: bool) -> list[Row]:
    setup = await prepare(cluster)
    ops = operations(setup)
    floor = await bare_gets(setup.home, setup.key)
    rounds = 500 if quick else 5000
    for _ in range(100):  # warm all: pooled connections, the verified copy
        await ops["start"]()
        await ops["get"]()
        await floor()
    rows: list[Row] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as the sync benchmarks: a collection lands on one side at random
    try:
        ours, theirs = await _latencies(ops["start"], ops["get"], rounds)
        rows.append(Row(START, ours, theirs, ours / theirs, 1.5))
        bare, theirs = await _latencies(floor, ops["get"], rounds)
        rows.append(Row(FLOOR, bare, theirs, bare / theirs, None))
        ours, theirs = await _walls(ops["many-start"], ops["many-get"], 3 if quick else 10)
        rows.append(Row(MANY, ours, theirs, ours / theirs, None))
    finally:
        if gc_was_enabled:
            gc.enable()
    await setup.close()
    return rows


def _ir(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table; the Ir columns read ``-`` without ``--callgrind``."""
    lines = [
        "| benchmark | ours | aiomcache | ratio | target | | ours Ir/op | aiomcache Ir/op "
        "| Ir ratio |",
        "|---|---|---|---|---|---|---:|---:|---:|",
    ]
    for row in rows:
        target = "-" if row.target is None else f"<= {row.target}x"
        ir_ratio = "-" if row.ir_ratio is None else f"{row.ir_ratio:.2f}x"
        lines.append(
            f"| {row.name} | {row.ours * 1e6:.0f} µs | {row.baseline * 1e6:.0f} µs "
            f"| {row.ratio:.2f}x | {target} | {row.verdict} "
            f"| {_ir(row.ours_ir)} | {_ir(row.baseline_ir)} | {ir_ratio} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aio_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument(
        "--callgrind", action="store_true", help="also count instructions (valgrind, slow)"
    )
    args, _unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    previous = errpolicy.get_config()
    errpolicy.configure(sink=errpolicy.NullSink())  # the sink's cost is the application's
    try:
        with MemcachedCluster(3) as cluster:
            rows = asyncio.run(run(cluster, args.quick))
    finally:
        errpolicy.configure(sink=previous.sink)
    if args.callgrind:
        from bench import aio_callgrind

        counts = aio_callgrind.count_all()
        rows = [
            replace(
                row,
                ours_ir=counts[row.name]["ours_ir"],
                baseline_ir=counts[row.name]["baseline_ir"],
            )
            if row.name in counts
            else row
            for row in rows
        ]
    print(
        f"asyncio session store vs aiomcache (Python {platform.python_version()}, "
        f"{platform.machine()}, interleaved, loopback)"
    )
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            payload = [{**asdict(row), "ir_ratio": row.ir_ratio} for row in rows]
            json.dump({"results": payload}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
