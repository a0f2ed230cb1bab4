"""``python -m bench [--quick] [--json PATH] [--strict] [--skip-memcache]``: every benchmark.

Runs the core benchmarks (:mod:`bench.core_bench`), then, when the module
``bench.memcache_bench`` exists and a memcached binary is available, the memcache
store's benchmarks through ``bench.memcache_bench.main(argv)``, which receives the
same arguments, except that ``--json PATH`` becomes ``--json PATH.memcache.json``
(with ``PATH``'s ``.json`` suffix dropped first) so that the two suites do not
write the same file.

Then, when aiomcache is installed, the asyncio store's benchmarks
(:mod:`bench.aio_bench`) with the same arguments, ``--json PATH`` becoming
``--json PATH.aio.json``; ``--callgrind`` adds their instruction counts.

A missed target reads FAIL in the tables. The exit status is 0 unless a suite
fails, or, with ``--strict``, the core benchmarks miss a target (``--strict`` is
not passed on to the memcache suite).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import shutil
import sys
from collections.abc import Sequence

from bench import core_bench


def _memcached_available() -> bool:
    if importlib.util.find_spec("errpolicy_memcache") is not None:
        from errpolicy_memcache.testing import find_memcached

        return find_memcached() is not None
    return shutil.which("memcached") is not None


def _memcache_argv(argv: list[str], json_path: str | None, suite: str = "memcache") -> list[str]:
    """``argv`` with the JSON path moved aside for the ``suite`` (``PATH.suite.json``)."""
    if json_path is None:
        return argv
    stem = json_path.removesuffix(".json")
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--json" and i + 1 < len(argv):
            out += ["--json", f"{stem}.{suite}.json"]
            skip = True
        elif arg.startswith("--json="):
            out.append(f"--json={stem}.{suite}.json")
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run of every suite")
    parser.add_argument("--json", metavar="PATH", help="write the core results to PATH")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a core target is missed"
    )
    parser.add_argument("--skip-memcache", action="store_true", help="run the core benchmarks only")
    args, _rest = parser.parse_known_args(args_list)

    core_argv = ["--quick"] if args.quick else []
    if args.json:
        core_argv += ["--json", args.json]
    if args.strict:
        core_argv.append("--strict")
    status = core_bench.main(core_argv)

    if args.skip_memcache:
        return status
    if importlib.util.find_spec("bench.memcache_bench") is None:
        print("\nmemcache benchmarks: bench/memcache_bench.py is not there; skipped")
        return status
    if not _memcached_available():
        print("\nmemcache benchmarks: no memcached binary found; skipped")
        return status
    memcache_bench = importlib.import_module("bench.memcache_bench")
    print()
    passthrough = [a for a in args_list if a not in ("--skip-memcache", "--strict")]
    memcache_status = memcache_bench.main(_memcache_argv(passthrough, args.json))
    status = max(status, int(memcache_status or 0))
    if importlib.util.find_spec("aiomcache") is None:
        print("\nasyncio store benchmarks: aiomcache is not installed; skipped")
        return status
    aio_bench = importlib.import_module("bench.aio_bench")
    print()
    return max(status, int(aio_bench.main(_memcache_argv(passthrough, args.json, "aio")) or 0))


if __name__ == "__main__":
    raise SystemExit(main())
