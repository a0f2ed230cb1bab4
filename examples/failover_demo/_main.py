"""Run the demo: three memcached nodes, the example Flask app over real HTTP, simulated
users with cookies, six phases of faults, checks that fail loudly."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from errpolicy.testing import configured

from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer, find_memcached

from ._display import Progress, explanations, table
from ._explain import refusals
from ._phases import ALL_DOWN_MODES, build_phases, killed_in_all_down
from ._stats import EventCounter, PhaseStats, phase_stats
from ._traffic import Gate, Recorder, User

REPLICAS = 2
NODES = 3


@dataclass(frozen=True, slots=True)
class Options:
    """The demo's settings, as written to the JSON."""

    users: int
    phase_seconds: float
    recovery_seconds: float
    think_seconds: float
    request_timeout: float
    all_down: str
    json_path: str
    plot_path: str | None
    short: bool
    asgi: bool = False


def parse_args(argv: Sequence[str] | None) -> Options:
    """Command-line options; ``--short`` is for tests and CI."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.failover_demo",
        description=(
            "Three memcached nodes, a Flask app and simulated users over real HTTP, "
            "through six phases of node failures. Exits non-zero if a session is lost, "
            "served stale, or replaced by an empty one."
        ),
    )
    parser.add_argument("--short", action="store_true", help="a few seconds per phase")
    parser.add_argument(
        "--asgi", action="store_true", help="the FastAPI app under uvicorn (the async store)"
    )
    parser.add_argument("--users", type=int, help="simulated users (default 8, short 4)")
    parser.add_argument("--phase-seconds", type=float, help="seconds per phase (default 6)")
    parser.add_argument(
        "--all-down",
        choices=ALL_DOWN_MODES,
        default="mixed",
        help=(
            "how every node goes down: mixed (node 1 killed, 2 and 3 hung; the default), "
            "kill (all killed: every session is lost), hang (all hung)"
        ),
    )
    parser.add_argument(
        "--json",
        default=os.path.join("demo-out", "failover-demo.json"),
        help="where to write the results (default demo-out/failover-demo.json)",
    )
    parser.add_argument("--plot", help="also write a timeline plot, PATH.png or PATH.svg")
    args = parser.parse_args(argv)
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".svg"):
        parser.error("--plot must name a .png or .svg file")
    users = args.users or (4 if args.short else 8)
    if users < 1:
        parser.error("--users must be at least 1")
    phase_seconds = args.phase_seconds or (2.0 if args.short else 6.0)
    return Options(
        users=users,
        phase_seconds=phase_seconds,
        recovery_seconds=max(12.0, 3 * phase_seconds),
        think_seconds=0.02,
        request_timeout=10.0,
        all_down=args.all_down,
        json_path=args.json,
        plot_path=args.plot,
        short=args.short,
        asgi=args.asgi,
    )


def ensure_memcached(err: TextIO) -> str | None:
    """The memcached binary; installed with apt-get when we are root, else None."""
    binary = find_memcached()
    if binary is not None:
        return binary
    explicit = os.environ.get("MEMCACHED")  # a wrong $MEMCACHED is the user's to fix
    if not explicit and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        err.write("failover demo: installing memcached with apt-get\n")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "memcached"], check=False, env=env)
        return find_memcached()
    return None


def kept_meaning(all_down: str) -> str:
    """What "sessions come back as far as memcached kept them" means in this run."""
    killed = killed_in_all_down(all_down, NODES)
    text = (
        "Sessions come back as far as memcached kept them: a killed node (SIGKILL) loses "
        "everything it held, a hung node (SIGSTOP) keeps it. Each session has "
        f"{REPLICAS} copies on {NODES} nodes, so it is lost only when every node holding "
        f"a copy was killed. In this run {killed} of {NODES} nodes were killed while all "
        "were down, so "
    )
    if killed >= REPLICAS:
        return text + "sessions may be lost: those users get a 401 and log in again."
    return text + "every session must come back."


def _copies(node: MemcachedServer) -> int:
    """The items ``node`` holds: here, copies of the users' sessions."""
    return int(node.stats()["curr_items"])


def _state(server: MemcachedServer) -> str:
    """``"up"``, ``"hung"`` (SIGSTOP) or ``"down"`` (killed)."""
    if server.paused:
        return "hung"
    return "up" if server.running else "down"


def _refusal_counts(store: Any) -> dict[str, int]:
    """The store's outcomes so far by kind, summed over its operations ({} without a
    store: another app may keep it elsewhere)."""
    if store is None:
        return {}
    counts: dict[str, int] = {}
    for (_, kind), n in store.stats().outcomes.items():
        counts[kind.value] = counts.get(kind.value, 0) + n
    return counts


def _quiet_logging(log_path: Path) -> logging.Handler:
    """Send log records to a file, so the 503s of the all-down phase do not flood stderr."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return handler


def run(options: Options, err: TextIO, out: TextIO) -> int:
    """Run the phases, print the table, write JSON (and the plot); 0 when all checks hold."""
    from werkzeug.serving import make_server

    from examples.flask_app import create_app

    if ensure_memcached(err) is None:
        err.write(
            "failover demo: memcached was not found; install it with "
            "`sudo apt-get install memcached` (Debian/Ubuntu) or `brew install memcached` "
            "(macOS), or set $MEMCACHED to its path, then run `make demo` again\n"
        )
        return 2
    json_path = Path(options.json_path)
    log_path = json_path.with_suffix(".log")
    handler = _quiet_logging(log_path)
    counter = EventCounter()
    phases = build_phases(options.all_down, REPLICAS, NODES)
    progress = Progress(err, len(phases))
    results: list[PhaseStats] = []
    spans: list[tuple[float, float]] = []
    node_states: list[dict[str, str]] = []
    try:
        with configured(sink=counter), MemcachedCluster(NODES) as cluster:
            progress.say(f"memcached nodes: {', '.join(cluster.addresses)}")
            if options.asgi:
                from ._asgi_server import serve_asgi

                base_url, stop_asgi = serve_asgi(cluster.addresses, secrets.token_hex(32))
                app_store = None  # the table falls back to the counts it saw
                progress.say(f"example FastAPI app: {base_url} ({options.users} users)")
            else:
                app = create_app(cluster.addresses, secret_key=secrets.token_hex(32))
                app_store = app.extensions.get("errpolicy_memcache")
                server = make_server("127.0.0.1", 0, app, threaded=True)
                serving = threading.Thread(target=server.serve_forever, name="http", daemon=True)
                serving.start()
                base_url = f"http://127.0.0.1:{server.server_port}"
                progress.say(f"example Flask app: {base_url} ({options.users} users)")
            epoch = time.monotonic()
            counter.epoch = epoch
            gate = Gate()
            recorder = Recorder(epoch)
            names = [f"u{i + 1:02d}" for i in range(options.users)]
            users = [
                User(
                    name,
                    base_url,
                    gate,
                    recorder,
                    think=options.think_seconds,
                    timeout=options.request_timeout,
                )
                for name in names
            ]
            for user in users:
                user.start()
            try:
                for index, phase in enumerate(phases, 1):
                    copies = None if phase.down is None else _copies(cluster[phase.down])
                    phase.apply(cluster)
                    node_states.append({n.address: _state(n) for n in cluster.servers})
                    counter.phase = phase.name
                    before = _refusal_counts(app_store)
                    start = time.monotonic()
                    progress.phase_started(index, phase.name, phase.title)
                    if phase.down is not None and copies == 0:
                        progress.say(
                            f"   node {phase.down + 1} held no session: no read needs it, "
                            "nothing fails over"
                        )
                    gate.open(phase.name)
                    while True:
                        time.sleep(0.2)
                        elapsed = time.monotonic() - start
                        live = phase_stats(
                            phase,
                            recorder.samples(phase.name),
                            names,
                            counter.counts(phase.name),
                            elapsed,
                            copies,
                        )
                        progress.update(index, live)
                        if elapsed >= options.phase_seconds and (
                            not phase.expect.recover
                            or live.recovered
                            or elapsed >= options.recovery_seconds
                        ):
                            break
                    drained = gate.close(options.request_timeout + 5)
                    end = time.monotonic()
                    if not drained:
                        progress.say("   requests still in flight after the phase ended")
                    final = phase_stats(
                        phase,
                        recorder.samples(phase.name),
                        names,
                        counter.counts(phase.name),
                        end - start,
                        copies,
                        refusals=refusals(before, _refusal_counts(app_store)),
                        started=start - epoch,
                    )
                    results.append(final)
                    spans.append((start - epoch, end - epoch))
                    progress.phase_finished(index, final)
            finally:
                gate.stop()
                for user in users:
                    user.join(options.request_timeout + 5)
                if options.asgi:
                    stop_asgi()
                else:
                    server.shutdown()
                    serving.join(5)
                    store = app.extensions.get("errpolicy_memcache")
                    if store is not None:
                        store.close()
                # SIGKILL: the demo's data is not needed, and an idle memcached takes
                # about a second to exit on SIGTERM.
                for node in cluster.servers:
                    node.kill()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()

    samples = recorder.samples()
    checks = [check for stats in results for check in stats.checks]
    failed = [check for check in checks if not check.passed]
    report: dict[str, Any] = {
        "demo": "errpolicy failover demo",
        "version": 1,
        "options": asdict(options),
        "replicas": REPLICAS,
        "nodes": NODES,
        "passed": not failed,
        "kept_meaning": kept_meaning(options.all_down),
        "recorded_examples": counter.examples,
        "phases": [
            {**stats.as_dict(), "nodes": nodes}
            for stats, nodes in zip(results, node_states, strict=False)
        ],
        "failed_checks": [asdict(check) for check in failed],
        "timeline": [asdict(sample) for sample in samples],
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")

    out.write("\n" + table(results) + "\n\n")
    for line in explanations(results):
        out.write(line + "\n")
    out.write(kept_meaning(options.all_down) + "\n")
    out.write(
        "kept = users whose session survived the phase; notices = events the store's "
        "policy recorded (a replica answered for a failed node) instead of raising.\n"
    )
    out.write(f"results: {json_path}  log: {log_path}\n")
    if options.plot_path:
        from ._plot import write_plot

        write_plot(Path(options.plot_path), samples, results, spans, counter.notice_times)
        out.write(f"plot: {options.plot_path}\n")
    out.flush()
    if failed:
        err.write(f"\nFAILOVER DEMO FAILED: {len(failed)} check(s) broken:\n")
        for check in failed:
            err.write(f"  [{check.phase}] {check.name}. {check.detail}".rstrip() + "\n")
        return 1
    err.write(f"\nall {len(checks)} checks passed\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m examples.failover_demo``."""
    return run(parse_args(argv), sys.stderr, sys.stdout)
