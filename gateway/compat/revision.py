"""The contract files of this working tree and of another git revision.

The other revision is read with ``git ls-tree`` and ``git show REF:path`` (no checkout, so
the working tree and its uncommitted changes are untouched and are what is compared).
"""

from __future__ import annotations

import shutil
import subprocess  # git, with fixed arguments and no shell
from pathlib import Path

from gateway.errors import ConfigurationError

CONTRACTS = "contracts"


class Revision:
    """Files under ``contracts/`` at a git revision of the repository at ``root``."""

    def __init__(self, root: Path, ref: str) -> None:
        self.root = root
        self.ref = ref
        git = shutil.which("git")
        if git is None:
            raise ConfigurationError("git is not installed: the guard reads other revisions")
        self._git = git
        if self._run("rev-parse", "--is-inside-work-tree", check=False)[0] != 0:
            raise ConfigurationError(f"{root} is not a git checkout: run the guard inside one")
        code, out = self._run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if code != 0:
            raise ConfigurationError(
                f"unknown git revision {ref!r}: fetch it first (a shallow clone lacks history: "
                "git fetch --unshallow, or actions/checkout with fetch-depth: 0)",
                code="unknown_revision",
            )
        self.commit = out.decode().strip()

    def paths(self) -> list[str]:
        _, out = self._run("ls-tree", "-r", "--name-only", self.commit, "--", CONTRACTS)
        return sorted(line for line in out.decode().splitlines() if line)

    def read(self, path: str) -> bytes:
        return self._run("show", f"{self.commit}:{path}")[1]

    def _run(self, *args: str, check: bool = True) -> tuple[int, bytes]:
        done = subprocess.run(  # noqa: S603  # fixed git sub-commands, arguments not shell-parsed
            [self._git, "-C", str(self.root), *args], capture_output=True, check=False
        )
        if check and done.returncode != 0:
            raise ConfigurationError(
                f"git {' '.join(args)} failed: {done.stderr.decode().strip()}", code="git"
            )
        return done.returncode, done.stdout


class WorkingTree:
    """Files under ``contracts/`` as they are on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def paths(self) -> list[str]:
        base = self.root / CONTRACTS
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()
