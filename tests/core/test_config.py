"""Configuration at boot: in code, from a mapping (TOML), from the environment."""

from __future__ import annotations

import tomllib

import errpolicy
import pytest
from errpolicy import ConfigurationError, Policy, Severity

# Configuring and guarding leak no warning or log record of their own: errpolicy's
# pytest plugin fails any test here that raises one outside its guards.
pytestmark = pytest.mark.errpolicy


def test_configure_changes_only_the_keys_given() -> None:
    """configure() keeps what it is not told to change."""
    sink = errpolicy.NullSink()
    errpolicy.configure(sink=sink, max_events=10)
    errpolicy.configure(policies={"a": Policy()})
    config = errpolicy.get_config()
    assert (sink, 10, ["a"]) == (config.sink, config.max_events, list(config.policies))


def test_reset_defaults_restores_everything() -> None:
    """reset_defaults() returns to the initial configuration."""
    errpolicy.configure(policies={"a": Policy()}, max_events=10, capture_log_level="DEBUG")
    errpolicy.reset_defaults()
    assert errpolicy.Config() == errpolicy.get_config()


def test_policies_are_read_only() -> None:
    """The configured mapping cannot be changed behind configure()'s back."""
    errpolicy.configure(policies={"a": Policy()})
    with pytest.raises(TypeError):
        errpolicy.get_config().policies["b"] = Policy()  # type: ignore[index]


def test_policy_masks_accept_strings_and_name_the_key() -> None:
    """A bad mask string in a Policy names the field that holds it."""
    assert Severity.ALL & ~Severity.NOTICE == Policy(raise_on="ALL & ~NOTICE").raise_on
    with pytest.raises(ConfigurationError, match=r"^record: unknown severity 'NOTCE'"):
        Policy(record="NOTCE")


def test_policy_is_frozen_and_hashable() -> None:
    """Policies are values."""
    p = Policy(raise_on="ERROR")
    with pytest.raises(AttributeError):
        p.raise_on = Severity.ALL  # type: ignore[misc]
    assert {p} == {Policy(raise_on=Severity.ERROR)}


TOML = """
max_events = 50
capture_log_level = "DEBUG"

[default_policy]
raise_on = "ERROR | CRITICAL"

[policies."session.start"]
raise_on = "E_ALL & ~E_NOTICE & ~E_DEPRECATED"
record = "NOTICE | DEPRECATED"

[[classifiers]]
severity = "WARNING"
logger = "pymemcache"
level = "DEBUG"
message = "marking server .* as dead"

[[classifiers]]
severity = "NOTICE"
category = "ResourceWarning"
"""


def test_configure_from_toml_mapping() -> None:
    """A TOML table configures policies, classifiers and limits."""
    config = errpolicy.configure_from_mapping(tomllib.loads(TOML))
    assert (
        Policy(raise_on="ALL & ~NOTICE & ~DEPRECATED", record="NOTICE | DEPRECATED")
        == (config.policies["session.start"])
    )
    assert (50, 10) == (config.max_events, config.capture_log_level)
    assert [
        "rule(WARNING, logger('pymemcache') & message('marking server .* as dead')"
        " & level('DEBUG'))",
        "rule(NOTICE, category(ResourceWarning))",
    ] == [repr(c) for c in config.classifiers]


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        ({"policies": {"s": {"raise_on": "ALL & ~NOTCE"}}}, "policies.s.raise_on"),
        ({"policies": {"s": {"raise": "ALL"}}}, "policies.s"),
        ({"policies": ["s"]}, "policies"),
        ({"polices": {}}, "polices"),
        ({"max_events": 1}, "max_events"),
        ({"max_events": "many"}, "max_events"),
        ({"capture_log_level": "LOUD"}, "capture_log_level"),
        ({"classifiers": [{"logger": "x"}]}, "classifiers[0]"),
        (
            {"classifiers": [{"severity": "WARNING", "category": "NoSuchWarning"}]},
            "classifiers[0].category",
        ),
        ({"classifiers": [{"severity": "WARN", "logger": "x"}]}, "classifiers[0]"),
        ({"default_policy": {"record": "("}}, "default_policy.record"),
    ],
)
def test_bad_mapping_fails_naming_the_key(mapping: dict[str, object], key: str) -> None:
    """Every configuration error says which key is wrong, and nothing is half-applied."""
    before = errpolicy.get_config()
    with pytest.raises(ConfigurationError) as info:
        errpolicy.configure_from_mapping(mapping)
    assert key == info.value.key
    assert str(info.value).startswith(key + ":")
    assert before == errpolicy.get_config()


def test_configure_from_env() -> None:
    """ERRPOLICY_POLICY sets raise_on (and optionally record) per name; * is the default."""
    env = {"ERRPOLICY_POLICY": "session.start=ALL & ~NOTICE / NOTICE; *=CRITICAL\ncache.get=ERROR"}
    config = errpolicy.configure_from_env(env)
    assert Policy(raise_on="ALL & ~NOTICE", record="NOTICE") == config.policies["session.start"]
    assert Policy(raise_on="ERROR") == config.policies["cache.get"]
    assert Policy(raise_on="CRITICAL") == config.default_policy


def test_configure_from_env_keeps_other_policies() -> None:
    """Names not in the variable keep their policies."""
    errpolicy.configure(policies={"kept": Policy(raise_on="NONE")})
    config = errpolicy.configure_from_env({"ERRPOLICY_POLICY": "new=ERROR"})
    assert ["kept", "new"] == sorted(config.policies)


def test_configure_from_env_without_the_variable_changes_nothing() -> None:
    """An unset or empty variable is no configuration."""
    before = errpolicy.get_config()
    errpolicy.configure_from_env({})
    assert before.policies == errpolicy.get_config().policies


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("session.start", "expected NAME=RAISE_ON"),
        ("=ERROR", "expected NAME=RAISE_ON"),
        ("a=ERROR; b=ALL & ~NOTCE", "entry 2 ('b').raise_on: unknown severity 'NOTCE'"),
        ("a=ERROR / WHAT", "entry 1 ('a').record"),
    ],
)
def test_bad_env_fails_naming_the_entry(value: str, fragment: str) -> None:
    """A bad entry in ERRPOLICY_POLICY names the variable and the entry."""
    with pytest.raises(ConfigurationError, match="ERRPOLICY_POLICY") as info:
        errpolicy.configure_from_env({"ERRPOLICY_POLICY": value})
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"policies": {"a": "ALL"}}, "policies['a']"),
        ({"default_policy": "ERROR"}, "default_policy"),
        ({"classifiers": [42]}, "classifiers[0]"),
        ({"sink": "stdout"}, "sink"),
    ],
)
def test_bad_configure_arguments_name_the_key(kwargs: dict[str, object], key: str) -> None:
    """configure() validates at boot and names the key."""
    with pytest.raises(ConfigurationError) as info:
        errpolicy.configure(**kwargs)  # type: ignore[arg-type]
    assert key == info.value.key


def test_configure_installs_the_hooks_once() -> None:
    """configure() installs the capture hooks; doing it again changes nothing."""
    errpolicy.uninstall()
    assert not errpolicy.installed()
    errpolicy.configure()
    import warnings

    first = warnings.warn
    errpolicy.configure()
    assert errpolicy.installed()
    assert first is warnings.warn


def test_uninstall_restores_the_originals() -> None:
    """uninstall() puts warnings and logging back exactly."""
    import _warnings
    import logging
    import warnings

    errpolicy.install()
    errpolicy.uninstall()
    try:
        assert _warnings.warn is warnings.warn
        assert _warnings.warn_explicit is warnings.warn_explicit
        assert all(not repr(f[1]).startswith("errpolicy") for f in warnings.filters)
        assert "callHandlers" == logging.Logger.callHandlers.__name__
        assert logging.__name__ == logging.Logger.callHandlers.__module__
    finally:
        errpolicy.install()


def test_testing_configured_restores_what_it_found() -> None:
    """errpolicy.testing.configured() restores the previous configuration, also on error."""
    from errpolicy.testing import configured

    errpolicy.configure(policies={"kept": Policy()})
    before = errpolicy.get_config()
    with pytest.raises(KeyError), configured(max_events=5) as inside:
        assert 5 == inside.max_events
        raise KeyError("leave early")
    assert before == errpolicy.get_config()
