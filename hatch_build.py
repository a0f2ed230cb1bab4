"""Build hook: compile errpolicy/_speedups.c, the C version of the guard's hot path.

Optional by design: without a C compiler (or with ``ERRPOLICY_NO_SPEEDUPS`` set)
the wheel is pure Python and ``errpolicy._core`` runs the same logic in Python.
A failed compile is reported on stderr, never fatal. An editable install compiles
next to the sources, so ``import errpolicy`` from the checkout finds the module;
a regular wheel gets it added and is tagged for this interpreter and platform.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("errpolicy") / "_speedups.c"


def compile_speedups(root: Path, out_dir: Path) -> Path | None:
    """Compile the extension into ``out_dir``; its path, or None if it cannot be built."""
    if os.environ.get("ERRPOLICY_NO_SPEEDUPS"):
        return None
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = out_dir / f"_speedups{suffix}"
    ldshared = sysconfig.get_config_var("LDSHARED") or "cc -shared"
    include = sysconfig.get_paths()["include"]
    command = [
        *shlex.split(ldshared),
        "-O2",
        "-fPIC",
        "-Wall",
        "-Werror=implicit-function-declaration",
        f"-I{include}",
        str(root / SOURCE),
        "-o",
        str(target),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        print(
            f"errpolicy: C speedups not built, using the pure-Python guard ({detail.strip()})",
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
        if version == "editable":
            compile_speedups(root, root / "errpolicy")
            return
        out_dir = Path(tempfile.mkdtemp(prefix="errpolicy-build-"))
        built = compile_speedups(root, out_dir)
        if built is None:
            return
        build_data["force_include"][str(built)] = f"errpolicy/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
