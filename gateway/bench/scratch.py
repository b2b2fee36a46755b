"""The push's scratch folders: one per push under a root, locked while in use.

A push keeps its SQLite store, the departments' folders and the simulators' ledger in a
folder of its own, deleted when it ends. A killed run cannot delete its folder, so each push
first deletes the folders left under the same root by pushes that no longer run:

    in use   its ``.in-use`` file is locked (``flock``) by the push that made it; the kernel
             releases the lock when that process ends, however it ends (``kill -9`` too)
    stale    the lock can be taken, and the folder is older than ``GRACE_SECONDS`` (a push
             that has just made its folder may not have locked it yet)

A folder without the lock file is left alone unless it is older than the grace too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["GRACE_SECONDS", "LOCK_NAME", "clean_stale", "scratch_folder"]

LOCK_NAME = ".in-use"
GRACE_SECONDS = 60.0
PREFIX = "push-"


@contextlib.contextmanager
def scratch_folder(root: Path) -> Iterator[Path]:
    """A fresh folder under ``root``, locked as in use until the block ends, then deleted;
    the stale folders of earlier pushes under ``root`` are deleted first."""
    root.mkdir(parents=True, exist_ok=True)
    clean_stale(root)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: nobody else can hold it
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def clean_stale(root: Path, *, now: float | None = None) -> list[Path]:
    """Delete the folders under ``root`` no running push uses; return them."""
    now = time.time() if now is None else now
    removed = []
    for folder in sorted(root.glob(f"{PREFIX}*")):
        try:
            if not folder.is_dir() or now - folder.stat().st_mtime < GRACE_SECONDS:
                continue
        except OSError:
            continue  # gone meanwhile
        if _remove_unless_locked(folder):
            removed.append(folder)
    return removed


def _remove_unless_locked(folder: Path) -> bool:
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:  # never locked (the grace has passed) or half deleted
        shutil.rmtree(folder, ignore_errors=True)
        return True
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a running push's
            return False
        shutil.rmtree(folder, ignore_errors=True)  # held by us now: nobody can take it
        return True
    finally:
        os.close(fd)
