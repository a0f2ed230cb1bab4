"""The wide read's short path (after a fault, and during an outage) against the general one.

A read that is not settled asks every node whose breaker is closed. When their copies
agree, the sync driver reads them in one round (``_transport.wide_gets``, in C:
``_speedups.wide_round``) and the core judges them in short (``core.judge_agreed``)
with no step generator; anything else goes to the general read and ``core.judge``.
Each short piece is held to its general twin here: the judgement over generated
replies and breaker histories, the C round over real memcached against the Python
agreement, and a store's outage read against the general read's outcome (run again
on the Python twins by ``make pytest-pure``).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymemcache.client.base import Client
from tests.threads import run_threads, switch_often

from errpolicy_memcache import (
    BreakerState,
    MemcacheSessionStore,
    _core,
    _native,
    _outcome,
    _transport,
)
from errpolicy_memcache._breaker import CircuitBreaker
from errpolicy_memcache._core import Acked, Copy, Read
from errpolicy_memcache._envelope import Record
from errpolicy_memcache._ids import storage_key
from errpolicy_memcache._metrics import LATENCY_BUCKETS, StoreMetrics
from errpolicy_memcache._node import Node
from errpolicy_memcache._outcome import NodeResult, NodeStatus, Outcome, OutcomeKind, outcome_of
from errpolicy_memcache._transport import make_transport, wide_agreed, wide_gets
from errpolicy_memcache._wire import NodeFailure, gets
from errpolicy_memcache.testing import MemcachedCluster

from .helpers import PREFIX, SECRET

speedups = _native.speedups
needs_c = pytest.mark.skipif(speedups is None, reason="the C speedups are not built here")


# -- the judgement: core.judge_agreed == core.judge's decision ----------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# One node's history on its breaker: (seconds later, what happened).
_EVENTS = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=5.0),
        st.sampled_from(["failure", "refused", "success", "probe"]),
    ),
    max_size=6,
)


def _node(index: int, clock: _Clock, history: list[tuple[float, str]]) -> Node:
    """A node whose breaker (threshold 1, on ``clock``) went through ``history``."""
    breaker = CircuitBreaker(1, 0.5, 2.0, clock=clock)
    for later, event in history:
        clock.now += later
        if event == "success":
            breaker.success()
        elif event == "probe":
            breaker.probe()
        else:
            breaker.failure(event == "refused")
    return Node("10.0.0.1", 11211 + index, breaker)


@st.composite
def _wide_reads(draw: st.DrawFn) -> dict[str, Any]:
    """A wide read whose copies agree: the ranked nodes with their breakers' histories,
    which were skipped, which of the asked hold the copy (the first ``replicas`` of them
    do), the copy's version, and what the process saw acknowledged."""
    count = draw(st.integers(min_value=1, max_value=6))
    replicas = draw(st.integers(min_value=1, max_value=min(3, count)))
    clock = _Clock()
    ranked = [_node(i, clock, draw(_EVENTS)) for i in range(count)]
    clock.now += draw(st.floats(min_value=0.0, max_value=5.0))
    skipped_flags = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    if all(skipped_flags):
        skipped_flags[draw(st.integers(min_value=0, max_value=count - 1))] = False
    asked = [node for node, skip in zip(ranked, skipped_flags, strict=True) if not skip]
    skipped = [node for node, skip in zip(ranked, skipped_flags, strict=True) if skip]
    hits = [
        i < replicas or draw(st.booleans()) for i in range(len(asked))
    ]  # the agreement: the first ``replicas`` asked hold it
    version = 1000
    acked: Acked | None = None
    if draw(st.booleans()):
        addresses = [node.address for node in ranked]
        acked = Acked(
            version + draw(st.sampled_from([-1, 0, 0, 0, 1])),
            draw(st.booleans()) and draw(st.booleans()),
            frozenset(draw(st.lists(st.sampled_from(addresses), max_size=count))),
            draw(st.floats(min_value=90.0, max_value=clock.now + 1)),
        )
    return {
        "ranked": ranked,
        "replicas": replicas,
        "asked": asked,
        "skipped": skipped,
        "hits": hits,
        "version": version,
        "acked": acked,
        "grace": draw(st.sampled_from([0.4, 2.0, 30.0])),
        "memory": draw(st.sampled_from([None, 0.4, 1800.0])),
    }


def _general(case: dict[str, Any], record: Record) -> _core.Judgement:
    """What core.judge decides for the read (built as the general wide read builds it)."""
    read = Read()
    for node, hit in zip(case["asked"], case["hits"], strict=True):
        if hit:
            read.add_copy(Copy(node, record, b"blob", 7))
    read.failed = list(case["skipped"])
    read.answered = len(case["asked"])
    read.answered_by.update(node.address for node in case["asked"])
    return _core.judge(
        read,
        home=case["ranked"][: case["replicas"]],
        acked=case["acked"],
        replicas=case["replicas"],
        over=False,
        grace=case["grace"],
        memory=case["memory"],
    )


@settings(max_examples=3000, deadline=None)
@given(_wide_reads())
def test_judge_agreed_decides_as_judge(case: dict[str, Any]) -> None:
    """The short judgement serves exactly when core.judge serves the copy as ok, from the
    first node holding it, with nothing to forget or bury."""
    record = Record(case["version"], "w", 1.0, 1.0, 1800, b"{}")
    holders = [n for n, hit in zip(case["asked"], case["hits"], strict=True) if hit]
    judgement = _general(case, record)
    expected = (
        judgement.base is OutcomeKind.OK
        and judgement.found is not None
        and judgement.found.node is holders[0]
        and judgement.served is holders[0]
        and not judgement.forget
        and not judgement.bury
    )
    actual = _core.judge_agreed(
        record.version,
        holders,
        frozenset(node.address for node in holders),
        len(case["asked"]) - len(holders),
        case["skipped"],
        home=case["ranked"][: case["replicas"]],
        acked=case["acked"],
        replicas=case["replicas"],
        grace=case["grace"],
        memory=case["memory"],
    )
    assert expected == actual


def test_judge_agreed_refuses_a_copy_below_a_skipped_home() -> None:
    """A copy no home node holds while a home node is skipped may be older than home's:
    not served in short (core.judge calls it possibly_stale)."""
    clock = _Clock()
    first, second, third = (_node(i, clock, []) for i in range(3))
    first.breaker.failure()
    assert BreakerState.OPEN is first.breaker.state
    holders = [third]
    decided = _core.judge_agreed(
        1000,
        holders,
        frozenset([third.address]),
        1,
        [first],
        home=[first, second],
        acked=None,
        replicas=2,
        grace=0.4,
    )
    assert False is decided


# -- the round: wide_round (C) == wide_agreed (Python) over real memcached ----------


@pytest.fixture(scope="module")
def nodes(memcached_binary: str) -> Iterator[MemcachedCluster]:
    """Three memcached nodes for the whole module (each example uses its own key)."""
    cluster = MemcachedCluster(3, memory_mb=16)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


_keys = itertools.count()


def _holding(cluster: MemcachedCluster, values: Sequence[bytes | None]) -> str:
    """A fresh key, held by the first nodes as ``values`` say (None: a miss)."""
    key = f"wide-{next(_keys)}"
    for server, value in zip(cluster.servers, values, strict=False):
        if value is not None:
            client = Client((server.host, server.port), connect_timeout=1.0, timeout=1.0)
            assert client.set(key, value, noreply=False)
            client.close()
    return key


def _answers(results: list[Any]) -> list[_transport.Answer]:
    """A C round's per-node results as the transports' answers."""
    return [([], r, 0.0) if isinstance(r, NodeFailure) else ([r], None, 0.0) for r in results]


_VALUES = st.lists(
    st.sampled_from([None, b"v", b"w", b"", b"v\r\nEND\r\n"]), min_size=1, max_size=3
)


@needs_c
@pytest.mark.memcached
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_VALUES, st.integers(min_value=0, max_value=3))
def test_wide_round_agrees_as_the_python_twin(
    nodes: MemcachedCluster, values: list[bytes | None], need: int
) -> None:
    """(value, hits) or every node's result, exactly as wide_agreed reads a plain round."""
    assert speedups is not None
    key = _holding(nodes, values)
    request = gets(key).request
    transports = [
        make_transport("pipelined", s.host, s.port, 1.0, 1.0, 1)
        for s in nodes.servers[: len(values)]
    ]
    try:
        conns = [t.fresh() for t in transports]
        fds = [c.fileno() for c in conns]
        plain = speedups.gets_round(fds, request)
        wide = speedups.wide_round(fds, request, need, 1.0)
    finally:
        for t in transports:
            t.close()
        for c in conns:
            c.close()
    expected = wide_agreed(_answers(plain), need)
    if isinstance(expected, tuple):
        assert expected == wide
    else:
        assert isinstance(wide, list)
        assert [a[0] or a[1] for a in expected] == [
            [r] if not isinstance(r, NodeFailure) else r for r in wide
        ]


@needs_c
@pytest.mark.memcached
@pytest.mark.parametrize("failing", [0, 1])
def test_wide_round_with_a_killed_node_gives_every_result(
    cluster: MemcachedCluster, failing: int
) -> None:
    """A node that closed the connection among nodes that agree: the list, with its
    NodeFailure where it stands."""
    assert speedups is not None
    key = _holding(cluster, [b"v", b"v", b"v"])
    transports = [make_transport("pipelined", s.host, s.port, 1.0, 1.0, 1) for s in cluster.servers]
    conns = [t.fresh() for t in transports]
    cluster.servers[failing].kill()
    try:
        results = speedups.wide_round([c.fileno() for c in conns], gets(key).request, 1, 1.0)
    finally:
        for c in conns:
            c.close()
    assert isinstance(results, list)
    assert "closed" == results[failing].kind
    assert [b"v", b"v"] == [r[0] for i, r in enumerate(results) if i != failing]


@needs_c
@pytest.mark.parametrize(
    "args",
    [(), ([], b"gets k\r\n"), ([], b"gets k\r\n", "x"), ([], b"gets k\r\n", 1, None, None, 1)],
)
def test_wide_round_refuses_bad_arguments(args: tuple[object, ...]) -> None:
    """Three to five arguments, need an int."""
    assert speedups is not None
    with pytest.raises(TypeError):
        speedups.wide_round(*args)


@needs_c
def test_wide_round_over_no_sockets_is_an_empty_list() -> None:
    """No node asked: no agreement (an empty list), as the Python twin."""
    assert speedups is not None
    assert [] == speedups.wide_round([], b"gets k\r\n", 1) == wide_agreed([], 1)


@pytest.mark.memcached
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_VALUES, st.sampled_from(["pymemcache", "pipelined"]))
def test_wide_gets_answers_as_the_python_round(
    nodes: MemcachedCluster, values: list[bytes | None], kind: str
) -> None:
    """The transport's wide round (C where built) gives what the Python fan-out and
    agreement give, and pools its connections again."""
    key = _holding(nodes, values)
    command = gets(key)
    transports = [
        make_transport(kind, s.host, s.port, 1.0, 1.0, 2) for s in nodes.servers[: len(values)]
    ]
    try:
        fast = wide_gets(transports, command, 2, time.perf_counter() + 5)
        batch = [(t, (command,)) for t in transports]
        slow = wide_agreed(_transport._fan_out(batch, time.perf_counter() + 5), 2)
        if isinstance(slow, tuple):
            assert slow == fast
        else:
            assert isinstance(fast, list)
            assert [(a[0], a[1]) for a in slow] == [(a[0][:1], a[1]) for a in fast]
            # the CAS tokens are the same item's: equal too
        assert [1] * len(transports) == [len(t._idle) for t in transports]
    finally:
        for t in transports:
            t.close()


# -- the store: the short outage read reports what the general read reports ---------


def _outage_store(
    cluster: MemcachedCluster, outcomes: list[Outcome], timeouts: dict[str, float]
) -> tuple[MemcacheSessionStore, str]:
    """A store whose session's primary is killed and its breaker open, read once since
    (the general read copied the session onto the next node), and the session id."""
    store = MemcacheSessionStore(
        cluster.addresses,
        SECRET,
        replicas=2,
        prefix=PREFIX,
        **timeouts,
        retry_after=3600.0,
        on_outcome=outcomes.append,
    )
    session = store.start(None)
    session["user"] = "ada"
    store.save(session)
    key = storage_key(PREFIX, session.id)
    primary = next(n for n in store._core._derive(key).home)
    next(s for s in cluster.servers if s.address == primary.address).kill()
    while primary.breaker.state is not BreakerState.OPEN:
        store.start(session.id)
    store.start(session.id)  # the general read: copies the session to the substitute
    return store, session.id


def _shape(outcome: Outcome) -> tuple[object, ...]:
    """An outcome's fields but its times."""
    return (
        outcome.operation,
        outcome.kind,
        outcome.flags,
        outcome.served_by,
        [(r.node, r.command, r.status, r.detail) for r in outcome.nodes],
        outcome.key,
        outcome.version,
    )


@pytest.mark.memcached
def test_the_outage_read_takes_one_round_and_no_steps(
    cluster: MemcachedCluster, monkeypatch: pytest.MonkeyPatch, store_timeouts: dict[str, float]
) -> None:
    """With the primary skipped, start() asks the other nodes in one wide round and
    serves the session with the core's steps never driven."""
    outcomes: list[Outcome] = []
    store, sid = _outage_store(cluster, outcomes, store_timeouts)
    rounds: list[int] = []
    wide = store._wide_gets

    def counted(*args: Any) -> Any:
        rounds.append(len(args[0]))
        return wide(*args)

    def no_steps(*args: Any) -> Any:
        raise AssertionError("the general read ran")

    monkeypatch.setattr(store, "_wide_gets", counted)
    monkeypatch.setattr(store, "_drive", no_steps)
    session = store.start(sid)
    store.close()
    assert ("ada", [2]) == (session["user"], rounds)
    assert OutcomeKind.FAILOVER is outcomes[-1].kind


@pytest.mark.memcached
@pytest.mark.parametrize("tallied", [True, False], ids=["in a tally", "past the tallies' bound"])
def test_the_outage_read_reports_what_the_general_read_reports(
    cluster: MemcachedCluster,
    store_timeouts: dict[str, float],
    monkeypatch: pytest.MonkeyPatch,
    tallied: bool,
) -> None:
    """The short path's outcome (the notice) has the general read's fields: kind,
    flags, served_by, each node's command and status in order, key and version; and
    the store's counts grow by the same, counted in a tally or, past the tallies'
    bound, key by key."""
    from errpolicy_memcache import _metrics

    if not tallied:
        monkeypatch.setattr(_metrics, "_TALLIES_MAX", 0)
    outcomes: list[Outcome] = []
    store, sid = _outage_store(cluster, outcomes, store_timeouts)
    core = store._core
    before = store.stats()
    store.start(sid)
    fast = outcomes[-1]
    middle = store.stats()
    wide = core.read_plan(sid)
    assert isinstance(wide, tuple)
    began = time.perf_counter()
    replies = store._execute([(node, (wide[0].command,)) for node in wide[1]], began + 1)
    session, general = store._drive(core.start(sid, None, began=began, home=replies, wide=True))
    after = store.stats()
    store.close()
    assert general is not None
    assert _shape(general) == _shape(fast)
    assert "ada" == session["user"]

    def grown(old: Any, new: Any) -> dict[Any, int]:
        return {k: v - old.get(k, 0) for k, v in new.items() if v != old.get(k, 0)}

    assert grown(before.outcomes, middle.outcomes) == grown(middle.outcomes, after.outcomes)
    assert grown(before.flags, middle.flags) == grown(middle.flags, after.flags)
    assert grown(before.node_results, middle.node_results) == grown(
        middle.node_results, after.node_results
    )
    assert tallied == bool(core._metrics._tallies)


@given(
    st.sampled_from(list(OutcomeKind)),
    st.frozensets(st.sampled_from(list(OutcomeKind))),
    st.lists(
        st.tuples(st.sampled_from(["a:1", "b:2", "c:3"]), st.sampled_from(list(NodeStatus))),
        max_size=5,
    ),
    st.floats(min_value=0.0, max_value=10.0),
)
def test_counted_counts_as_record(
    kind: OutcomeKind,
    flags: frozenset[OutcomeKind],
    results: list[tuple[str, NodeStatus]],
    elapsed: float,
) -> None:
    """The metrics' counter path with its keys made beforehand counts what record counts."""
    general, short = StoreMetrics(), StoreMetrics()
    rows = [(node, "gets", status, 0.0, "") for node, status in results]
    for _ in range(2):
        general.record("session.start", kind, rows, elapsed, flags)
        short.counted(
            "session.start",
            ("session.start", kind),
            [("session.start", flag) for flag in flags],
            results,
            elapsed,
        )
    assert general.snapshot([]) == short.snapshot([])


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a:1", "b:2"]),
            st.sampled_from(["gets", "-"]),
            st.sampled_from(list(NodeStatus)),
            st.floats(min_value=0.0, max_value=1.0),
            st.sampled_from(["", "v3"]),
        ),
        max_size=4,
    ),
    st.sampled_from([None, "a:1"]),
    st.one_of(st.none(), st.integers(min_value=0, max_value=2**63)),
)
def test_outcome_of_makes_the_outcome_its_python_twin_makes(
    rows: list[tuple[str, str, NodeStatus, float, str]], served: str | None, version: int | None
) -> None:
    """outcome_of (C where built) == the Outcome made by its __init__ from the same values."""
    flags = frozenset([OutcomeKind.FAILOVER])
    made = outcome_of("session.start", OutcomeKind.FAILOVER, flags, served, rows, "k", version, 0.5)
    expected = Outcome(
        "session.start",
        OutcomeKind.FAILOVER,
        flags,
        served,
        tuple(NodeResult(*row) for row in rows),
        "k",
        version,
        0.5,
    )
    assert (expected, type(expected)) == (made, type(made))


@needs_c
@given(
    st.sampled_from(["session.start", "session.save", "séance"]),
    st.sampled_from(list(OutcomeKind)),
    st.sampled_from([None, "", "a:1", "[::1]:11211"]),
    st.lists(
        st.builds(
            NodeResult,
            st.sampled_from(["a:1", "b:2", ""]),
            st.sampled_from(["gets", "-", "cas"]),
            st.sampled_from(list(NodeStatus)),
            st.floats(min_value=0.0, max_value=1.0),
            st.sampled_from(["", "v3"]),
        ),
        max_size=4,
    ),
    st.text(max_size=12),
)
def test_outcome_text_writes_what_its_python_twin_writes(
    operation: str,
    kind: OutcomeKind,
    served: str | None,
    nodes: list[NodeResult],
    key: str,
) -> None:
    """The C message of an Outcome (its str(), every notice's message) == the Python one."""
    assert speedups is not None
    expected = _outcome.py_outcome_text(operation, kind, served, tuple(nodes), key)
    fields = _outcome._TEXT_FIELDS
    assert expected == speedups.outcome_text(fields, operation, kind, served, tuple(nodes), key)


_FIELDS = _outcome._TEXT_FIELDS
_NODE_FIELD = NodeResult.__dict__["node"]
_OUTCOME_FIELD = Outcome.__dict__["key"]


@pytest.mark.parametrize(
    "args",
    [
        (),
        (_FIELDS, "op", OutcomeKind.OK, None, [], "k", "extra"),
        (_FIELDS, "op", OutcomeKind.OK, None, 3, "k"),
        (_FIELDS, "op", OutcomeKind.OK, None, [object()], "k"),
        ((_NODE_FIELD, _NODE_FIELD), "op", OutcomeKind.OK, None, [], "k"),
        ((_NODE_FIELD, _NODE_FIELD, _OUTCOME_FIELD), "op", OutcomeKind.OK, None, [], "k"),
        (("node", "command", "status"), "op", OutcomeKind.OK, None, [], "k"),
    ],
)
def test_outcome_text_refuses_bad_arguments(args: tuple[object, ...]) -> None:
    """The C message refuses a wrong argument count, fields that are not three slots of
    one class, nodes that are not a sequence of that class, with a TypeError."""
    if speedups is None:
        pytest.skip("the C speedups are not built here")
    with pytest.raises(TypeError):
        speedups.outcome_text(*args)


@needs_c
def test_outcome_text_of_many_nodes() -> None:
    """The C message of more nodes than its stack holds (parts on the heap) == the Python one."""
    assert speedups is not None
    nodes = tuple(NodeResult(f"n{i}:1", "gets", NodeStatus.MISS, 0.0) for i in range(40))
    expected = _outcome.py_outcome_text("op", OutcomeKind.OK, "n1:1", nodes, "k")
    assert expected == speedups.outcome_text(_FIELDS, "op", OutcomeKind.OK, "n1:1", nodes, "k")


def test_outcome_str_is_its_message() -> None:
    """An Outcome's str() names the operation, the kind, the served node, the key and
    each node's command and status, in order (on either implementation)."""
    outcome = outcome_of(
        "session.start",
        OutcomeKind.FAILOVER,
        frozenset([OutcomeKind.FAILOVER]),
        "b:2",
        [("a:1", "-", NodeStatus.SKIPPED, 0.0, ""), ("b:2", "gets", NodeStatus.HIT, 0.1, "")],
        "k1",
        3,
        0.2,
    )
    expected = "session.start failover served_by=b:2 key=k1 [a:1 -=skipped; b:2 gets=hit]"
    assert expected == str(outcome)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(OutcomeKind)),
            st.frozensets(st.sampled_from(list(OutcomeKind))),
            st.lists(
                st.tuples(
                    st.sampled_from(["a:1", "b:2", "c:3"]), st.sampled_from(list(NodeStatus))
                ),
                max_size=4,
            ),
            st.floats(min_value=0.0, max_value=10.0),
        ),
        max_size=6,
    )
)
def test_tallies_count_as_record(
    reads: list[tuple[OutcomeKind, frozenset[OutcomeKind], list[tuple[str, NodeStatus]], float]],
) -> None:
    """Operations counted in tallies (the outage read's counters) are counted as record
    counts them, equal keys sharing one tally, whatever else was counted beside."""
    general, short = StoreMetrics(), StoreMetrics()
    general.record("session.save", OutcomeKind.OK, [], 0.001, frozenset())
    short.record("session.save", OutcomeKind.OK, [], 0.001, frozenset())
    for kind, flags, results, elapsed in reads:
        rows = [(node, "gets", status, 0.0, "") for node, status in results]
        general.record("session.start", kind, rows, elapsed, flags)
        flag_keys = [("session.start", flag) for flag in flags]
        tally = short.tally(("session.start", kind), flag_keys, results)
        assert tally is not None
        assert tally is short.tally(("session.start", kind), list(flag_keys), list(results))
        tally.append(elapsed)
    expected, actual = general.snapshot([]), short.snapshot([])
    # Each tally sums its own seconds: the totals may differ in the last bits.
    assert (expected.outcomes, expected.flags, expected.node_results) == (
        actual.outcomes,
        actual.flags,
        actual.node_results,
    )
    assert {op: h.counts for op, h in expected.latency.items()} == {
        op: h.counts for op, h in actual.latency.items()
    }
    assert {op: pytest.approx(h.total) for op, h in expected.latency.items()} == {
        op: h.total for op, h in actual.latency.items()
    }


def test_tallies_are_bounded() -> None:
    """Past the bound a new set of keys gets no tally (its operations are counted by
    ``counted``), and the keys already tallied keep theirs."""
    from errpolicy_memcache import _metrics

    metrics = StoreMetrics()
    first = metrics.tally(("session.start", OutcomeKind.OK), [], [("n:0", NodeStatus.HIT)])
    for i in range(1, _metrics._TALLIES_MAX):
        tally = metrics.tally(("session.start", OutcomeKind.OK), [], [(f"n:{i}", NodeStatus.HIT)])
        assert tally is not None
    past = metrics.tally(("session.start", OutcomeKind.OK), [], [("n:-1", NodeStatus.HIT)])
    again = metrics.tally(("session.start", OutcomeKind.OK), [], [("n:0", NodeStatus.HIT)])
    assert (None, True) == (past, again is first)


#: Latencies at each bucket's bound and beside it, past the last one, and zero.
_AT_THE_BOUNDS = (
    [0.0]
    + list(LATENCY_BUCKETS)
    + [math.nextafter(b, math.inf) for b in LATENCY_BUCKETS]
    + [math.nextafter(b, 0.0) for b in LATENCY_BUCKETS]
    + [LATENCY_BUCKETS[-1] * 2]
)


@pytest.mark.parametrize("elapsed", _AT_THE_BOUNDS)
def test_a_tally_puts_a_latency_in_records_bucket(elapsed: float) -> None:
    """A tally's bucket is record's, at each bucket's bound and beside it."""
    general, short = StoreMetrics(), StoreMetrics()
    general.record("session.start", OutcomeKind.FAILOVER, [], elapsed, frozenset())
    tally = short.tally(("session.start", OutcomeKind.FAILOVER), [], [])
    assert tally is not None
    tally.append(elapsed)
    assert general.snapshot([]) == short.snapshot([])


@pytest.mark.parametrize("elapsed", _AT_THE_BOUNDS)
def test_counted_puts_a_latency_in_records_bucket(elapsed: float) -> None:
    """counted's bucket by comparisons is bisect_left's, at each bucket's bound and beside it."""
    general, short = StoreMetrics(), StoreMetrics()
    general.record("session.start", OutcomeKind.OK, [], elapsed, frozenset())
    short.counted("session.start", ("session.start", OutcomeKind.OK), [], [], elapsed)
    assert general.snapshot([]) == short.snapshot([])


def test_tallies_fold_exactly_under_threads() -> None:
    """Eight threads appending to one tally and folding it as the store does (every
    ``FOLD_AT`` seconds), switching every microsecond, while snapshots fold it too:
    every operation counted once, in its bucket."""
    from errpolicy_memcache._metrics import FOLD_AT

    metrics = StoreMetrics()
    tally = metrics.tally(("session.start", OutcomeKind.FAILOVER), [], [("a:1", NodeStatus.HIT)])
    assert tally is not None
    seconds = [0.00005, 0.0003, 0.002, 0.07, 3.0, 9.0]

    def work(_: int) -> None:
        for i in range(2000):
            tally.append(seconds[i % len(seconds)])
            if len(tally) >= FOLD_AT:
                metrics.fold(tally)
            if i % 500 == 0:
                metrics.snapshot([])

    with switch_often():
        run_threads(work, 8)
    general = StoreMetrics()
    for i in range(16000):
        general.record("session.start", OutcomeKind.FAILOVER, [], seconds[i % 2000 % 6], ())
    expected, actual = general.snapshot([]), metrics.snapshot([])
    assert (16000, 16000) == (
        actual.count("session.start", OutcomeKind.FAILOVER),
        actual.node_results[("a:1", NodeStatus.HIT)],
    )
    assert expected.latency["session.start"].counts == actual.latency["session.start"].counts
    assert pytest.approx(expected.latency["session.start"].total) == (
        actual.latency["session.start"].total
    )
