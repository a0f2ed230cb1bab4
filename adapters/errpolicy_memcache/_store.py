"""MemcacheSessionStore: replicated, versioned, signed sessions that report each outcome.

The synchronous driver of the store's sans-IO core (:class:`~._machine_read.StoreCore`):
it checks the options and builds the core, guards each public call, carries the core's
commands out over the transports (``_drive``: a C round for the usual read and save),
and runs the prober thread.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any, TypeVar

import errpolicy
from errpolicy import Policy, match

from ._clocks import PROCESS_CLOCKS, Clocks
from ._errors import SessionUnavailable
from ._ids import is_valid_session_id, new_session_id
from ._machine import LOGGER_NAME
from ._machine_read import StoreCore
from ._machine_write import check_id
from ._metrics import StoreStats
from ._node import Node, Prober, Reply, settle
from ._node_io import Transports
from ._options import check_options, check_ttl
from ._outcome import Outcome, OutcomeKind
from ._session import Session, _Lock
from ._steps import HOME_STORE, ROUND, WAIT, Steps
from ._transport import TRANSPORTS, agreed_gets, stored_round, wide_gets
from ._wire import MAX_VALUE, Command

__all__ = ["DEFAULT_POLICIES", "LOGGER_NAME", "OPERATIONS", "MemcacheSessionStore", "build_core"]

T = TypeVar("T")

_logger = logging.getLogger(LOGGER_NAME)

#: The guard names, one per logical operation.
OPERATIONS = (
    "session.destroy",
    "session.exists",
    "session.regenerate",
    "session.save",
    "session.start",
)


def _default_policy() -> Policy:
    return Policy(
        raise_on="WARNING | ERROR | CRITICAL",
        record="ALL",
        scope=match.logger(LOGGER_NAME),
    )


#: The policy each operation's guard uses when the application configured none under
#: its name: notices recorded, warnings and errors raised, and only this adapter's own
#: records in scope (an unrelated warning during the call does not fail the request).
DEFAULT_POLICIES: Mapping[str, Policy] = MappingProxyType(
    {name: _default_policy() for name in OPERATIONS}
)

# One guard object per operation, made once: guards are stateless, and a guard made
# with a default policy caches its resolved policy until the configuration changes.
_GUARDS = {name: errpolicy.guard(name, default=DEFAULT_POLICIES[name]) for name in OPERATIONS}


def _raise_unavailable(outcome: Outcome | None) -> None:
    if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
        raise SessionUnavailable(outcome)


class MemcacheSessionStore:
    """Sessions replicated on ``replicas`` memcached nodes, each operation guarded.

    ``servers`` are ``"host:port"`` strings (or ``(host, port)`` tuples). ``secret_key`` is
    a str or bytes of at least 16 bytes, or a list of them: the first signs, all verify.
    See docs/memcache/options.md for every option; all times are in seconds.
    """

    def __init__(
        self,
        servers: Sequence[str | tuple[str, int]],
        secret_key: str | bytes | Sequence[str | bytes],
        replicas: int | None = None,
        *,
        prefix: str = "errpolicy:session:",
        idle_ttl: int = 1800,
        absolute_ttl: int | None = 86400,
        renew_after: float = 0.5,
        max_size: int = 256 * 1024,
        connect_timeout: float = 0.25,
        timeout: float = 0.5,
        failure_threshold: int = 3,
        retry_after: float = 0.1,
        max_retry_after: float = 0.4,
        locking: bool = False,
        lock_timeout: float = 1.0,
        lock_ttl: int = 30,
        lock_poll: float = 0.01,
        pool_size: int = 16,
        transport: str = "pymemcache",
        read_all_nodes: bool = False,
        operation_timeout: float | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        clock: Callable[[], float] | Clocks = time.time,
    ) -> None:
        self._core = core = build_core(
            servers,
            secret_key,
            replicas,
            on_open=self._wake_prober,
            prefix=prefix,
            idle_ttl=idle_ttl,
            absolute_ttl=absolute_ttl,
            renew_after=renew_after,
            max_size=max_size,
            connect_timeout=connect_timeout,
            timeout=timeout,
            failure_threshold=failure_threshold,
            retry_after=retry_after,
            max_retry_after=max_retry_after,
            locking=locking,
            lock_timeout=lock_timeout,
            lock_ttl=lock_ttl,
            lock_poll=lock_poll,
            pool_size=pool_size,
            transport=transport,
            read_all_nodes=read_all_nodes,
            operation_timeout=operation_timeout,
            on_outcome=on_outcome,
            clock=clock,
        )
        self._handoff = core.handoff
        self._locking = locking
        self._absolute_ttl = absolute_ttl  # the Flask glue compares it with Flask's lifetime
        self._timeout = core.operation_timeout  # the home rounds' deadline
        self._known_ids = core.known_ids  # save() skips the id check of a kept id
        self._ticks = core.clocks.ticks  # the core's: the rounds' times and its own agree
        # The connections are the driver's, not the core's.
        self._transports = transports = Transports(
            core.nodes,
            transport,
            connect_timeout,
            timeout,
            pool_size,
            max(max_size, MAX_VALUE),  # another process may store up to its max_size
            core.route,
        )
        self._routes = transports.routes  # routes[known.route]: a home's transports
        self._by_node = transports.by_node
        # The driver's I/O, in these callables: the simulation tests put simulated nodes
        # (and simulated time) here.
        self._execute: Callable[..., list[Reply]] = transports.execute
        self._exchange: Callable[..., list[Reply]] = transports.exchange  # unrecorded
        self._agreed_gets = agreed_gets
        self._stored_round = stored_round
        self._wide_gets = wide_gets
        self._sleep: Callable[[float], None] = time.sleep
        self._prober = Prober(core.nodes, core.probe, self._hand_over, self._probe_round)

    def _probe_round(self, plan: Sequence[tuple[Node, Sequence[Command]]]) -> list[Reply]:
        return self._exchange(plan, self._core.deadline(None))

    def _wake_prober(self) -> None:
        self._prober.wake()

    def __repr__(self) -> str:
        return f"<MemcacheSessionStore {self._core!r}>"

    # -- public API ------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes in the order given; ``node.breaker.state`` tells their health."""
        return self._core.nodes

    def stats(self) -> StoreStats:
        """What this store counted since it was built: outcomes per operation, results
        per node, latency per operation, and each node's breaker state now."""
        return self._core.stats()

    def new_session(self) -> Session:
        """A fresh, empty session with a new id; no I/O."""
        return self._core.new_session()

    def start(self, sid: str | None) -> Session:
        """Load the session ``sid``, or give a new one if it is None, malformed or unknown.

        Guarded by ``"session.start"``. With the default policy, a failed node costs a
        recorded notice; no node answering raises :class:`errpolicy.PolicyViolation`.
        An unknown or destroyed id never comes back: the new session has a fresh id.
        """
        if self._handoff.waiting:
            self._hand_over()
        held: list[_Lock] | None = [] if self._locking else None
        try:
            with _GUARDS["session.start"]:
                session, outcome = self._start(sid, held)
        except BaseException:
            # The caller never gets this session: do not leave its lock held.
            if held:
                self._drive(self._core.unlock_key(held[0]))
            raise
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)
        return session

    def exists(self, sid: str) -> bool:
        """True if ``sid`` names a stored, live session (guarded by ``"session.exists"``)."""
        if not is_valid_session_id(sid):
            return False
        with _GUARDS["session.exists"]:
            found, outcome = self._drive(self._core.exists(sid))
        _raise_unavailable(outcome)
        return found is not None

    def save(self, session: Session, *, must_create: bool = False, ttl: int | None = None) -> None:
        """Write the session to its replicas (guarded by ``"session.save"``).

        ``must_create`` stores only if the id is unused anywhere (memcached ``add``),
        else raises :class:`SessionExists`. ``ttl`` sets this session's idle lifetime
        (kept for later saves and renewals). Oversize or non-JSON data raises
        :class:`SessionTooLarge` / :class:`SessionDataError` before any I/O, and the
        session keeps its data. A save with the lock held releases it.
        """
        sid = session._id
        if type(sid) is not str or sid not in self._known_ids:  # a kept id was checked
            check_id(session)
        if ttl is not None:
            check_ttl(ttl)
        core = self._core
        with _GUARDS["session.save"]:
            # The usual save in one C round (the core's prepare_save/home_saved), else
            # the core's save steps, going on from that round's replies.
            saving = core.prepare_save(session, must_create, ttl)
            known = saving[0]
            if known is None:
                outcome = self._drive(core.save(session, must_create, ttl, saving))
            else:
                ticks = self._ticks  # a call of an attribute: LOAD_METHOD would not specialize
                began = ticks()
                command = saving[1]
                try:
                    transports = self._routes[known.route]
                except IndexError:  # a route this store had not used yet
                    transports = self._transports.route(known.route)
                stored = self._stored_round(transports, command, began + self._timeout)
                if stored is True:
                    outcome = core.home_saved(session, ttl, saving, began)
                else:
                    assert isinstance(stored, list)
                    replies = settle([(node, (command,)) for node in known.home], stored, began)
                    outcome = self._drive(core.save(session, must_create, ttl, saving, replies))
        if outcome is not None and outcome.kind is OutcomeKind.UNAVAILABLE:
            raise SessionUnavailable(outcome)

    def regenerate(self, session: Session) -> None:
        """Give the session a new id (at login); the old id is tombstoned and stops working.

        Guarded by ``"session.regenerate"``. The data moves to the new id at once.
        """
        check_id(session)
        with _GUARDS["session.regenerate"]:
            outcome = self._drive(self._core.regenerate(session))
        _raise_unavailable(outcome)

    def destroy(self, session: Session) -> None:
        """Log out: tombstone the stored session, then reset ``session`` to a new empty one.

        Guarded by ``"session.destroy"``. The tombstone outlives the stored copies, so the
        session does not come back when a node that was down returns with it.
        """
        check_id(session)
        outcome: Outcome | None = None
        with _GUARDS["session.destroy"]:
            if not session.new:
                steps = self._core.tombstone(session.id, session.version, session.ttl, session)
                outcome = self._drive(steps)
        _raise_unavailable(outcome)
        session._reset(new_session_id(), self._core.now())

    def delete(self, sid: str) -> None:
        """Tombstone the session ``sid`` (guarded by ``"session.destroy"``).

        A malformed id cannot name a stored session: nothing is sent.
        """
        if not is_valid_session_id(sid):
            return
        with _GUARDS["session.destroy"]:
            outcome = self._drive(self._core.tombstone(sid, 0, None, None))
        _raise_unavailable(outcome)

    def release(self, session: Session) -> None:
        """Release the session's lock without saving (a request that changed nothing)."""
        if session._lock is not None:
            self._drive(self._core.unlock(session))

    def close(self) -> None:
        """Stop probing and close every pooled connection (the store can still be used;
        it reconnects)."""
        self._prober.close()
        self._transports.close()

    def __enter__(self) -> MemcacheSessionStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the driver ------------------------------------------------------------------

    def _start(self, sid: str | None, held: list[_Lock] | None) -> tuple[Session, Outcome | None]:
        """The usual read in one C round (the core's ``read_plan``, then
        ``home_session``; after a fault ``wide_session``), else the core's start steps,
        going on from that round's replies."""
        core = self._core
        known = core.read_plan(sid)
        if known is None:
            return self._drive(core.start(sid, held))
        if isinstance(known, tuple):  # after a fault: every node not skipped, one C round
            wide = known
            assert sid is not None
            began = self._ticks()
            of = self._by_node  # the asked nodes' transports (a loop: every outage read)
            transports = []
            for node in wide[1]:
                transports.append(of[node])
            agreed = self._wide_gets(transports, wide[0].command, wide[4], began + self._timeout)
            if type(agreed) is tuple:
                session = core.wide_session(sid, wide, began, agreed)
                if session is not None:
                    return session, None
                return self._drive(core.start(sid, held, began=began))
            assert isinstance(agreed, list)
            replies = settle([(node, (wide[0].command,)) for node in wide[1]], agreed, began)
            return self._drive(core.start(sid, held, began=began, home=replies, wide=True))
        assert sid is not None
        ticks = self._ticks  # a call of an attribute: LOAD_METHOD would not specialize
        began = ticks()
        try:
            transports = self._routes[known.route]
        except IndexError:  # a route this store had not used yet
            transports = self._transports.route(known.route)
        found = self._agreed_gets(transports, known.command, began + self._timeout)
        if type(found) is bytes:
            session = core.home_session(sid, known, began, found)
            if session is not None:
                return session, None
            return self._drive(core.start(sid, held, began=began))
        assert isinstance(found, list)
        replies = settle([(node, (known.command,)) for node in known.home], found, began)
        return self._drive(core.start(sid, held, began=began, home=replies))

    def _drive(self, steps: Steps[T]) -> T:
        """Carry out the core's commands (``_steps``) until the operation returns."""
        try:
            command = next(steps)
            while True:
                tag = command[0]
                if tag is ROUND:
                    command = steps.send(self._execute(command[1], command[2]))
                elif tag is HOME_STORE:  # the usual save: a C round
                    known, write = command[1], command[2]
                    began = self._ticks()
                    transports = self._transports.route(known.route)
                    stored = self._stored_round(transports, write, began + self._timeout)
                    if stored is True:
                        command = steps.send(True)
                    else:
                        assert isinstance(stored, list)
                        plan = [(node, (write,)) for node in known.home]
                        command = steps.send(settle(plan, stored, began))
                else:
                    assert tag is WAIT
                    self._sleep(command[1])
                    command = steps.send(None)
        except StopIteration as done:
            result: T = done.value
            return result

    def _hand_over(self) -> None:
        """Hand over what waits for the nodes that are back (the core's steps)."""
        steps = self._core.hand_over()
        try:
            self._drive(steps)
        finally:
            steps.close()  # a handover cut short lets go of the handoff at once


# The keyword options and their defaults: the sync store's signature, the one place
# they are written (the async driver takes the same).
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        name: parameter.default
        for name, parameter in inspect.signature(MemcacheSessionStore.__init__).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
)


def build_core(
    servers: Sequence[str | tuple[str, int]],
    secret_key: str | bytes | Sequence[str | bytes],
    replicas: int | None,
    *,
    on_open: Callable[[], None],
    **options: Any,
) -> StoreCore:
    """Check the options (``DEFAULTS`` for those not given) and build the core a driver
    holds; ``on_open`` wakes the driver's prober when a breaker opens. The ``clock``
    option is the core's wall clock, with the process's other clocks, or a
    :class:`~._clocks.Clocks` for all of them (a simulation's)."""
    unknown = options.keys() - DEFAULTS.keys()
    if unknown:
        raise TypeError(f"unexpected keyword argument {sorted(unknown)[0]!r}")
    values = {**DEFAULTS, **options}
    checked = check_options(
        servers,
        replicas,
        transports=TRANSPORTS,
        **{k: v for k, v in values.items() if k not in ("on_outcome", "clock")},
    )
    if len(checked.addresses) == 1:
        _logger.warning(
            "one memcached server: each session has one copy and there is no failover "
            "(if it stops, every session is unavailable; if it restarts, all are lost); "
            "list two or more servers in production"
        )
    for driver_only in ("operation_timeout", "pool_size", "transport"):
        values.pop(driver_only)
    clock = values.pop("clock")
    clocks = clock if isinstance(clock, Clocks) else replace(PROCESS_CLOCKS, wall=clock)
    return StoreCore(checked, secret_key, on_open=on_open, clocks=clocks, **values)
