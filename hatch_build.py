"""Build hooks: compile the C speedups, and write the readme PyPI shows.

The C speedups are each the twin of Python code that stays:

- ``errpolicy/_speedups.c``: the guard's enter and exit (reference: ``errpolicy._core``);
- ``errpolicy/_chooks.c``: the warnings and logging hooks, which in C add no frame
  (reference: ``errpolicy._hooks.PyHook``);
- ``adapters/errpolicy_memcache/_speedups.c``: the session read's ranking and round of
  ``gets`` (reference: ``errpolicy_memcache._placement`` and ``_transport``).

Optional by design: without a C compiler (or with ``ERRPOLICY_NO_SPEEDUPS`` set)
the wheel is pure Python and the same logic runs in Python.
A failed compile is reported on stderr, never fatal. An editable install compiles
next to the sources, so ``import errpolicy`` from the checkout finds the module;
a regular wheel gets it added and is tagged for this interpreter and platform.

The readme on PyPI is README.md with its links into ``docs/`` made absolute against the
project's Documentation URL (PyPI resolves relative links against its own pages, where
they break), followed by the latest section of CHANGELOG.md.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

# (C source, its package's folder in the checkout, the package's folder in the wheel)
EXTENSIONS = (
    (Path("errpolicy") / "_speedups.c", Path("errpolicy"), "errpolicy"),
    (Path("errpolicy") / "_chooks.c", Path("errpolicy"), "errpolicy"),
    (
        Path("adapters") / "errpolicy_memcache" / "_speedups.c",
        Path("adapters") / "errpolicy_memcache",
        "errpolicy_memcache",
    ),
)


def compile_speedups(root: Path, source: Path, out_dir: Path) -> Path | None:
    """Compile ``source`` into ``out_dir``; the module's path, or None if it cannot be built."""
    if os.environ.get("ERRPOLICY_NO_SPEEDUPS"):
        return None
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{source.stem}{suffix}"
    ldshared = sysconfig.get_config_var("LDSHARED") or "cc -shared"
    include = sysconfig.get_paths()["include"]
    command = [
        *shlex.split(ldshared),
        "-O2",
        "-fPIC",
        "-Wall",
        "-Werror=implicit-function-declaration",
        f"-I{include}",
        str(root / source),
        "-o",
        str(target),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        print(
            f"errpolicy: {source} not built, its Python twin is used ({detail.strip()})",
            file=sys.stderr,
        )
        return None
    return target


class SpeedupsHook(BuildHookInterface):  # type: ignore[type-arg]  # generic in hatchling
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        out_dir = None if version == "editable" else Path(tempfile.mkdtemp(prefix="errpolicy-"))
        for source, folder, package in EXTENSIONS:
            if out_dir is None:  # editable: next to the sources, where the import finds it
                compile_speedups(root, source, root / folder)
                continue
            built = compile_speedups(root, source, out_dir / package)
            if built is not None:
                build_data["force_include"][str(built)] = f"{package}/{built.name}"
                build_data["pure_python"] = False
                build_data["infer_tag"] = True


# A link into the docs folder: [text](docs/PATH) or [text](docs/PATH#anchor).
_DOCS_LINK = re.compile(r"\]\(docs/([^)#\s]*)(#[^)\s]*)?\)")
# The changelog's first "## " section (the latest release, or Unreleased).
_LATEST = re.compile(r"^## .*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)


def site_path(path: str) -> str:
    """Where MkDocs puts ``docs/<path>``: ``a/b.md`` at ``a/b/``, ``a/index.md`` at ``a/``."""
    if path.endswith("index.md"):
        return path[: -len("index.md")]
    if path.endswith(".md"):
        return path[: -len(".md")] + "/"
    return path


def pypi_readme(readme: str, changelog: str, docs_url: str) -> str:
    """The readme for PyPI: links into docs/ point at the site, the latest changes follow."""
    base = docs_url.rstrip("/") + "/"
    text = _DOCS_LINK.sub(lambda m: f"]({base}{site_path(m[1])}{m[2] or ''})", readme)
    latest = _LATEST.search(changelog)
    if latest is None:
        return text
    # One level down, under a heading of its own.
    section = re.sub(r"^#", "##", latest[0].strip(), flags=re.MULTILINE)
    return f"{text.rstrip()}\n\n## Changelog\n\n{section}\n"


class ReadmeHook(MetadataHookInterface):
    PLUGIN_NAME = "custom"

    def update(self, metadata: dict[str, Any]) -> None:
        root = Path(self.root)
        text = pypi_readme(
            (root / "README.md").read_text(encoding="utf-8"),
            (root / "CHANGELOG.md").read_text(encoding="utf-8"),
            metadata["urls"]["Documentation"],
        )
        metadata["readme"] = {"content-type": "text/markdown", "text": text}
