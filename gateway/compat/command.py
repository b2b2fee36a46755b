"""The ``contracts check`` sub-command (registered by ``gateway.cli``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

BASELINE = Path("contracts/BASELINE")


def register(contracts: Any) -> None:
    """Add ``check`` to the ``contracts`` sub-parsers."""
    check = contracts.add_parser(
        "check", help="fail on a breaking change of any contract against another git revision"
    )
    check.add_argument(
        "--against",
        metavar="REF",
        help="git revision to compare with (default: the commit in contracts/BASELINE)",
    )
    check.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    check.add_argument(
        "--breaking-only", action="store_true", help="list only the breaking changes"
    )
    check.set_defaults(func=run)


def baseline(root: Path) -> str:
    """The released contracts' commit: the first line of ``contracts/BASELINE`` that is not
    a ``#`` comment."""
    from gateway.errors import ConfigurationError

    path = root / BASELINE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}; pass --against") from None
    found = [ln.split()[0] for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    commit = found[0] if found else ""
    if not commit:
        raise ConfigurationError(f"{path} names no commit; pass --against")
    return commit


def run(args: argparse.Namespace, settings: object = None) -> int:
    from gateway.compat.check import compare
    from gateway.compat.report import render
    from gateway.compat.revision import Revision, WorkingTree

    root: Path = args.root.resolve()
    ref = args.against or baseline(root)
    changes = compare(Revision(root, ref), WorkingTree(root))
    if args.breaking_only:
        changes = [c for c in changes if c.breaking]
    print(render(changes, ref))
    return 1 if any(c.breaking for c in changes) else 0
