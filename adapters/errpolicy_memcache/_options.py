"""The store's options, checked apart from any I/O: every driver (the synchronous store,
an asyncio one) builds its nodes from the same :class:`Options`, and a bad value gets
the same :class:`ConfigurationError` whichever driver is used."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from ._core import MAX_TTL
from ._errors import ConfigurationError

__all__ = ["Options", "check_options", "check_ttl", "parse_server", "replicas_for"]


@dataclass(frozen=True, slots=True)
class Options:
    """The checked options that a driver needs beyond the caller's own values:
    the servers as ``(host, port)`` pairs and the operation's deadline in seconds."""

    addresses: tuple[tuple[str, int], ...]
    operation_timeout: float
    replicas: int


def replicas_for(replicas: object, servers: int) -> int:
    """The number of copies: as given, or by default 2 (1 with one server: the usual
    laptop setup, for which the driver warns at boot that there is no failover)."""
    if replicas is None:
        replicas = min(2, servers)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ConfigurationError(f"replicas: must be an int >= 1, not {replicas!r}")
    if replicas > servers:
        hint = (
            "leave replicas unset, or set replicas=1, for one copy without failover"
            if servers == 1
            else f"list more servers, or set replicas={servers}"
        )
        raise ConfigurationError(
            f"replicas: {replicas} copies need at least {replicas} servers, got {servers} ({hint})"
        )
    return replicas


def parse_server(spec: object) -> tuple[str, int]:
    """``"host:port"``, ``"[v6]:port"`` or ``(host, port)`` as ``(host, port)``."""
    if isinstance(spec, tuple) and len(spec) == 2:
        host, port = spec
    elif isinstance(spec, str):
        host, sep, port = spec.rpartition(":")
        if not sep:
            raise ConfigurationError(f"servers: {spec!r} is not 'host:port'")
    else:
        raise ConfigurationError(f"servers: {spec!r} is not 'host:port' or (host, port)")
    try:
        port_number = int(port)
    except (TypeError, ValueError):
        raise ConfigurationError(f"servers: bad port in {spec!r}") from None
    if not isinstance(host, str) or not host.strip("[]") or not 0 < port_number < 65536:
        raise ConfigurationError(f"servers: bad address {spec!r}")
    return host.strip("[]"), port_number


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name}: must be a positive number, not {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigurationError(f"{name}: must be an int, not {value!r}")


def check_ttl(ttl: object) -> None:
    """A ``ttl=`` given to ``save()``: a positive int, at most 30 days."""
    _positive("ttl", ttl, integer=True)  # type: ignore[arg-type]  # checked here
    assert isinstance(ttl, int)
    if ttl > MAX_TTL:
        raise ConfigurationError(f"ttl: at most 30 days ({MAX_TTL}), not {ttl}")


def check_options(
    servers: Sequence[str | tuple[str, int]],
    replicas: int | None,
    *,
    prefix: str,
    idle_ttl: int,
    absolute_ttl: int | None,
    renew_after: float,
    max_size: int,
    connect_timeout: float,
    timeout: float,
    failure_threshold: int,
    retry_after: float,
    max_retry_after: float,
    locking: bool,
    lock_timeout: float,
    lock_ttl: int,
    lock_poll: float,
    pool_size: int,
    transport: str,
    transports: Collection[str],
    read_all_nodes: bool,
    operation_timeout: float | None,
) -> Options:
    """Check every option of ``MemcacheSessionStore`` (docs/memcache/options.md);
    raise :class:`ConfigurationError` naming the first bad one. ``transports``: the
    transport names the driver offers. ``operation_timeout`` None: a few rounds, and the
    lock's wait."""
    if isinstance(servers, str) or not servers:
        raise ConfigurationError("servers: give a non-empty list of 'host:port' strings")
    addresses = [parse_server(s) for s in servers]
    if len({f"{h}:{p}" for h, p in addresses}) != len(addresses):
        raise ConfigurationError("servers: an address is listed twice")
    replicas = replicas_for(replicas, len(addresses))
    if not isinstance(prefix, str) or not prefix.isascii() or not prefix.isprintable():
        raise ConfigurationError(f"prefix: printable ASCII without spaces, not {prefix!r}")
    if " " in prefix or len(prefix) > 150:
        raise ConfigurationError(f"prefix: printable ASCII without spaces, not {prefix!r}")
    for name, value in (("idle_ttl", idle_ttl), ("lock_ttl", lock_ttl)):
        _positive(name, value, integer=True)
        if value > MAX_TTL:
            raise ConfigurationError(f"{name}: at most 30 days ({MAX_TTL}), not {value}")
    if absolute_ttl is not None:
        _positive("absolute_ttl", absolute_ttl, integer=True)
    if not isinstance(renew_after, int | float) or not 0 <= renew_after <= 1:
        raise ConfigurationError(f"renew_after: a fraction in [0, 1], not {renew_after!r}")
    _positive("max_size", max_size, integer=True)
    for name, number in (
        ("connect_timeout", connect_timeout),
        ("timeout", timeout),
        ("retry_after", retry_after),
        ("max_retry_after", max_retry_after),
        ("lock_timeout", lock_timeout),
        ("lock_poll", lock_poll),
    ):
        _positive(name, number)
    if operation_timeout is None:  # a few rounds, and the lock's wait (options.md)
        operation_timeout = 4 * (connect_timeout + timeout) + (lock_timeout if locking else 0)
    _positive("operation_timeout", operation_timeout)
    if locking and operation_timeout <= lock_timeout:
        raise ConfigurationError(
            f"operation_timeout: must exceed lock_timeout ({lock_timeout}) with locking, "
            f"not {operation_timeout!r}"
        )
    _positive("failure_threshold", failure_threshold, integer=True)
    _positive("pool_size", pool_size, integer=True)
    if not isinstance(read_all_nodes, bool):
        raise ConfigurationError(f"read_all_nodes: True or False, not {read_all_nodes!r}")
    if transport not in transports:
        raise ConfigurationError(
            f"transport: one of {', '.join(map(repr, transports))}, not {transport!r}"
        )
    return Options(tuple(addresses), float(operation_timeout), replicas)
