"""The benchmarks run and produce their rows (timings are never checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python *args`` in the checkout, its output captured as text; never raises for
    the exit code (the tests assert on it)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


EXPECTED_ROWS = [
    "guard enter/exit vs catch_warnings(record=True)+always",
    "guard enter/exit, Guard object reused, vs the same stdlib block",
    "guard(name, policy=...) enter/exit vs the same stdlib block",
    "guard + 1 recorded warning vs catch_warnings equivalent",
    "logger.warning outside guards, installed vs not",
    "logger.debug below level, installed vs not",
    "warnings.warn repeat outside guards, installed vs not",
    "warnings.warn under an ignore filter outside guards, installed vs not",
    "logger.debug below level, capture_log_level=DEBUG (opt-in)",
]


def test_quick_run_produces_every_row(tmp_path: Path) -> None:
    """`python -m bench --quick` prints and writes one row per core benchmark."""
    out = tmp_path / "bench.json"
    proc = python("-m", "bench", "--quick", "--skip-memcache", "--json", str(out), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not proc.stderr, proc.stderr
    expected = EXPECTED_ROWS
    assert expected == [row["name"] for row in json.loads(out.read_text())["results"]]
    for name in expected:
        assert f"| {name} |" in proc.stdout


def test_callgrind_variant_runs_one_loop_and_restores_the_filters() -> None:
    """The body that bench.callgrind runs under valgrind works without valgrind too."""
    code = (
        "import warnings, errpolicy; from bench import callgrind; "
        "before = list(warnings.filters); "
        "[callgrind.run_variant(r.key, w, 20) "
        "for r in callgrind.ROWS for w in ('ours', 'baseline')]; "
        "print(before == list(warnings.filters), errpolicy.installed())"
    )
    proc = python("-c", code, timeout=60)
    assert "" == proc.stderr
    assert "True False" == proc.stdout.strip()


@pytest.mark.memcached
def test_memcache_quick_run_produces_every_row(tmp_path: Path) -> None:
    """`python -m bench.memcache_bench --quick` runs every comparison over real memcached
    (both transports) and writes its rows; timings are not checked."""
    out = tmp_path / "memcache.json"
    proc = python("-m", "bench.memcache_bench", "--quick", "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = [row["name"] for row in json.loads(out.read_text())]
    expected = [
        "start() existing session, replicas=2 [pymemcache]",
        "start() existing session, replicas=2 [pipelined]",
        "network floor: bare pipelined gets to the 2 home nodes (no decoding)",
        "start() of a session this process does not remember [pymemcache]",
        "start() of a 4 KiB session [pymemcache]",
        "start() of a 16 KiB session [pipelined]",
        "start() of a 64 KiB session [pymemcache]",
        "save() replicas=2 [pymemcache]",
        "start() while the primary hangs, breaker open (default store) [pipelined]",
        "start() after the primary hung and came back [pymemcache]",
        "start() as the first read of a session after a fault (all nodes asked) [pymemcache]",
    ]
    assert [True] * len(expected) == [name in names for name in expected]
    assert all(row["store_p50"] > 0 and row["base_p50"] > 0 for row in json.loads(out.read_text()))


@pytest.mark.memcached
def test_memcache_callgrind_variant_runs_every_state_without_valgrind() -> None:
    """The body that bench.memcache_callgrind runs under valgrind sets every state up,
    runs both operations and undoes the state (no memcached left paused)."""
    code = (
        "from bench import memcache_callgrind as m; "
        "[m.run_variant(s, w, 5) for s in m.STATES for w in ('store', 'baseline')]; "
        "print(len(m.STATES))"
    )
    proc = python("-c", code, timeout=300)
    assert ("", "8") == (proc.stderr, proc.stdout.strip())


AIO_ROWS = [
    "async start() vs one aiomcache get (p50)",
    "network floor: bare asyncio gets to the 2 home nodes vs one aiomcache get (p50)",
    "1,000 concurrent start() vs 1,000 aiomcache get (wall time)",
]


@pytest.mark.memcached
def test_aio_quick_run_produces_every_row(tmp_path: Path) -> None:
    """`python -m bench.aio_bench --quick` runs every async comparison over real memcached."""
    out = tmp_path / "aio.json"
    proc = python("-m", "bench.aio_bench", "--quick", "--json", str(out), timeout=300)
    assert (0, "") == (proc.returncode, proc.stderr)
    rows = json.loads(out.read_text())["results"]
    assert AIO_ROWS == [row["name"] for row in rows]
    assert all(row["ours"] > 0 and row["baseline"] > 0 for row in rows)
    assert [None] * len(AIO_ROWS) == [row["ir_ratio"] for row in rows]


@pytest.mark.memcached
def test_bench_runs_the_async_suite_with_its_own_json(tmp_path: Path) -> None:
    """`python -m bench` runs the async rows after the other suites, into PATH.aio.json."""
    out = tmp_path / "all.json"
    code = (
        "import sys; import bench.__main__ as m, bench.core_bench as c, bench.memcache_bench as b; "
        "c.main = b.main = lambda argv: 0; "
        f"sys.exit(m.main(['--quick', '--json', {str(out)!r}]))"
    )
    proc = python("-c", code, timeout=300)
    assert (0, "") == (proc.returncode, proc.stderr)
    rows = json.loads((tmp_path / "all.aio.json").read_text())["results"]
    assert AIO_ROWS == [row["name"] for row in rows]
    assert all(f"| {name} |" in proc.stdout for name in AIO_ROWS)


def test_aio_table_puts_the_instruction_counts_beside_the_timed_ratio() -> None:
    """With callgrind's counts, a row reads its Ir per operation and their ratio."""
    from bench.aio_bench import START, Row, table

    row = Row(START, 90e-6, 60e-6, 1.5, 1.5, ours_ir=150_000.0, baseline_ir=100_000.0)
    expected = f"| {START} | 90 µs | 60 µs | 1.50x | <= 1.5x | ok | 150,000 | 100,000 | 1.50x |"
    assert expected == table([row]).splitlines()[-1]


@pytest.mark.memcached
def test_aio_callgrind_variant_runs_every_operation_without_valgrind() -> None:
    """The body that bench.aio_callgrind runs under valgrind works without valgrind."""
    code = (
        "from bench import aio_callgrind as m; "
        "ops = [w for p in m.PAIRS.values() for w in (p.ours, p.theirs)]; "
        "[m.run_variant(w, 1) for w in ops]; print(' '.join(ops))"
    )
    proc = python("-c", code, timeout=300)
    assert ("", "start get floor get many-start many-get") == (proc.stderr, proc.stdout.strip())
