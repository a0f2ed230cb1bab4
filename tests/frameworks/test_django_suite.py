"""Django's own ``SessionTestsMixin`` (tests/sessions_tests in the Django sdist of the
installed version) run against this engine, sync and async.

The sdist is downloaded once with pip into the fidelity cache
(``$ERRPOLICY_FIDELITY_CACHE``, default ``~/.cache/errpolicy-fidelity``) and only its
``tests/sessions_tests`` folder is unpacked there; nothing of it enters the repository.
A failed download skips these tests, and fails them under ``CI=true``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    # As in test_django.py: the rest is overridden per test.
    settings.configure(SECRET_KEY="django-secret-key-0123456789abcdef", USE_TZ=True)
    django.setup()

from django.test import SimpleTestCase, override_settings  # after settings.configure

from errpolicy_memcache.django import SessionStore
from errpolicy_memcache.testing import MemcachedCluster

_CI = os.environ.get("CI", "").lower() == "true"
_PACKAGE = "sessions_tests"


def _cache() -> Path:
    given = os.environ.get("ERRPOLICY_FIDELITY_CACHE")
    return Path(given) if given else Path.home() / ".cache" / "errpolicy-fidelity"


def _sdist(version: str, folder: Path) -> Path:
    """Django's sdist for ``version``, downloaded once with pip (into a folder of its own,
    then moved: test runs side by side may fetch it at once)."""
    found = sorted(folder.glob(f"[dD]jango-{version}.tar.gz"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
    try:
        argv = [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:"]
        result = subprocess.run(
            [*argv, "--no-deps", "-d", str(scratch), f"django=={version}"],
            capture_output=True,
            text=True,
            check=False,
        )
        got = sorted(scratch.glob(f"[dD]jango-{version}.tar.gz"))
        if result.returncode != 0 or not got:
            raise RuntimeError(f"pip download django=={version} failed:\n{result.stderr[-2000:]}")
        os.replace(got[0], folder / got[0].name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder / got[0].name


def _sessions_tests(version: str) -> Path:
    """The folder holding ``sessions_tests/`` of Django ``version``, unpacked once."""
    target = _cache() / "src" / f"django-{version}-sessions_tests"
    if (target / _PACKAGE / "tests.py").exists():
        return target
    archive = _sdist(version, _cache() / "sdists")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            wanted = [
                member
                for member in tar.getmembers()
                if member.name.split("/")[1:3] == ["tests", _PACKAGE]
            ]
            tar.extractall(partial, members=wanted, filter="data")
        try:
            (partial / archive.name.removesuffix(".tar.gz") / "tests").rename(target)
        except OSError:
            if not (target / _PACKAGE / "tests.py").exists():
                raise
            # Another run unpacked it first.
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _load_mixin() -> type:
    """Django's ``SessionTestsMixin``, imported from the unpacked sdist."""
    folder = _sessions_tests(django.__version__) / _PACKAGE
    spec = importlib.util.spec_from_file_location(
        _PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None
    assert spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[_PACKAGE] = package
    spec.loader.exec_module(package)
    # Its tests module imports the models of the other engines it tests.
    with override_settings(INSTALLED_APPS=["django.contrib.sessions", _PACKAGE]):
        tests: ModuleType = importlib.import_module(f"{_PACKAGE}.tests")
    mixin: type = tests.SessionTestsMixin
    return mixin


try:
    SessionTestsMixin: Any = _load_mixin()
except Exception as exc:
    if _CI:
        raise  # under CI=true Django's own tests must run
    pytest.skip(f"Django's sessions_tests are not available: {exc}", allow_module_level=True)


class ErrpolicySessionTests(SessionTestsMixin, SimpleTestCase):  # type: ignore[misc]  # the mixin comes from the sdist
    """Every test of Django's mixin, on three real memcached nodes."""

    backend = SessionStore

    @pytest.fixture(autouse=True)
    def _engine(
        self, cluster: MemcachedCluster, store_timeouts: dict[str, float]
    ) -> Iterator[None]:
        with override_settings(
            SESSION_ENGINE="errpolicy_memcache.django",
            ERRPOLICY_MEMCACHE_SERVERS=cluster.addresses,
            ERRPOLICY_MEMCACHE_OPTIONS=store_timeouts,
        ):
            yield


def test_the_mixin_has_the_tests_it_had():
    """The suite is Django's whole mixin: a changed layout fails here, not silently."""
    names = [name for name in dir(ErrpolicySessionTests) if name.startswith("test_")]
    assert (True, True) == (
        "test_actual_expiry" in names and "test_actual_expiry_async" in names,
        len(names) >= 60,
    )
