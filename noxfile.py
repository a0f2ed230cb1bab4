"""Run the test suite on every supported Python: `make nox` or `.venv/bin/nox`.

Sessions are `tests-3.11`, `tests-3.12` and `tests-3.13`; CI runs 3.11 through `make test`.
Python 3.14 and 3.15 live in a Debian testing chroot that nox cannot see: `make
test-forky` (root; `.ci/forky`) runs the suite there, with and without context-aware
warnings, and CI runs it after `make test`.
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.11", "3.12", "3.13"]


def _pyenv_bins() -> list[str]:
    """pyenv's install directories: its shims on PATH answer only for the globally
    selected version, so nox would not find the others."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    versions = os.path.join(root, "versions")
    if not os.path.isdir(versions):
        return []
    names = sorted(os.listdir(versions), reverse=True)
    return [os.path.join(versions, name, "bin") for name in names]


os.environ["PATH"] = os.pathsep.join([*_pyenv_bins(), os.environ.get("PATH", "")])


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole pytest suite (pass `-- -m 'not slow'` or a path to narrow it)."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)
