"""What the sdist and the wheel hold, the metadata PyPI shows, and the suite collected
and sampled from the unpacked sdist (``python -m build`` makes both, the wheel from the
sdist, as pip does when it installs from an sdist)."""

from __future__ import annotations

import ast
import email
import email.message
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Extras for working on a checkout or the sdist; every other extra serves the wheel's code.
DEVELOPMENT_EXTRAS = {"dev", "docs"}
# Domains reserved for placeholders (RFC 2606, RFC 6761).
_PLACEHOLDER = re.compile(r"^https?://([^/]*\.)?(invalid|example|test|localhost)(/|:|$)")
_MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the sdist and the wheel built from it."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert 0 == proc.returncode, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def _one(dist: Path, pattern: str) -> Path:
    (found,) = dist.glob(pattern)
    return found


def _sdist_names(dist: Path) -> set[str]:
    """The sdist's files, without its top folder."""
    with tarfile.open(_one(dist, "*.tar.gz")) as sdist:
        return {m.name.split("/", 1)[1] for m in sdist.getmembers() if m.isfile()}


def _wheel_names(dist: Path) -> set[str]:
    with zipfile.ZipFile(_one(dist, "*.whl")) as wheel:
        return set(wheel.namelist())


def _metadata(dist: Path) -> email.message.Message:
    """The wheel's METADATA (what PyPI shows)."""
    with zipfile.ZipFile(_one(dist, "*.whl")) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_string(wheel.read(name).decode())


def _tracked() -> set[str]:
    """The files git tracks in this checkout (skips where there is no git checkout)."""
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip("not a git checkout (the unpacked sdist, say)")
    return {name for name in proc.stdout.split("\0") if name and (ROOT / name).is_file()}


def _compiler() -> bool:
    """Whether the build hook can compile the speedups here (a C compiler, not switched off)."""
    if os.environ.get("ERRPOLICY_NO_SPEEDUPS"):
        return False
    linker = shlex.split(sysconfig.get_config_var("LDSHARED") or "cc")[0]
    return shutil.which(linker) is not None


def test_the_sdist_holds_every_file_the_repository_tracks(dist: Path) -> None:
    """Tests, docs, examples, bench, mkdocs.yml, Makefile, LICENSE: all of the checkout."""
    assert set() == _tracked() - _sdist_names(dist)


def test_the_sdist_holds_no_build_output(dist: Path) -> None:
    """No compiled module, bytecode, virtualenv or built site slips into the sdist."""
    junk = re.compile(r"(\.so|\.pyd|\.pyc)$|(^|/)(__pycache__|\.venv|site|dist|build)/")
    assert [] == sorted(name for name in _sdist_names(dist) if junk.search(name))


def test_the_wheel_holds_both_packages_without_c_sources(dist: Path) -> None:
    """Every module, stub and py.typed of errpolicy and errpolicy_memcache; no .c file."""
    sources = {
        "errpolicy": ROOT / "errpolicy",
        "errpolicy_memcache": ROOT / "adapters" / "errpolicy_memcache",
    }
    expected = {
        f"{package}/{path.relative_to(folder).as_posix()}"
        for package, folder in sources.items()
        for path in folder.rglob("*")
        if path.suffix in {".py", ".pyi"} or path.name == "py.typed"
    }
    names = _wheel_names(dist)
    packaged = {n for n in names if n.split("/")[0] in sources and not n.endswith((".so", ".pyd"))}
    assert expected == packaged
    assert [] == sorted(n for n in names if n.endswith((".c", ".h")))


def test_the_wheel_carries_the_compiled_speedups_where_a_compiler_exists(dist: Path) -> None:
    """With a C compiler (always under CI=true) both _speedups modules are in the wheel."""
    if not _compiler():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI promises a C compiler")
        pytest.skip("no C compiler: the wheel is pure Python")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    names = _wheel_names(dist)
    assert {f"errpolicy/_speedups{suffix}", f"errpolicy_memcache/_speedups{suffix}"} <= names


def test_the_license_is_in_both_and_named_in_the_metadata(dist: Path) -> None:
    """LICENSE (MIT, errpolicy developers) is in the sdist and the wheel; METADATA says MIT."""
    text = (ROOT / "LICENSE").read_text()
    assert (True, True) == (text.startswith("MIT License"), "errpolicy developers" in text)
    assert "LICENSE" in _sdist_names(dist)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in _wheel_names(dist))
    metadata = _metadata(dist)
    assert ("MIT", ["LICENSE"]) == (
        metadata["License-Expression"],
        metadata.get_all("License-File"),
    )


def _third_party_imports(dist: Path) -> dict[str, set[str]]:
    """For each module the wheel ships: the dotted names it imports from outside."""
    ours = {"errpolicy", "errpolicy_memcache"}
    found: dict[str, set[str]] = {}
    with zipfile.ZipFile(_one(dist, "*.whl")) as wheel:
        for name in wheel.namelist():
            if not name.endswith(".py"):
                continue
            tree = ast.parse(wheel.read(name))
            names = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names |= {f"{node.module}.{alias.name}" for alias in node.names}
            outside = {
                n for n in names if n.split(".")[0] not in ours | set(sys.stdlib_module_names)
            }
            if outside:
                found[name] = outside
    return found


def _owners(name: str, providers: Mapping[str, list[str]]) -> set[str]:
    """The distributions that ship the module ``name`` (or the module ``name`` is an
    attribute of): a namespace package's top-level name is shared by several
    (``opentelemetry``: opentelemetry-api, -sdk, ...), and the one that matters is the
    one with the module's files."""
    parts = name.split(".")
    candidates = set(providers[parts[0]])
    for depth in range(len(parts), 1, -1):
        path = "/".join(parts[:depth])
        owning = {
            d
            for d in candidates
            for f in importlib.metadata.files(d) or ()
            if str(f).startswith((f"{path}/", f"{path}.py"))
        }
        if owning:
            return owning
    return candidates


def _extras(metadata: email.message.Message) -> dict[str, set[str]]:
    """Each extra's distributions, by canonical name."""
    extras: dict[str, set[str]] = {e: set() for e in metadata.get_all("Provides-Extra") or []}
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        for extra in extras:
            if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}):
                extras[extra].add(canonicalize_name(requirement.name))
    return extras


def test_extras_install_what_the_wheel_imports_and_nothing_else(dist: Path) -> None:
    """Every outside import of the wheel comes with an extra; each extra brings only those."""
    providers = importlib.metadata.packages_distributions()
    imported = {
        canonicalize_name(distribution)
        for names in _third_party_imports(dist).values()
        for name in names
        for distribution in _owners(name, providers)
    }
    extras = _extras(_metadata(dist))
    assert DEVELOPMENT_EXTRAS <= set(extras)
    runtime = {extra: wanted for extra, wanted in extras.items() if extra not in DEVELOPMENT_EXTRAS}
    assert {extra: set() for extra in runtime} == {
        extra: wanted - imported for extra, wanted in runtime.items()
    }
    assert set() == imported - set().union(*runtime.values())


def test_the_core_requires_nothing(dist: Path) -> None:
    """Without extras, installing errpolicy installs nothing else."""
    requirements = _metadata(dist).get_all("Requires-Dist") or []
    assert [] == [r for r in requirements if Requirement(r).marker is None]


def test_readme_links_on_pypi_are_absolute_and_reach_docs_pages(dist: Path) -> None:
    """Every link in the long description is absolute; those into the site name a docs page."""
    metadata = _metadata(dist)
    docs_url = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])[
        "Documentation"
    ]
    links = _MD_LINK.findall(str(metadata.get_payload()))
    assert links  # the readme does link to the docs
    assert [] == [link for link in links if not re.match(r"https?://|#", link)]
    missing = []
    for link in links:
        if not link.startswith(docs_url):
            continue
        page = link[len(docs_url) :].split("#")[0].strip("/")
        candidates = [ROOT / "docs" / f"{page}.md", ROOT / "docs" / page / "index.md"]
        if not any(candidate.is_file() for candidate in candidates):
            missing.append(link)
    assert [] == missing


def test_the_latest_changes_follow_the_readme_on_pypi(dist: Path) -> None:
    """The long description ends with the changelog's first section, one heading level down."""
    body = str(_metadata(dist).get_payload())
    first = re.search(r"^## (.*)$", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert first is not None
    assert f"## Changelog\n\n### {first[1]}\n" in body


def test_project_urls_are_real_in_a_release() -> None:
    """A placeholder URL (.invalid, .example) is allowed only in a development version."""
    version = Version(PYPROJECT["project"]["version"])
    urls = PYPROJECT["project"]["urls"]
    assert "Documentation" in urls
    placeholders = sorted(name for name, url in urls.items() if _PLACEHOLDER.match(url))
    assert [] == ([] if version.is_devrelease else placeholders)


# What the run from the unpacked sdist runs besides collecting everything: a test of each
# kind of thing the sdist must carry. That the files are all there is proved file by file
# above (test_the_sdist_holds_every_file_the_repository_tracks); this proves they work
# from there: the C sources compile into both packages and are the ones loaded, the
# memcached fixtures and errpolicy_memcache.testing start real servers, the docs' fences
# and the README run, the bench runs, and the fidelity harness's own tests pass.
SDIST_SAMPLE = (
    "tests/core/test_speedups.py",
    "tests/core/test_chooks.py",
    "tests/core/test_guard.py",
    "tests/memcache/test_speedups.py",
    "tests/memcache/test_store.py",
    "tests/test_bench_smoke.py",
    "tests/fidelity/test_startup.py",
    "docs/quickstart.md",
    "README.md",
)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_suite_runs_from_the_unpacked_sdist(dist: Path, tmp_path: Path) -> None:
    """Unpack the sdist, install it with its dev extra in a new venv, build the docs,
    collect the whole suite and run a sample of it there.

    Editable, as the checkout is installed: the tests import the packages from the tree
    (no src/ layout), and only an editable install compiles the speedups next to them.
    Collecting the whole suite imports every test module, conftest and docs page; the
    sample (SDIST_SAMPLE) runs one of each kind. The whole suite again would add minutes
    to CI and test the same files a second time.
    """
    with tarfile.open(_one(dist, "*.tar.gz")) as sdist:
        sdist.extractall(tmp_path, filter="data")
    (tree,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    venv = tree / ".venv"
    python = str(venv / "bin" / "python")
    pytest_run = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    # This file would recurse; the browser test checks the site the same docs build makes.
    leave_out = ["--ignore=tests/test_packaging.py", "--ignore=tests/test_docs_site.py"]
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "-q", "-e", ".[dev]"],
        [str(venv / "bin" / "mkdocs"), "build", "--strict", "--quiet", "--site-dir", "site"],
        [*pytest_run, "--collect-only", *leave_out],
        [*pytest_run, *SDIST_SAMPLE],
    ]
    outputs = []
    for step in steps:
        proc = subprocess.run(step, cwd=tree, env=env, capture_output=True, text=True, timeout=900)
        output = f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
        assert 0 == proc.returncode, f"{shlex.join(step)}:\n{output}"
        outputs.append(proc.stdout)
    collected, ran = outputs[-2:]
    assert re.search(r"\d{3,} tests collected", collected), collected[-2000:]
    assert re.search(r"\d+ passed", ran)
    assert "failed" not in ran
