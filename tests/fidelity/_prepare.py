"""Everything a run needs on disk: interpreters (maybe inside a chroot), sdists,
one venv per suite and interpreter, and errpolicy built for that interpreter.

All of it lives in a cache folder outside the checkout (``$ERRPOLICY_FIDELITY_CACHE``,
default ``~/.cache/errpolicy-fidelity``; inside the chroot ``/var/cache/errpolicy-fidelity``)
and is rebuilt only when what it was made from changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._startup import NAME, PTH_LINE
from ._suites import Sdist, Suite

STARTUP = Path(__file__).with_name("_startup.py")
UNITTEST_RUNNER = Path(__file__).with_name("_unittest_runner.py")
_CHROOT_CACHE = Path("var/cache/errpolicy-fidelity")


class PrepareError(RuntimeError):
    """A step before the suites could run failed; carries the command's output."""

    def __init__(self, step: str, output: str = "") -> None:
        super().__init__(f"{step}\n{output[-4000:]}" if output else step)
        self.step = step
        self.output = output


def default_cache() -> Path:
    """The host's cache folder: ``$ERRPOLICY_FIDELITY_CACHE`` or ``~/.cache/errpolicy-fidelity``."""
    given = os.environ.get("ERRPOLICY_FIDELITY_CACHE")
    return Path(given) if given else Path.home() / ".cache" / "errpolicy-fidelity"


@dataclass(frozen=True, slots=True)
class Interpreter:
    """A Python to test with: a path or name, run on the host or inside a chroot."""

    python: str
    chroot: Path | None = None

    def command(self, argv: list[str], cwd: str | None = None) -> list[str]:
        """``argv`` as run from the host, in ``cwd`` (a path as the interpreter sees it)."""
        if self.chroot is None:
            return argv
        # chroot(1) starts in "/": env --chdir moves to the folder inside.
        return ["chroot", str(self.chroot), "env", *([f"--chdir={cwd}"] if cwd else []), *argv]

    def __str__(self) -> str:
        return f"{self.python} in {self.chroot}" if self.chroot else self.python


@dataclass(frozen=True, slots=True)
class Workspace:
    """The cache folder as seen from the host (``root``) and by the interpreter."""

    root: Path
    chroot: Path | None = None

    @classmethod
    def for_interpreter(cls, interpreter: Interpreter, cache: Path) -> Workspace:
        if interpreter.chroot is None:
            return cls(cache)
        return cls(interpreter.chroot / _CHROOT_CACHE, interpreter.chroot)

    def inner(self, path: Path) -> str:
        """``path`` (under the host's view) as the interpreter sees it."""
        if self.chroot is None:
            return str(path)
        return "/" + str(path.relative_to(self.chroot))


def run(interpreter: Interpreter, argv: list[str], step: str, *, cwd: str | None = None) -> str:
    """Run a preparation command; its output, or :class:`PrepareError`."""
    result = subprocess.run(
        interpreter.command(argv, cwd),
        cwd=cwd if interpreter.chroot is None else None,
        capture_output=True,
        text=True,
        env=clean_environment(),
        check=False,
    )
    if result.returncode != 0:
        raise PrepareError(f"{step} failed ({interpreter})", result.stdout + result.stderr)
    return result.stdout


def clean_environment(**extra: str) -> dict[str, str]:
    """The host's environment without what would steer Python, pytest or errpolicy."""
    dropped = ("PYTHON", "PYTEST_", "ERRPOLICY_", "VIRTUAL_ENV", "COV_CORE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keeps the sdists' folders as unpacked
    return {**env, **extra}


def version_of(interpreter: Interpreter) -> str:
    """``3.11.7``: the interpreter's full version."""
    out = run(
        interpreter,
        [interpreter.python, "-c", "import platform; print(platform.python_version())"],
        "version",
    )
    return out.strip()


def fetch_sdist(sdist: Sdist, cache: Path) -> Path:
    """The sdist's archive, downloaded once with pip into the host's cache."""
    folder = cache / "sdists"
    found = sorted(folder.glob(f"{sdist.name}-{sdist.version}.tar.gz"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps"]
    run(
        Interpreter(sys.executable),
        [*argv, "-d", str(folder), f"{sdist.name}=={sdist.version}"],
        f"pip download {sdist.name}=={sdist.version}",
    )
    found = sorted(folder.glob(f"{sdist.name}-{sdist.version}.tar.gz"))
    if not found:
        raise PrepareError(f"pip download gave no {sdist.folder}.tar.gz in {folder}")
    return found[0]


def archive_in(sdist: Sdist, cache: Path, workspace: Workspace) -> Path:
    """The sdist's archive where the interpreter sees it (copied into a chroot)."""
    archive = fetch_sdist(sdist, cache)
    if workspace.chroot is None:
        return archive
    copy = workspace.root / "sdists" / archive.name
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(archive, copy)
    return copy


def unpack(sdist: Sdist, cache: Path, workspace: Workspace) -> Path:
    """The sdist's folder in the workspace, unpacked once, where its tests run."""
    target = workspace.root / "src" / sdist.folder
    if (target / "PKG-INFO").exists():
        return target
    archive = fetch_sdist(sdist, cache)
    partial = workspace.root / "src" / f".{sdist.folder}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(partial, filter="data")
    shutil.rmtree(target, ignore_errors=True)
    (partial / sdist.folder).rename(target)
    shutil.rmtree(partial)
    return target


def prune_runs(workspace: Workspace, keep: int = 10) -> None:
    """Delete all but the newest ``keep`` runs' folders (logs, pytest's temporary files)."""
    runs = sorted((workspace.root / "runs").glob("*"))  # named by start time
    for old in runs[:-keep] if keep else runs:
        shutil.rmtree(old, ignore_errors=True)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def suite_venv(suite: Suite, interpreter: Interpreter, cache: Path, workspace: Workspace) -> Path:
    """The venv of ``suite`` for ``interpreter`` (host view), with the suite's sdists and
    pinned requirements; made once per interpreter, suite and requirement list."""
    version = version_of(interpreter)
    key = _digest(
        version, interpreter.python, PTH_LINE, *map(str, suite.sdists), *suite.requirements
    )
    venv = workspace.root / "venvs" / f"{suite.name}-py{version}-{key}"
    stamp = venv / ".fidelity-ready"
    if stamp.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    run(interpreter, [interpreter.python, "-m", "venv", workspace.inner(venv)], "venv")
    python = workspace.inner(venv / "bin" / "python")
    # From the archives: a build in the unpacked folder would leave files where tests run.
    packages = [workspace.inner(archive_in(s, cache, workspace)) for s in suite.sdists]
    if packages or suite.requirements:
        run(
            interpreter,
            [
                python,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *packages,
                *suite.requirements,
            ],
            f"installing {suite.name}'s test dependencies",
        )
    purelib = run(
        interpreter,
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        "finding the venv's site-packages",
    ).strip()
    host_purelib = Path(purelib) if workspace.chroot is None else workspace.chroot / purelib[1:]
    (host_purelib / "errpolicy-fidelity.pth").write_text(PTH_LINE + "\n", encoding="utf-8")
    stamp.write_text(json.dumps({"python": version, "suite": suite.name}))
    return venv


# What a wheel of errpolicy is built from (hatch_build.py compiles the C speedups and
# writes the readme PyPI shows from README.md and CHANGELOG.md).
_BUILD_FILES = ("pyproject.toml", "hatch_build.py", "README.md", "CHANGELOG.md", "LICENSE")
_BUILD_FOLDERS = ("errpolicy", "adapters")


def _source_files(tree: Path) -> list[Path]:
    files = [tree / name for name in _BUILD_FILES]
    for folder in _BUILD_FOLDERS:
        files += sorted(
            p
            for p in (tree / folder).rglob("*")
            if p.is_file()
            and p.suffix not in {".so", ".pyd", ".pyc"}
            and "__pycache__" not in p.parts
        )
    return files


def errpolicy_boot(tree: Path, interpreter: Interpreter, venv: Path, workspace: Workspace) -> Path:
    """A folder for ``$ERRPOLICY_FIDELITY_BOOT`` (host view): errpolicy from ``tree``
    built for ``interpreter`` (with its C speedups where they compile) and the
    startup module. ``tree`` is only read."""
    files = _source_files(tree)
    version = version_of(interpreter)
    key = _digest(
        version,
        *(f"{p.relative_to(tree)}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in files),
    )
    boot = workspace.root / "boot" / f"py{version}-{key}"
    if not (boot / ".fidelity-ready").exists():
        shutil.rmtree(boot, ignore_errors=True)
        copy = workspace.root / "build" / f"errpolicy-{key}"
        shutil.rmtree(copy, ignore_errors=True)
        for path in files:
            target = copy / path.relative_to(tree)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        python = workspace.inner(venv / "bin" / "python")
        run(
            interpreter,
            [
                python,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
                workspace.inner(boot),
                workspace.inner(copy),
            ],
            f"building errpolicy from {tree}",
        )
        shutil.rmtree(copy, ignore_errors=True)
        (boot / ".fidelity-ready").write_text(str(tree))
    shutil.copy2(STARTUP, boot / f"{NAME}.py")
    return boot


_PROBE = """\
import json, sys
import errpolicy, errpolicy._core as core
print(json.dumps({"file": errpolicy.__file__, "installed": errpolicy.installed(),
                  "implementation": getattr(core, "IMPLEMENTATION", "unknown")}))
"""


def probe(
    interpreter: Interpreter, venv: Path, boot: Path, workspace: Workspace, env: Mapping[str, str]
) -> str:
    """Check the startup hook installs errpolicy from ``boot``; which implementation runs."""
    env = clean_environment(
        ERRPOLICY_FIDELITY_BOOT=workspace.inner(boot),
        ERRPOLICY_FIDELITY_MODE="with",
        ERRPOLICY_FIDELITY_CHURN="0",
        **env,
    )
    python = workspace.inner(venv / "bin" / "python")
    result = subprocess.run(
        interpreter.command([python, "-c", _PROBE]),
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    try:
        found = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise PrepareError("the startup hook did not run", result.stdout + result.stderr) from None
    if not found["installed"] or not found["file"].startswith(workspace.inner(boot)):
        raise PrepareError(f"errpolicy not installed from {boot}: {found}", result.stderr)
    return str(found["implementation"])
