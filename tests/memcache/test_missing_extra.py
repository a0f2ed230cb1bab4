"""Without the ``[memcache]`` extra: the error names the extra, and what needs no pymemcache works.

The dev environment has pymemcache, so each test runs a script in a new interpreter whose
import system refuses pymemcache the way a missing distribution does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from errpolicy_memcache.testing import MemcachedCluster

# Put in front of every script: `import pymemcache` (and its submodules, or only
# the one named by BLOCKED) fails as it does when the distribution is not installed.
# With NONE_ENTRY, the other common spelling: a None entry in sys.modules.
_BLOCKER = """
import importlib.abc, json, sys

BLOCKED = {blocked!r}
if {none_entry!r}:
    sys.modules[BLOCKED] = None

class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == BLOCKED or name.startswith(BLOCKED + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def _run(
    script: str, blocked: str = "pymemcache", *, none_entry: bool = False
) -> dict[str, object]:
    """Run ``script`` with ``blocked`` unimportable; the JSON it printed last."""
    source = _BLOCKER.format(blocked=blocked, none_entry=none_entry) + textwrap.dedent(script)
    proc = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60
    )
    assert 0 == proc.returncode, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


_BUILD = """
from errpolicy_memcache import MemcacheSessionStore
try:
    MemcacheSessionStore(["127.0.0.1:1", "127.0.0.1:2"], secret_key="s" * 32)
except Exception as exc:
    cause = exc.__cause__
    print(json.dumps({
        "type": type(exc).__name__,
        "import_error": isinstance(exc, ImportError),
        "store_error": type(exc).__module__ == "errpolicy_memcache._errors",
        "message": str(exc),
        "name": getattr(exc, "name", None),
        "extra": getattr(exc, "extra", None),
        "cause": None if cause is None else type(cause).__name__,
        "pymemcache_loaded": sys.modules.get("pymemcache") is not None,
    }))
else:
    print(json.dumps({"type": None}))
"""


@pytest.mark.parametrize("none_entry", [False, True], ids=["not-installed", "none-in-sys-modules"])
def test_building_a_store_without_pymemcache_names_the_extra(none_entry: bool) -> None:
    """The default transport without pymemcache raises MissingDependency naming the extra."""
    result = _run(_BUILD, none_entry=none_entry)
    assert {
        "type": "MissingDependency",
        "import_error": True,
        "store_error": True,
        "name": "pymemcache",
        "extra": "memcache",
        "cause": "ModuleNotFoundError",
        "pymemcache_loaded": False,
    } == {k: v for k, v in result.items() if k != "message"}
    assert "pip install 'errpolicy[memcache]'" in str(result["message"])
    assert "transport='pipelined'" in str(result["message"])


def test_the_error_is_public_and_catchable_as_import_error() -> None:
    """errpolicy_memcache.MissingDependency is an ImportError and a MemcacheSessionError."""
    from errpolicy_memcache import MemcacheSessionError, MissingDependency

    error = MissingDependency("pymemcache", "memcache")
    assert (True, True) == (
        isinstance(error, ImportError),
        isinstance(error, MemcacheSessionError),
    )
    assert ("pymemcache", "memcache") == (error.name, error.extra)


def test_a_broken_pymemcache_install_is_not_reported_as_a_missing_extra() -> None:
    """pymemcache present but a module of it missing: the original ModuleNotFoundError."""
    result = _run(_BUILD, blocked="pymemcache.client")
    assert ("ModuleNotFoundError", "pymemcache.client") == (result["type"], result["name"])


def test_importing_the_adapter_needs_no_pymemcache() -> None:
    """``import errpolicy_memcache`` and its framework-free modules load without pymemcache."""
    result = _run(
        """
        import errpolicy_memcache, errpolicy_memcache.testing, errpolicy_memcache.wsgi
        print(json.dumps({"pymemcache_loaded": sys.modules.get("pymemcache") is not None}))
        """
    )
    assert {"pymemcache_loaded": False} == result


def test_the_pipelined_transport_serves_sessions_without_pymemcache(
    memcached_binary: str, store_timeouts: dict[str, float]
) -> None:
    """transport='pipelined' saves and reads a session on real memcached without pymemcache."""
    with MemcachedCluster(2, memory_mb=16) as cluster:
        result = _run(
            f"""
            from errpolicy_memcache import MemcacheSessionStore
            store = MemcacheSessionStore(
                {cluster.addresses!r}, secret_key="s" * 32, transport="pipelined",
                **{store_timeouts!r},
            )
            session = store.start(None)
            session["user_id"] = 42
            store.save(session)
            again = store.start(session.id)
            store.close()
            print(json.dumps({{
                "data": dict(again),
                "pymemcache_loaded": sys.modules.get("pymemcache") is not None,
            }}))
            """
        )
    assert {"data": {"user_id": 42}, "pymemcache_loaded": False} == result


def test_the_error_is_errpolicys_own() -> None:
    """The adapter's MissingDependency is errpolicy's, with its message, not a second copy."""
    import errpolicy

    from errpolicy_memcache import MissingDependency

    error = MissingDependency("pymemcache", "memcache", "for the default transport")
    core = errpolicy.MissingDependency("pymemcache", "memcache", "for the default transport")
    assert (True, str(core), False) == (
        isinstance(error, errpolicy.MissingDependency),
        str(error),
        "__init__" in vars(MissingDependency),
    )
