"""``python -m bench.aio_bench [--quick] [--json PATH]``: the asyncio store vs aiomcache.

On the same three local memcached processes, in the same run:

- ``await store.start(sid)`` of an existing session (``replicas=2``: both home nodes
  asked in one round, the copies compared and verified) vs one ``await client.get``
  of aiomcache on the same stored bytes; target <= 1.5x (p50 of single operations,
  the two interleaved in rounds).
- Throughput of 1,000 concurrent tasks on one loop, each reading its own session with
  ``start()``, vs 1,000 concurrent aiomcache ``get`` calls, one each (the same
  connection budget per node: ``max_connections`` and aiomcache's ``pool_size``).

A missed target reads FAIL in the table; the exit status stays 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiomcache

from errpolicy_memcache._ids import storage_key
from errpolicy_memcache._placement import node_seed, rank
from errpolicy_memcache.aio import AsyncMemcacheSessionStore
from errpolicy_memcache.testing import MemcachedCluster

_SECRET = "bench-secret-0123456789abcdef-0123"
_PREFIX = "errpolicy:session:"
_SESSION = {"user_id": 4242, "name": "Ada Lovelace", "roles": ["reader", "editor"]}
_CONNECTIONS = 64


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    ours: float  # seconds: p50 of one operation, or the wall time of the batch
    baseline: float
    ratio: float
    target: float | None

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        return "ok" if self.ratio <= self.target else "FAIL"


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


async def _wall(make: Callable[[int], Awaitable[Any]], tasks: int, repeats: int) -> float:
    """The best wall time of ``tasks`` concurrent calls, over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        await asyncio.gather(*(make(i) for i in range(tasks)))
        best = min(best, time.perf_counter() - began)
    return best


async def run(cluster: MemcachedCluster, quick: bool) -> list[Row]:
    store = AsyncMemcacheSessionStore(
        cluster.addresses, _SECRET, replicas=2, max_connections=_CONNECTIONS
    )
    session = await store.start(None)
    session.update(_SESSION)
    await store.save(session)
    key = storage_key(_PREFIX, session.id)
    home = rank(cluster.servers, [node_seed(a) for a in cluster.addresses], key)[0]
    client = aiomcache.Client(home.host, home.port, pool_size=_CONNECTIONS)
    assert await client.get(key.encode()) is not None
    rows: list[Row] = []

    rounds = 500 if quick else 5000
    for _ in range(100):  # warm both: pooled connections, the verified copy
        await store.start(session.id)
        await client.get(key.encode())
    ours, theirs = await _latencies(
        lambda: store.start(session.id), lambda: client.get(key.encode()), rounds
    )
    rows.append(Row("async start() vs one aiomcache get (p50)", ours, theirs, ours / theirs, 1.5))

    tasks = 1000
    sids = []
    for number in range(tasks):
        own = await store.start(None)
        own["n"] = number
        await store.save(own)
        sids.append(own.id)
    keys = [storage_key(_PREFIX, sid).encode() for sid in sids]
    repeats = 3 if quick else 10

    async def ours_one(i: int) -> None:
        await store.start(sids[i])

    async def theirs_one(i: int) -> None:
        await client.get(keys[i])

    ours_wall = await _wall(ours_one, tasks, repeats)
    theirs_wall = await _wall(theirs_one, tasks, repeats)
    rows.append(
        Row(
            "1,000 concurrent start() vs 1,000 aiomcache get (wall time)",
            ours_wall,
            theirs_wall,
            ours_wall / theirs_wall,
            None,
        )
    )
    await client.close()
    await store.aclose()
    return rows


def _table(rows: Sequence[Row]) -> str:
    lines = [
        "| benchmark | ours | aiomcache | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        target = "-" if row.target is None else f"<= {row.target}x"
        lines.append(
            f"| {row.name} | {row.ours * 1e6:.0f} µs | {row.baseline * 1e6:.0f} µs "
            f"| {row.ratio:.2f}x | {target} | {row.verdict} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aio_bench")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    with MemcachedCluster(3) as cluster:
        rows = asyncio.run(run(cluster, args.quick))
    print(f"Python {platform.python_version()}, {platform.machine()}")
    print(_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"results": [asdict(row) for row in rows]}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
