"""Run the test suite on every supported Python: `make nox` or `.venv/bin/nox`.

Each interpreter is looked up on PATH and in pyenv; CI runs 3.11 through `make test`.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.11", "3.12", "3.13"]


def _interpreter(version: str) -> str:
    # pyenv's own install directory first: its shims on PATH answer only for the
    # globally selected version.
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    versions = os.path.join(root, "versions")
    if os.path.isdir(versions):
        for name in sorted(os.listdir(versions), reverse=True):
            candidate = os.path.join(versions, name, "bin", f"python{version}")
            if name.startswith(version + ".") and os.path.exists(candidate):
                return candidate
    return shutil.which(f"python{version}") or f"python{version}"


@nox.session(python=[_interpreter(v) for v in PYTHONS])
def tests(session: nox.Session) -> None:
    """The whole pytest suite (pass `-- -m 'not slow'` or a path to narrow it)."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)
