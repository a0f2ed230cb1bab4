"""``python -m tests.fidelity``: run peer suites without and with errpolicy, compare.

Examples::

    python -m tests.fidelity                                  # every suite on .venv's Python
    python -m tests.fidelity --suite pytest --python ~/.pyenv/versions/3.12.1/bin/python
    python -m tests.fidelity --chroot /srv/forky --python python3.14 --python python3.15
    python -m tests.fidelity --errpolicy /work/wt/hooks       # another checkout's code

Exit status: 0 identical (modulo the allow-list), 1 outcomes differ, 2 setup failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._harness import Plan, eprint, execute, report
from ._outcomes import AllowListError, load_allowed
from ._prepare import Interpreter, PrepareError, default_cache
from ._suites import SUITES

CHECKOUT = Path(__file__).resolve().parents[2]
ALLOWED = Path(__file__).with_name("allowed.toml")


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name, value


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fidelity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--suite",
        action="append",
        choices=sorted(SUITES),
        help="a suite to run (repeat; default: all)",
    )
    parser.add_argument(
        "--python", action="append", help="an interpreter to test with (repeat; default: this one)"
    )
    parser.add_argument(
        "--chroot",
        type=Path,
        help="run the given --python interpreters inside this chroot (root only)",
    )
    parser.add_argument(
        "--errpolicy",
        type=Path,
        default=CHECKOUT,
        help="the errpolicy checkout to test (only read; default: this one)",
    )
    parser.add_argument(
        "--allowed",
        type=Path,
        default=ALLOWED,
        help="the allow-list TOML (default: tests/fidelity/allowed.toml)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=default_cache(),
        help="sdists, venvs and run logs ($ERRPOLICY_FIDELITY_CACHE)",
    )
    parser.add_argument("--ci", action="store_true", help="only each suite's CI subset")
    parser.add_argument(
        "--env",
        action="append",
        type=_setting,
        default=[],
        metavar="NAME=VALUE",
        help="set in both runs, e.g. PYTHON_CONTEXT_AWARE_WARNINGS=1 (repeat)",
    )
    parser.add_argument(
        "--pure-python",
        action="store_true",
        help="errpolicy's Python twins instead of its C speedups",
    )
    parser.add_argument(
        "--no-churn",
        action="store_true",
        help="install the hooks but start no background guard thread",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        allowed = load_allowed(args.allowed.read_text(encoding="utf-8"))
    except (OSError, AllowListError) as exc:
        eprint(f"fidelity: cannot read the allow-list {args.allowed}: {exc}")
        return 2
    env = dict(args.env)
    if args.pure_python:
        env["ERRPOLICY_PURE_PYTHON"] = "1"
    pythons = args.python or [sys.executable]
    if args.chroot is None:  # a relative path must still name it from the venvs' folders
        pythons = [str(Path(p).absolute()) if "/" in p else p for p in pythons]
    plan = Plan(
        suites=[SUITES[name] for name in (args.suite or SUITES)],
        interpreters=[Interpreter(p, args.chroot) for p in pythons],
        tree=args.errpolicy.resolve(),
        cache=args.cache,
        allowed=allowed,
        ci_subset=args.ci,
        env=env,
        churn=not args.no_churn,
        out=eprint,
    )
    try:
        comparisons = execute(plan)
    except PrepareError as exc:
        eprint(f"fidelity: {exc}")
        return 2
    return 0 if report(comparisons, out=eprint) else 1


if __name__ == "__main__":
    sys.exit(main())
