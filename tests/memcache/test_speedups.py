"""The store's C speedups (``errpolicy_memcache/_speedups.c``) against their Python twins.

``rank`` must order nodes exactly as :func:`rank_python`; ``gets_round`` must read what
memcached answers (hits, misses, large values) and turn every fault into the same
:class:`NodeFailure` kinds as the Python transport: real memcached processes for
timeouts, closes and error replies, a tiny fake server only for replies no memcached
sends. `make pytest` runs the store's reading and failover tests once more on the Python
twins (ERRPOLICY_PURE_PYTHON=1), as a pytest run of its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from enum import IntEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymemcache.client.base import Client

from errpolicy_memcache import SessionDataError, _data, _native, _transport
from errpolicy_memcache._placement import key_hash, node_seed, rank_python
from errpolicy_memcache._transport import make_transport
from errpolicy_memcache._wire import NodeFailure, _set_read_timeout, set_
from errpolicy_memcache.testing import MemcachedCluster, MemcachedServer


class Severity(IntEnum):
    A = 1


speedups = _native.speedups
needs_c = pytest.mark.skipif(speedups is None, reason="the C speedups are not built here")


def connect(server: MemcachedServer | tuple[str, int], timeout: float = 0.3) -> socket.socket:
    """A socket set up as the pipelined transport's (kernel timeouts, no delay)."""
    address = (server.host, server.port) if isinstance(server, MemcachedServer) else server
    sock = socket.create_connection(address, timeout=1.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _set_read_timeout(sock, timeout)
    return sock


@pytest.fixture
def sockets(store_timeouts: dict[str, float]) -> Iterator[Callable[..., socket.socket]]:
    """Sockets as the pipelined transport's, read timeout from ``store_timeouts`` unless given."""
    made: list[socket.socket] = []

    def make(
        server: MemcachedServer | tuple[str, int], timeout: float | None = None
    ) -> socket.socket:
        sock = connect(server, store_timeouts["timeout"] if timeout is None else timeout)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close()


def kind(result: object) -> str:
    assert isinstance(result, NodeFailure), result
    return result.kind


# -- rank ---------------------------------------------------------------------------


@needs_c
@given(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=1, max_size=12),
)
def test_rank_orders_like_the_python_twin(key_hash: int, seeds: list[int]) -> None:
    """Equal seeds (equal weights) included: the given order breaks ties in both."""
    nodes = [f"node{i}" for i in range(len(seeds))]
    assert speedups is not None
    assert rank_python(key_hash, seeds, nodes) == speedups.rank(key_hash, seeds, nodes)


@needs_c
@given(st.text(min_size=1), st.integers(min_value=1, max_value=500), st.integers(0, 999))
def test_rank_orders_any_number_of_nodes_like_the_python_twin(
    key: str, count: int, port: int
) -> None:
    """Random keys over up to 500 servers (the C ranking once refused more than 64)."""
    nodes = [f"10.0.{i // 250}.{i % 250}:{11211 + port}" for i in range(count)]
    seeds = [node_seed(node) for node in nodes]
    assert speedups is not None
    hashed = key_hash(key)
    assert rank_python(hashed, seeds, nodes) == speedups.rank(hashed, seeds, nodes)


@needs_c
@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=17, max_value=200))
def test_rank_ties_among_many_nodes_keep_the_given_order(key_hash: int, count: int) -> None:
    """Above the stack size the C ranking sorts differently; equal weights still keep order."""
    seeds = [i % 3 for i in range(count)]
    nodes = list(range(count))
    assert speedups is not None
    assert rank_python(key_hash, seeds, nodes) == speedups.rank(key_hash, seeds, nodes)


@needs_c
def test_rank_ties_keep_the_given_order() -> None:
    assert speedups is not None
    assert ["a", "b", "c"] == speedups.rank(7, [5, 5, 5], ["a", "b", "c"])


@needs_c
@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-1, [1], ["a"]), OverflowError),
        ((1, [1, 2], ["a"]), ValueError),
        ((1, [2**64], ["a"]), OverflowError),
        ((1, 5, ["a"]), TypeError),
    ],
)
def test_rank_refuses_bad_arguments(args: tuple[object, ...], error: type[Exception]) -> None:
    assert speedups is not None
    with pytest.raises(error):
        speedups.rank(*args)  # type: ignore[arg-type]


# -- plain_json: the fast path of the session data check ------------------------------

_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=4)
    | st.binary(max_size=2)
    | st.sampled_from([Severity.A, OrderedDict(a=1)])
)
_keys = st.text(max_size=3) | st.integers(-2, 2) | st.booleans() | st.none()
_nested = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children)
        | st.dictionaries(_keys, children, max_size=3)
    ),
    max_leaves=40,
)


def _wrapped(value: object, levels: int) -> dict[str, object]:
    """``value`` under ``levels`` more levels (lists and dicts in turn)."""
    for level in range(levels):
        value = [value] if level % 2 else {"w": value}
    return {"data": value}


@needs_c
@settings(max_examples=300)
@given(_nested, st.integers(0, _data.MAX_DEPTH + 2))
def test_plain_json_accepts_only_what_the_python_walk_accepts(value: object, levels: int) -> None:
    """C True means the walk accepts; a walk that refuses means C said False (near
    the depth limit too)."""
    assert speedups is not None
    data = _wrapped(value, levels)
    try:
        _data.walk(data)
    except SessionDataError:
        accepted = False
    else:
        accepted = True
    assert (speedups.plain_json(data, _data.MAX_DEPTH) and not accepted) is False


@needs_c
def test_plain_json_takes_the_usual_session_at_c_speed() -> None:
    """The usual data (exact JSON types) is decided in C: True."""
    assert speedups is not None
    data = {"user": 1, "cart": [{"id": 2, "qty": 1.5}], "name": "x", "ok": None}
    assert speedups.plain_json(data, _data.MAX_DEPTH) is True


@needs_c
@pytest.mark.parametrize(("args", "error"), [(({}, -1), ValueError), (({},), TypeError)])
def test_plain_json_refuses_bad_arguments(args: tuple[object, ...], error: type[Exception]) -> None:
    assert speedups is not None
    with pytest.raises(error):
        speedups.plain_json(*args)  # type: ignore[call-arg]


# -- plain_payload: a stored record's data, scanned without building it ----------------

TRICKY_PAYLOADS = [
    b'{"a":1e999}',
    b'{"a":1e290}',
    b'{"a":1e291}',
    b'{"a":-1e-999}',
    b'{"a":NaN}',
    b'{"a":-Infinity}',
    b'{"a":01}',
    b'{"a":-}',
    b'{"a":1.}',
    b'{"a":.5}',
    b'{"a":1e}',
    b'{"a":-0}',
    b'{"a":1E+2}',
    b'{"a":99999999999999999}',
    b'{"a":999999999999999999}',
    b'{"a":"\\ud800"}',
    b'{"a":"\\x"}',
    b'{"a":"\x01"}',
    b' {"a":1}\n',
    b'{"a":1}x',
    b"[1]",
    b'{"a":1,}',
    b"{,}",
    b'{"a" 1}',
    b'{"a":tru}',
    b'\xef\xbb\xbf{"a":1}',
    b'{"\xc3\xa9":1}',
    b'{"a":{"b":[]}}',
    b'{"a":{" set":1}}',
    b"{}",
    b"",
]


def _python_accepts(payload: bytes) -> bool:
    try:
        _data.load_data(payload)
    except ValueError:
        return False
    return True


def _fast_path(payload: bytes) -> bool:
    """check_payload's fast path: C is sure, and there are no tags (``{" ``) to read."""
    assert speedups is not None
    return b'{" ' not in payload and speedups.plain_payload(payload, _data.MAX_DEPTH)


def _mutate(payload: bytes, data: st.DataObject) -> bytes:
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(payload)))
        byte = data.draw(
            st.sampled_from(list(b'{}[]",:-.eE0123456789 \\tfnu')) | st.integers(0, 255)
        )
        cut = data.draw(st.integers(0, 1))
        payload = payload[:at] + bytes([byte]) + payload[at + cut :]
    return payload


@needs_c
@settings(max_examples=400)
@given(_nested, st.integers(0, _data.MAX_DEPTH + 2), st.data())
def test_plain_payload_accepts_only_what_python_accepts(
    value: object, levels: int, data: st.DataObject
) -> None:
    """Encoded data, then mutated: a C True means json.loads and the walk accept it."""
    assert speedups is not None
    try:
        text = json.dumps(_wrapped(value, levels), separators=(",", ":"), default=repr)
    except (ValueError, TypeError):
        text = "{}"
    payload = _mutate(text.encode(), data)
    assert (_fast_path(payload) and not _python_accepts(payload)) is False


@needs_c
@pytest.mark.parametrize("payload", TRICKY_PAYLOADS)
def test_plain_payload_is_never_surer_than_python(payload: bytes) -> None:
    assert speedups is not None
    assert (_fast_path(payload) and not _python_accepts(payload)) is False


_json_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**16), 10**16)
    | st.floats(-1e15, 1e15)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=30,
)


@needs_c
@given(st.dictionaries(st.text(max_size=5), _json_data, max_size=5))
def test_plain_payload_is_sure_of_what_the_store_writes(data: dict[str, object]) -> None:
    """The fast path is the usual path: everything dumps_data writes (modest numbers)."""
    assert speedups is not None
    assert speedups.plain_payload(_data.dumps_data(data).encode(), _data.MAX_DEPTH) is True


# -- gets_round over real memcached -------------------------------------------------


@needs_c
@pytest.mark.memcached
def test_a_round_reads_hits_and_misses_in_order(
    cluster: MemcachedCluster, sockets: Callable[..., socket.socket]
) -> None:
    first, _, third = cluster.servers
    Client((first.host, first.port)).set("k", b"one\r\nEND\r\n", noreply=False)  # protocol bytes
    Client((third.host, third.port)).set("k", b"", noreply=False)
    assert speedups is not None
    results = speedups.gets_round([sockets(s).fileno() for s in cluster.servers], b"gets k\r\n")
    assert (b"one\r\nEND\r\n", None, b"") == (
        results[0][0],  # type: ignore[index]
        results[1],
        results[2][0],  # type: ignore[index]
    )
    assert isinstance(results[0][1], int)  # type: ignore[index]


@needs_c
@pytest.mark.memcached
def test_a_large_value_grows_the_buffer(
    cluster: MemcachedCluster, sockets: Callable[..., socket.socket]
) -> None:
    """Larger than the first 64 kB read: the rest comes in more reads."""
    value = os.urandom(300_000)
    server = cluster.servers[0]
    Client((server.host, server.port)).set("big", value, noreply=False)
    assert speedups is not None
    ((got, _),) = speedups.gets_round([sockets(server).fileno()], b"gets big\r\n")  # type: ignore[misc]
    assert value == got


@needs_c
@pytest.mark.memcached
def test_an_error_reply_is_an_error_failure(
    cluster: MemcachedCluster, sockets: Callable[..., socket.socket]
) -> None:
    assert speedups is not None
    (result,) = speedups.gets_round([sockets(cluster.servers[0]).fileno()], b"bogus\r\n")
    assert "error" == kind(result)


@pytest.mark.hangs
@needs_c
@pytest.mark.memcached
def test_a_paused_node_times_out_while_the_others_answer(
    cluster: MemcachedCluster, sockets: Callable[..., socket.socket]
) -> None:
    first, second, _ = cluster.servers
    socks = [sockets(first, 0.2), sockets(second, 0.2)]
    second.pause()
    try:
        began = time.monotonic()
        assert speedups is not None
        results = speedups.gets_round([s.fileno() for s in socks], b"gets k\r\n")
        took = time.monotonic() - began
    finally:
        second.resume()
    assert (None, "timeout", True) == (results[0], kind(results[1]), 0.15 < took < 1.0)


@needs_c
@pytest.mark.memcached
def test_a_killed_node_is_closed_and_a_refused_one_refused(
    cluster: MemcachedCluster, sockets: Callable[..., socket.socket]
) -> None:
    first, second, _ = cluster.servers
    sock = sockets(first)
    first.kill()
    assert speedups is not None
    (closed,) = speedups.gets_round([sock.fileno()], b"gets k\r\n")
    # A socket whose connect was refused: connect_ex keeps it unconnected.
    refused = socket.socket()
    try:
        second_port = second.port
        second.kill()
        assert 0 != refused.connect_ex(("127.0.0.1", second_port))
        (unconnected,) = speedups.gets_round([refused.fileno()], b"gets k\r\n")
    finally:
        refused.close()
    assert ("closed", True) == (
        kind(closed),
        isinstance(unconnected, NodeFailure) and unconnected.kind in ("refused", "closed"),
    )


@pytest.mark.hangs
@needs_c
@pytest.mark.memcached
def test_a_signal_handler_that_raises_ends_the_round_at_once(
    cluster: MemcachedCluster, sockets: Callable[..., socket.socket]
) -> None:
    """A blocked read is interrupted like the socket module's: the handler runs, and
    its exception comes out of gets_round long before the 2 s timeout."""
    server = cluster.servers[0]
    sock = sockets(server, 2.0)

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    server.pause()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        began = time.monotonic()
        assert speedups is not None
        with pytest.raises(Interrupted):
            speedups.gets_round([sock.fileno()], b"gets k\r\n")
        took = time.monotonic() - began
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        server.resume()
    assert took < 1.0


@needs_c
@pytest.mark.memcached
def test_a_round_reads_more_sockets_than_it_keeps_on_the_stack(
    cluster: MemcachedCluster, sockets: Callable[..., socket.socket]
) -> None:
    """70 sockets (a round once refused more than 64): every one reads the value."""
    server = holding(cluster, [b"v"])[0]
    socks = [sockets(server) for _ in range(70)]
    assert speedups is not None
    results = speedups.gets_round([s.fileno() for s in socks], b"gets k\r\n")
    assert [b"v"] * 70 == [value for value, _ in results]  # type: ignore[misc]


# -- gets_round with agree: the value alone when every node holds the same bytes ------


def holding(cluster: MemcachedCluster, values: Sequence[bytes | None]) -> list[MemcachedServer]:
    """The first ``len(values)`` nodes, each holding its value under "k" (None: a miss)."""
    servers = cluster.servers[: len(values)]
    for server, value in zip(servers, values, strict=True):
        if value is not None:
            client = Client((server.host, server.port), connect_timeout=1.0, timeout=1.0)
            assert client.set("k", value, noreply=False)
            client.close()
    return servers


def as_read(results: object) -> list[object]:
    """A round's per-node results with the CAS tokens dropped: None, a value, or a
    NodeFailure's kind."""
    assert isinstance(results, list), results
    return [
        kind(r) if isinstance(r, NodeFailure) else (None if r is None else r[0]) for r in results
    ]


@needs_c
@pytest.mark.memcached
@pytest.mark.parametrize(
    "values",
    [[b"v"], [b"v", b"v"], [b"x\r\nEND\r\n"] * 3, [b"", b""], [os.urandom(200_000)] * 3],
    ids=["one", "two", "protocol-bytes", "empty", "200kB"],
)
def test_agree_gives_the_bytes_when_every_node_holds_them(
    cluster: MemcachedCluster, sockets: Callable[..., socket.socket], values: list[bytes]
) -> None:
    """The bytes alone (b"" for empty values); without agree, the same round is a list."""
    socks = [sockets(server) for server in holding(cluster, values)]
    assert speedups is not None
    agreed = speedups.gets_round([s.fileno() for s in socks], b"gets k\r\n", True)
    plain = speedups.gets_round([s.fileno() for s in socks], b"gets k\r\n")
    told_not_to = speedups.gets_round([s.fileno() for s in socks], b"gets k\r\n", False)
    assert (bytes, values[0]) == (type(agreed), agreed)
    assert (values, values) == (as_read(plain), as_read(told_not_to))


@needs_c
@pytest.mark.memcached
@pytest.mark.parametrize(
    "values",
    [
        [b"one", b"two"],
        [b"abc", b"abd"],
        [b"abc", b"abcd"],
        [b"abcd", b"abc"],
        [b"v", b"v", b"w"],
        [b"v", None],
        [None, b"v"],
        [b"", None],
        [None, b""],
        [None, None],
    ],
    ids=[
        "same-length",
        "last-byte",
        "longer",
        "shorter",
        "third-differs",
        "last-misses",
        "first-misses",
        "empty-and-miss",
        "miss-and-empty",
        "all-miss",
    ],
)
def test_agree_gives_every_result_when_the_nodes_differ(
    cluster: MemcachedCluster, sockets: Callable[..., socket.socket], values: list[bytes | None]
) -> None:
    """Other bytes of the same length, a prefix either way, a miss anywhere (an empty
    value is no miss): the per-node list, as without agree."""
    socks = [sockets(server) for server in holding(cluster, values)]
    assert speedups is not None
    results = speedups.gets_round([s.fileno() for s in socks], b"gets k\r\n", True)
    assert values == as_read(results)
    assert all(isinstance(r[1], int) for r in results if r is not None)


@needs_c
@pytest.mark.memcached
@pytest.mark.parametrize("failing", [0, 1], ids=["first-fails", "last-fails"])
@pytest.mark.parametrize("value", [b"v", b""], ids=["value", "empty"])
def test_agree_with_a_failed_node_gives_every_result(
    cluster: MemcachedCluster, sockets: Callable[..., socket.socket], failing: int, value: bytes
) -> None:
    """A node whose process died ("closed") among nodes that agree: the list, with its
    NodeFailure where it stands and the others' values."""
    servers = holding(cluster, [value, value, value])
    socks = [sockets(server) for server in servers[:2]]
    servers[failing].kill()
    assert speedups is not None
    results = speedups.gets_round([s.fileno() for s in socks], b"gets k\r\n", True)
    expected: list[object] = [value, value]
    expected[failing] = "closed"
    assert expected == as_read(results)


@needs_c
def test_agree_over_no_sockets_is_an_empty_list() -> None:
    assert speedups is not None
    assert [] == speedups.gets_round([], b"gets k\r\n", True)


@needs_c
@pytest.mark.memcached
def test_agree_whose_truth_test_raises_raises_before_anything_is_sent(
    cluster: MemcachedCluster, sockets: Callable[..., socket.socket]
) -> None:
    """The exception of the third argument's __bool__ comes out, and no request went:
    a round after it reads one reply, and the node counted one get in all."""

    class Undecided(Exception):
        pass

    class Unsure:
        def __bool__(self) -> bool:
            raise Undecided

    server = holding(cluster, [b"v"])[0]
    sock = sockets(server)
    gets_before = int(server.stats()["cmd_get"])
    assert speedups is not None
    with pytest.raises(Undecided):
        speedups.gets_round([sock.fileno()], b"gets k\r\n", Unsure())
    after = speedups.gets_round([sock.fileno()], b"gets k\r\n", True)
    assert (b"v", 1) == (after, int(server.stats()["cmd_get"]) - gets_before)


@needs_c
@pytest.mark.parametrize(
    "args",
    [([], b"gets k\r\n", True, None, None, None), ([],)],
    ids=["six", "one"],
)
def test_gets_round_takes_two_to_five_arguments(args: tuple[object, ...]) -> None:
    assert speedups is not None
    with pytest.raises(TypeError, match="takes 2 to 5 arguments"):
        speedups.gets_round(*args)


# -- replies no memcached sends: a fake server ----------------------------------------


@pytest.fixture
def fake() -> Iterator[Callable[[bytes], tuple[str, int]]]:
    """A one-shot TCP server on loopback that answers any request with fixed bytes."""
    servers: list[socket.socket] = []

    def serve(reply: bytes) -> tuple[str, int]:
        listener = socket.create_server(("127.0.0.1", 0))
        servers.append(listener)

        def run() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(reply)
                time.sleep(0.5)  # keep the connection open while the client reads

        threading.Thread(target=run, daemon=True).start()
        host, port = listener.getsockname()[:2]
        return host, port

    yield serve
    for listener in servers:
        listener.close()


@needs_c
@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        (b"END\r\nEXTRA", "unexpected bytes after the reply"),
        (b"VALUE k 0 3 9\r\nabc\r\nEND\r\nX", "unexpected bytes after the reply"),
        (b"VALUE k 0 3 9\r\nabcXXEND\r\n", "malformed value block"),
        (b"VALUE k 0 x 9\r\n", "unexpected reply"),
        (b"VALUE k 0 3\r\n", "unexpected reply"),
        (b"VALUE k 0 99999999999999999999999 9\r\n", "unexpected reply"),
        (b"VALUE k 0 3 9 extra\r\n", "unexpected reply"),
        (b"HELLO\r\n", "unexpected reply"),
        (b"A" * 2000, "reply line too long"),
    ],
)
def test_replies_no_memcached_sends_are_errors(
    fake: Callable[[bytes], tuple[str, int]],
    sockets: Callable[..., socket.socket],
    reply: bytes,
    detail: str,
) -> None:
    sock = sockets(fake(reply))
    assert speedups is not None
    (result,) = speedups.gets_round([sock.fileno()], b"gets k\r\n")
    assert isinstance(result, NodeFailure)
    assert ("error", True) == (result.kind, result.detail.startswith(detail))


@needs_c
def test_a_server_error_reply_is_a_node_failure(
    fake: Callable[[bytes], tuple[str, int]], sockets: Callable[..., socket.socket]
) -> None:
    """SERVER_ERROR (a proxy whose backend is down) is kind "server_error", as in Python."""
    sock = sockets(fake(b"SERVER_ERROR Connection refused\r\n"))
    assert speedups is not None
    (result,) = speedups.gets_round([sock.fileno()], b"gets k\r\n")
    assert isinstance(result, NodeFailure)
    assert ("server_error", "SERVER_ERROR Connection refused") == (result.kind, result.detail)


@needs_c
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (([-1], b"gets k\r\n"), ValueError),
        (([0], "gets k"), TypeError),
        ((5, b"gets k\r\n"), TypeError),
        (([0], b"gets k\r\n", False, float("nan")), ValueError),
        (([0], b"gets k\r\n", False, None, -1), ValueError),
    ],
)
def test_gets_round_refuses_bad_arguments(args: tuple[object, ...], error: type[Exception]) -> None:
    assert speedups is not None
    with pytest.raises(error):
        speedups.gets_round(*args)  # type: ignore[arg-type]


# -- which implementation runs -------------------------------------------------------


@pytest.mark.skipif(
    os.environ.get("CI") != "true" or bool(os.environ.get("ERRPOLICY_PURE_PYTHON")),
    reason="only CI requires the C build (and not in the re-run on the Python twins)",
)
def test_ci_runs_the_c_speedups() -> None:
    """CI installs with a compiler: the store's C speedups must be in use there."""
    assert "c" == _native.IMPLEMENTATION


def test_the_pure_python_switch_is_honoured() -> None:
    """ERRPOLICY_PURE_PYTHON=1 in a new process leaves the store's C speedups unloaded."""
    code = "from errpolicy_memcache import _native; print(_native.IMPLEMENTATION)"
    env = {**os.environ, "ERRPOLICY_PURE_PYTHON": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "python" == out.stdout.strip()


@pytest.mark.skipif(
    not os.environ.get("ERRPOLICY_PURE_PYTHON"), reason="for the run on the Python twins"
)
def test_the_python_twins_run_when_asked() -> None:
    """The second pass of `make pytest` really exercises the Python twins."""
    assert (None, "python") == (speedups, _native.IMPLEMENTATION)


# -- multi-phase init: per-module state --------------------------------------------------


@needs_c
def test_each_module_object_keeps_its_own_state() -> None:
    """A second module object from the same file (multi-phase init) has its own state:
    it has not been set up, while the one in use still is."""
    assert speedups is not None
    spec = importlib.util.spec_from_file_location(speedups.__name__, speedups.__file__)
    assert spec is not None
    assert spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    with pytest.raises(RuntimeError, match="setup"):
        other.gets_round([], b"gets k\r\n")
    assert (False, []) == (other is speedups, speedups.gets_round([], b"gets k\r\n"))


# -- line_round: the reply line of a store command ----------------------------------


def _store_answers(
    address: tuple[str, int], monkeypatch: pytest.MonkeyPatch, *, c_round: bool
) -> list[tuple[list[object], str | None, str | None]]:
    """A save's ``set`` to the fake node at ``address`` through the fan-out, in C or in
    Python: (values, failure kind, failure detail)."""
    if not c_round:
        monkeypatch.setattr(_transport, "_C_GETS", None)
    transport = make_transport("pipelined", address[0], address[1], 1.0, 0.3, 4)
    answers = _transport._fan_out([(transport, [set_("k", b"v", 60)])], time.perf_counter() + 5)
    monkeypatch.undo()
    return [
        (values, None if f is None else f.kind, None if f is None else f.detail[:30])
        for values, f, _ in answers
    ]


@needs_c
@pytest.mark.parametrize(
    "reply",
    [
        b"STORED\r\n",
        b"NOT_STORED\r\n",
        b"EXISTS\r\n",
        b"SERVER_ERROR out of memory storing object\r\n",
        b"CLIENT_ERROR bad data chunk\r\n",
        b"ERROR\r\n",
        b"STORED\r\nEXTRA",
        b"HELLO\r\n",
        b"STORED",
        b"A" * 2000,
    ],
)
def test_line_round_reads_a_store_reply_as_the_python_reader_does(
    reply: bytes,
    monkeypatch: pytest.MonkeyPatch,
    fake: Callable[[bytes], tuple[str, int]],
) -> None:
    """A store command's reply line, read in C, means what the Python reader says."""
    in_c = _store_answers(fake(reply), monkeypatch, c_round=True)
    in_python = _store_answers(fake(reply), monkeypatch, c_round=False)
    assert in_python == in_c


@needs_c
def test_line_round_stores_every_copy_in_one_round(
    cluster: MemcachedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save's copies go out in one C round: each node answers STORED and holds them."""
    assert speedups is not None
    rounds: list[int] = []

    def line_round(fds: list[int], request: bytes, timeout: float | None) -> object:
        rounds.append(len(fds))
        return speedups.line_round(fds, request, timeout)

    monkeypatch.setattr(_transport, "_C_LINES", line_round)
    transports = [
        make_transport("pymemcache", s.host, s.port, 1.0, 0.5, 4) for s in cluster.servers
    ]
    command = set_("line-round-key", b"value", 60)
    answers = _transport._fan_out([(t, [command]) for t in transports])
    assert [(["STORED"], None)] * 3 == [(values, failure) for values, failure, _ in answers]
    assert [3] == rounds
    assert [b"value"] * 3 == [
        Client((s.host, s.port)).get("line-round-key") for s in cluster.servers
    ]


@needs_c
def test_line_round_refuses_bad_arguments() -> None:
    assert speedups is not None
    with pytest.raises(TypeError):
        speedups.line_round([0])  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="out of range"):
        speedups.line_round([-1], b"set k 0 0 1\r\nv\r\n")
