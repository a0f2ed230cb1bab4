"""The failover demo in short mode, run as ``make demo`` runs it, and its JSON checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PHASES = ["all-up", "one-killed", "one-hung", "restarted", "all-down", "all-back"]


@dataclass(frozen=True)
class DemoRun:
    """The finished demo: exit code, output, parsed JSON and the plot's path."""

    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any]
    plot: Path

    def phase(self, name: str) -> dict[str, Any]:
        return next(p for p in self.report["phases"] if p["name"] == name)


@pytest.fixture(scope="module")
def demo(memcached_binary: str, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One short run of the demo, shared by the tests of this module."""
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.failover_demo",
            "--short",
            "--json",
            str(out / "demo.json"),
            "--plot",
            str(out / "demo.svg"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    report = json.loads((out / "demo.json").read_text()) if (out / "demo.json").exists() else {}
    return DemoRun(result.returncode, result.stdout, result.stderr, report, out / "demo.svg")


pytestmark = pytest.mark.slow


def test_demo_passes_its_own_checks(demo: DemoRun):
    """The short demo exits 0 with every check passed."""
    assert (0, True, []) == (demo.returncode, demo.report["passed"], demo.report["failed_checks"])


def test_demo_runs_the_six_phases_in_order(demo: DemoRun):
    """The JSON lists the six phases in the documented order."""
    assert PHASES == [phase["name"] for phase in demo.report["phases"]]


def test_no_session_lost_while_one_node_is_down(demo: DemoRun):
    """With one node killed, every user keeps the session and no request fails."""
    phase = demo.phase("one-killed")
    assert (0, 0, 0, phase["users"]) == (
        phase["lost"],
        phase["unavailable"],
        phase["errors"],
        phase["sessions_kept"],
    )


def test_failover_is_recorded_as_notices(demo: DemoRun):
    """The failover shows up as recorded notices, not as errors, whenever the killed
    node held a session copy (with 4 users, no copy on it is a 1 in 81 chance)."""
    phase = demo.phase("one-killed")
    copies = phase["down_node_copies"]
    assert (True, True) == (copies >= 0, phase["notices"] > 0 or copies == 0)


def test_all_down_answers_only_clean_503s(demo: DemoRun):
    """With every node down each request is a clean 503, never a fresh empty session."""
    phase = demo.phase("all-down")
    assert (phase["requests"], 0, 0) == (phase["unavailable"], phase["lost"], phase["errors"])


def test_sessions_come_back_with_the_nodes(demo: DemoRun):
    """After the outage every user is served again with the same session."""
    phase = demo.phase("all-back")
    assert (True, 0, phase["users"]) == (
        phase["recovered"],
        phase["lost"],
        phase["sessions_kept"],
    )


def test_all_down_means_one_node_killed_and_two_hung(demo: DemoRun):
    """By default the outage kills one node and hangs the two others."""
    states = sorted(demo.phase("all-down")["nodes"].values())
    assert ["down", "hung", "hung"] == states


def test_timeline_has_every_request(demo: DemoRun):
    """The JSON timeline holds one entry per request counted in the phases."""
    total = sum(phase["requests"] for phase in demo.report["phases"])
    assert total == len(demo.report["timeline"])


def test_plot_is_written_as_svg(demo: DemoRun):
    """``--plot PATH.svg`` writes an SVG document."""
    assert "<svg" in demo.plot.read_text()[:2000]


def test_table_is_printed(demo: DemoRun):
    """The summary table names every phase on stdout."""
    assert all(name in demo.stdout for name in PHASES)


def _sample(outcome: str, phase: str = "p") -> Any:
    from examples.failover_demo._traffic import Sample

    return Sample(0.0, phase, "u1", "hit", outcome, 200, 1.0)


def _failed(expect: Any, *outcomes: str) -> list[str]:
    from examples.failover_demo._phases import Phase
    from examples.failover_demo._stats import phase_stats

    phase = Phase("p", "test phase", lambda cluster: None, expect)
    stats = phase_stats(phase, [_sample(o) for o in outcomes], ["u1"], {}, 1.0)
    return [check.name for check in stats.checks if not check.passed]


def test_a_lost_session_fails_the_phase():
    """A lost session where none may be lost breaks the demo's check."""
    from examples.failover_demo._phases import Expect

    assert ["no session lost"] == _failed(Expect(), "kept", "lost")


def test_a_served_request_fails_the_all_down_phase():
    """In the all-down phase anything but a clean 503 breaks the check."""
    from examples.failover_demo._phases import Expect

    expected = ["every request a clean 503, never a fresh empty session"]
    assert expected == _failed(Expect(all_unavailable=True), "unavailable", "kept")


def test_notices_are_expected_only_from_a_downed_node_that_held_a_session():
    """A phase that takes down a node holding no session copy expects no notices (no
    read asks that node); one that held a copy does."""
    from examples.failover_demo._phases import Expect, Phase
    from examples.failover_demo._stats import phase_stats

    phase = Phase("p", "test phase", lambda cluster: None, Expect(notices=True), down=0)
    failed = [
        [
            c.name
            for c in phase_stats(phase, [_sample("kept")], ["u1"], {}, 1.0, n).checks
            if not c.passed
        ]
        for n in (0, 3)
    ]
    assert [[], ["failover recorded as notices"]] == failed


def test_missing_memcached_says_how_to_get_it(tmp_path: Path):
    """Without a memcached binary the demo prints one line on how to get it and exits 2."""
    result = subprocess.run(
        [sys.executable, "-m", "examples.failover_demo", "--short", "--json", str(tmp_path / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MEMCACHED": str(tmp_path / "no-such-memcached")},
    )
    lines = result.stderr.strip().splitlines()
    assert (2, 1, True) == (result.returncode, len(lines), "apt-get install memcached" in lines[0])


def _progress_output(interactive: bool) -> str:
    import io

    from examples.failover_demo._display import Progress
    from examples.failover_demo._phases import Expect, Phase
    from examples.failover_demo._stats import phase_stats

    phase = Phase("p", "test phase", lambda cluster: None, Expect())
    stats = phase_stats(phase, [_sample("kept")], ["u1"], {}, 1.0)
    stream = io.StringIO()
    progress = Progress(stream, 6, interactive=interactive)
    progress.phase_started(1, "p", "test phase")
    progress.update(1, stats)
    progress.phase_finished(1, stats)
    return stream.getvalue()


def test_progress_redraws_one_line_on_a_terminal():
    """On a terminal the live figures are redrawn in place."""
    assert True is ("\r\x1b[2K[1/6 p]" in _progress_output(interactive=True))


def test_progress_writes_plain_lines_elsewhere():
    """Without a terminal there are no control characters, only whole lines."""
    output = _progress_output(interactive=False)
    assert (False, False, True) == ("\r" in output, "\x1b" in output, output.endswith("ok\n"))


def test_table_explains_the_503s_it_counts_as_ok(demo: DemoRun):
    """Every phase whose 503s passed its checks gets a line saying why, from the store."""
    allowed = [p for p in demo.report["phases"] if p["unavailable"] and p["passed"]]
    explained = [
        p["name"]
        for p in allowed
        if f"{p['name']}: {p['unavailable']} clean 503s counted as ok (" in demo.stdout
        and p["refusals"]
    ]
    assert (True, [p["name"] for p in allowed]) == ("all-down" in explained, explained)


def test_refusals_count_only_the_kinds_that_answer_503():
    """Between two snapshots, only the outcome kinds the default policy raises count."""
    from examples.failover_demo._explain import refusals

    before = {"ok": 5, "possibly_stale": 1}
    after = {"ok": 9, "possibly_stale": 4, "failover": 3, "unavailable": 2}
    assert {"possibly_stale": 3, "unavailable": 2} == refusals(before, after)


def test_served_again_is_the_last_503_followed_only_by_served_requests():
    """The recovery time is the last 503's, and only if everything after it was served."""
    from examples.failover_demo._explain import served_again_at
    from examples.failover_demo._traffic import Sample

    def at(t: float, outcome: str) -> Sample:
        return Sample(t, "p", "u1", "hit", outcome, 200, 1.0)

    recovered = [at(1.0, "unavailable"), at(2.0, "unavailable"), at(3.0, "kept")]
    still_down = [at(1.0, "unavailable"), at(2.0, "kept"), at(3.0, "error")]
    assert (2.0, None, None) == (
        served_again_at(recovered),
        served_again_at(still_down),
        served_again_at([at(1.0, "kept")]),
    )


def test_explanations_give_the_stores_reasons_and_the_recovery():
    """A phase with allowed 503s is explained with each reason and when users were back."""
    from examples.failover_demo._display import explanations
    from examples.failover_demo._phases import Expect, Phase
    from examples.failover_demo._stats import phase_stats
    from examples.failover_demo._traffic import Sample

    phase = Phase("all-back", "every node back", lambda cluster: None, Expect(unavailable=True))
    samples = [
        Sample(10.5, "all-back", "u1", "hit", "unavailable", 503, 1.0),
        Sample(11.0, "all-back", "u1", "hit", "kept", 200, 1.0),
    ]
    stats = phase_stats(
        phase, samples, ["u1"], {}, 2.0, refusals={"possibly_stale": 1}, started=10.0
    )
    expected = [
        "all-back: 1 clean 503s counted as ok (possibly_stale 1: a node that may hold a "
        "newer copy had not answered yet); every user served again 0.5 s into the phase."
    ]
    assert expected == explanations([stats])


def test_plot_draws_the_faults_the_notices_and_the_recovery(tmp_path: Path):
    """The plot names each phase's fault, draws the notices' rate and marks the recovery."""
    from examples.failover_demo._phases import Expect, Phase
    from examples.failover_demo._plot import write_plot
    from examples.failover_demo._stats import phase_stats
    from examples.failover_demo._traffic import Sample

    killed = Phase("one-killed", "node 1 killed (SIGKILL)", lambda c: None, Expect())
    back = Phase("all-back", "every node back", lambda c: None, Expect(unavailable=True))
    first = [Sample(0.5 + i / 10, "one-killed", "u1", "hit", "kept", 200, 1.0) for i in range(5)]
    second = [
        Sample(2.2, "all-back", "u1", "hit", "unavailable", 503, 1.0),
        Sample(2.6, "all-back", "u1", "hit", "kept", 200, 1.0),
    ]
    phases = [
        phase_stats(killed, first, ["u1"], {}, 2.0, started=0.0),
        phase_stats(back, second, ["u1"], {}, 1.0, started=2.0),
    ]
    path = tmp_path / "plot.svg"
    write_plot(path, first + second, phases, [(0.0, 2.0), (2.0, 3.0)], [0.6, 0.7, 0.8])
    text = path.read_text()
    expected = ["node 1 killed (SIGKILL)", "notices recorded per second", "every user served again"]
    assert expected == [words for words in expected if words in text]
