"""The one global configuration, set once at boot: policies by name, classifiers, sink.

``configure()`` changes only the keys it is given, like structlog's.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import match as _match
from ._errors import ConfigurationError
from ._policy import Policy
from ._severity import logging_level
from ._sinks import default_sink
from .typing import Classifier, Sink

#: The environment variable :func:`configure_from_env` reads.
ENV_VARIABLE = "ERRPOLICY_POLICY"


@dataclass(frozen=True, slots=True)
class Config:
    """errpolicy's configuration; read it with :func:`get_config`."""

    #: Policies by guard name.
    policies: Mapping[str, Policy] = field(default_factory=lambda: MappingProxyType({}))
    #: For guards with no policy of their own, configured or given as ``default=``.
    default_policy: Policy = field(default_factory=Policy)
    #: Run in order before the default classifier; the first answer wins.
    classifiers: tuple[Classifier, ...] = ()
    #: Receives recorded events; ``None`` means the default sink.
    sink: Sink | None = None
    #: Events kept per guard entry (the first half and the latest half).
    max_events: int = 1000
    #: If set, log records at or above this level are created inside guards even
    #: when their logger is not enabled for them (costs a little on every log call).
    capture_log_level: int | None = None

    def policy_for(self, name: str, default: Policy | None = None) -> Policy:
        """The configured policy for ``name``, else ``default``, else the default policy."""
        policy = self.policies.get(name)
        if policy is not None:
            return policy
        return default if default is not None else self.default_policy


_config = Config()
_sink_cache: list[Sink] = []


def get_config() -> Config:
    """The current configuration."""
    return _config


def resolved_sink(config: Config) -> Sink:
    """The sink to use: the configured one, else the default (decided once, lazily,
    so that importing errpolicy does not import structlog)."""
    if config.sink is not None:
        return config.sink
    if not _sink_cache:
        _sink_cache.append(default_sink())
    return _sink_cache[0]


_UNSET: Any = object()


def configure(
    *,
    policies: Mapping[str, Policy] | None = None,
    default_policy: Policy | None = None,
    classifiers: Iterable[Classifier] | None = None,
    sink: Sink | None = _UNSET,
    max_events: int | None = None,
    capture_log_level: int | str | None = _UNSET,
) -> Config:
    """Configure errpolicy, once, at boot. Only the keys given change.

    Installs the capture hooks (once) and returns the new configuration.
    Bad values raise :class:`ConfigurationError` naming the key.
    """
    changes: dict[str, Any] = {}
    if policies is not None:
        changes["policies"] = _check_policies(policies)
    if default_policy is not None:
        changes["default_policy"] = _check_policy("default_policy", default_policy)
    if classifiers is not None:
        changes["classifiers"] = _check_classifiers(classifiers)
    if sink is not _UNSET:
        if sink is not None and not callable(sink):
            raise ConfigurationError(f"must be callable, not {sink!r}", key="sink")
        changes["sink"] = sink
    if max_events is not None:
        if not isinstance(max_events, int) or isinstance(max_events, bool) or max_events < 2:
            raise ConfigurationError(
                f"must be an int of at least 2, not {max_events!r}", key="max_events"
            )
        changes["max_events"] = max_events
    if capture_log_level is not _UNSET:
        changes["capture_log_level"] = _check_level(capture_log_level)
    return _replace(**changes)


def reset_defaults() -> Config:
    """Back to the configuration errpolicy starts with."""
    return _replace(**{f.name: getattr(Config(), f.name) for f in dataclasses.fields(Config)})


def configure_from_mapping(mapping: Mapping[str, Any]) -> Config:
    """Configure from plain data, such as a TOML table.

    Keys: ``policies`` (name → ``{raise_on, record, immediate}``), ``default_policy``
    (the same shape), ``classifiers`` (a list of ``{severity, logger, message,
    level, category, source}`` rules), ``max_events``, ``capture_log_level``.
    """
    if not isinstance(mapping, Mapping):
        raise ConfigurationError(f"expected a mapping, not {type(mapping).__name__}")
    known = {"policies", "default_policy", "classifiers", "max_events", "capture_log_level"}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown key (known: {', '.join(sorted(known))})", key=str(unknown[0])
        )
    kwargs: dict[str, Any] = {}
    if "policies" in mapping:
        table = mapping["policies"]
        if not isinstance(table, Mapping):
            raise ConfigurationError("must be a table of policies", key="policies")
        kwargs["policies"] = {
            name: policy_from_mapping(f"policies.{name}", spec) for name, spec in table.items()
        }
    if "default_policy" in mapping:
        kwargs["default_policy"] = policy_from_mapping("default_policy", mapping["default_policy"])
    if "classifiers" in mapping:
        rules = mapping["classifiers"]
        if not isinstance(rules, Sequence) or isinstance(rules, str):
            raise ConfigurationError("must be a list of rules", key="classifiers")
        kwargs["classifiers"] = [
            rule_from_mapping(f"classifiers[{i}]", spec) for i, spec in enumerate(rules)
        ]
    if "max_events" in mapping:
        kwargs["max_events"] = mapping["max_events"]
    if "capture_log_level" in mapping:
        kwargs["capture_log_level"] = mapping["capture_log_level"]
    return configure(**kwargs)


def configure_from_env(
    environ: Mapping[str, str] | None = None, variable: str = ENV_VARIABLE
) -> Config:
    """Add or replace policies from an environment variable.

    The form is ``NAME=RAISE_ON[/RECORD]`` entries separated by ``;``, for example
    ``ERRPOLICY_POLICY="session.start=ALL & ~NOTICE / NOTICE; *=ERROR|CRITICAL"``.
    ``*`` names the default policy. Policies named elsewhere are kept.
    """
    env = os.environ if environ is None else environ
    text = env.get(variable, "")
    policies = dict(_config.policies)
    default_policy: Policy | None = None
    for number, entry in enumerate(text.replace("\n", ";").split(";"), start=1):
        if not entry.strip():
            continue
        name, sep, spec = entry.partition("=")
        name = name.strip()
        key = f"{variable} entry {number} ({name or entry.strip()!r})"
        if not sep or not name:
            raise ConfigurationError(
                f"expected NAME=RAISE_ON[/RECORD], got {entry.strip()!r}", key=key
            )
        raise_on, slash, record = spec.partition("/")
        fields: dict[str, Any] = {"raise_on": raise_on.strip()}
        if slash:
            fields["record"] = record.strip()
        policy = policy_from_mapping(key, fields)
        if name == "*":
            default_policy = policy
        else:
            policies[name] = policy
    return configure(policies=policies, default_policy=default_policy)


def policy_from_mapping(key: str, spec: Any) -> Policy:
    """A :class:`Policy` from ``{raise_on, record, immediate}``; errors name ``key``."""
    if isinstance(spec, Policy):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"expected a table with raise_on/record, not {spec!r}", key=key)
    unknown = sorted(set(spec) - {"raise_on", "record", "immediate"})
    if unknown:
        raise ConfigurationError(f"unknown key {unknown[0]!r}", key=key)
    try:
        return Policy(**spec)
    except ConfigurationError as e:
        raise e.for_key(f"{key}.{e.key}" if e.key else key) from None


def rule_from_mapping(key: str, spec: Any) -> _match.Rule:
    """A classifier rule from ``{severity, logger, message, level, category, source}``."""
    if not isinstance(spec, Mapping) or "severity" not in spec:
        raise ConfigurationError("expected a table with 'severity' and conditions", key=key)
    fields = dict(spec)
    unknown = sorted(set(fields) - {"severity", "logger", "message", "level", "category", "source"})
    if unknown:
        raise ConfigurationError(f"unknown key {unknown[0]!r}", key=key)
    if "category" in fields:
        fields["category"] = _warning_category(key, fields["category"])
    try:
        return _match.rule(**fields)
    except ConfigurationError as e:
        raise e.for_key(key) from None


def _warning_category(key: str, name: Any) -> type[Warning]:
    import builtins

    found = getattr(builtins, str(name), None)
    if isinstance(found, type) and issubclass(found, Warning):
        return found
    raise ConfigurationError(f"{name!r} is not a built-in warning category", key=f"{key}.category")


def _check_policy(key: str, policy: object) -> Policy:
    if not isinstance(policy, Policy):
        raise ConfigurationError(f"expected a Policy, not {policy!r}", key=key)
    return policy


def _check_policies(policies: Mapping[str, Policy]) -> Mapping[str, Policy]:
    if not isinstance(policies, Mapping):
        raise ConfigurationError("expected a mapping of names to policies", key="policies")
    checked = {}
    for name, policy in policies.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(
                f"policy names are non-empty strings, not {name!r}", key="policies"
            )
        checked[name] = _check_policy(f"policies[{name!r}]", policy)
    return MappingProxyType(checked)


def _check_classifiers(classifiers: Iterable[Classifier]) -> tuple[Classifier, ...]:
    result = tuple(classifiers)
    for i, c in enumerate(result):
        if not callable(c):
            raise ConfigurationError(f"must be callable, not {c!r}", key=f"classifiers[{i}]")
    return result


def _check_level(level: int | str | None) -> int | None:
    if level is None:
        return None
    try:
        return logging_level(level)
    except ValueError as e:
        raise ConfigurationError(str(e), key="capture_log_level") from None


def _replace(**changes: Any) -> Config:
    return restore(dataclasses.replace(_config, **changes))


def restore(config: Config) -> Config:
    """Make ``config`` the configuration again (used by :func:`errpolicy.testing.configured`)."""
    global _config
    from . import _hooks

    new = config
    _config = new
    _hooks.install()
    _hooks.sync_level_hook(new.capture_log_level)
    return new
