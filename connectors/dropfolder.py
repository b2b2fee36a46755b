"""Folder mechanics for file-drop connectors: safe names, atomic files, checksums, moves.

Every function here blocks and is meant for a worker thread (``connectors.filethreads``). They
raise ``OSError`` as the operating system does; the connector turns it into the error tree with
``translate``:

    Retryable           the disk is full, the share timed out, an I/O error, a folder gone
                        (a share that is not mounted right now): try again later
    ConfigurationError  (Permanent) a folder is not a folder, or not writable

Names are never trusted as paths: a name is used only if it matches ``SAFE_NAME`` (no ``/``, no
leading dot, no ``..``), and entries found in a folder are taken only as base names.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from gateway.errors import ConfigurationError, GatewayError, Permanent, Retryable

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
CHECKSUM_SUFFIX = ".sha256"
_MAX_PARKED_NAME = 200  # bytes: + ".reason.txt", ".1", a temp file's affixes stay under 255
_RETRYABLE = frozenset(
    getattr(errno, name)
    for name in (
        "ENOSPC", "EDQUOT", "EIO", "EAGAIN", "EBUSY", "EINTR", "ENOMEM", "ETIMEDOUT", "ESTALE",
        "ENOLCK", "EHOSTDOWN", "EHOSTUNREACH", "ENETDOWN", "ENETUNREACH", "ECONNRESET",
        "ECONNABORTED", "ECONNREFUSED",
    )
    if hasattr(errno, name)
)  # fmt: skip
_NO_HARD_LINKS = frozenset(
    getattr(errno, name) for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "EMLINK", "EXDEV")
    if hasattr(errno, name)
)  # fmt: skip


def safe_name(task_id: str, suffix: str, *, system: str) -> str:
    """``<task id><suffix>``, or ``Permanent`` when the task id could name another path."""
    if not SAFE_NAME.fullmatch(task_id) or ".." in task_id:
        raise Permanent(
            "task id is not a safe file name (only A-Z a-z 0-9 . _ -, no leading dot, no '..')",
            system=system,
            code="unsafe_name",
        )
    return task_id + suffix


def translate(exc: OSError, folder: Path, *, system: str, action: str) -> GatewayError:
    """The gateway error for an ``OSError`` met while ``action`` in ``folder``."""
    where = exc.filename or folder
    reason = exc.strerror or type(exc).__name__
    code = errno.errorcode.get(exc.errno or 0, "OSERROR")
    if exc.errno in _RETRYABLE:
        return Retryable(f"{action} failed at {where}: {reason}", system=system, code=code)
    if exc.errno == errno.ENOENT:  # a mount that went away comes back: do not park the task
        return Retryable(
            f"{action} failed at {where}: {reason}; folder {folder} missing (a share not "
            f"mounted?) — create or mount it ([systems.{system}] in the settings)",
            system=system,
            code=code,
        )
    return ConfigurationError(
        f"{action} failed at {where}: {reason}; check that folder {folder} exists and the "
        f"gateway may write to it ([systems.{system}] in the settings)",
        system=system,
        code=code,
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checksum_line(name: str, data: bytes) -> bytes:
    """A sidecar in ``sha256sum`` format: ``<hex>  <name>``."""
    return f"{sha256_hex(data)}  {name}\n".encode("ascii")


def checksum_matches(sidecar: bytes, name: str, digest: str) -> bool:
    """True when the sidecar holds ``digest``, either bare or as ``sha256sum`` writes it."""
    try:
        parts = sidecar.decode("ascii").split()
    except UnicodeDecodeError:
        return False
    if not parts or len(parts) > 2 or parts[0].lower() != digest:
        return False
    return len(parts) == 1 or parts[1] in (name, "*" + name)


class NotRegularFile(OSError):
    """The entry is no longer a regular file (swapped for a FIFO, a device, a folder)."""


def read_regular(path: Path, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of a regular file, never following a symbolic link and never
    blocking on a FIFO or device put in its place (``NotRegularFile`` then)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
    with os.fdopen(fd, "rb") as f:
        return f.read(limit + 1)


def same_content(path: Path, data: bytes) -> bool:
    """True when ``path`` is a regular file holding exactly ``data``."""
    try:
        return read_regular(path, len(data)) == data
    except (FileNotFoundError, IsADirectoryError, NotRegularFile):
        return False


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place(tmp: Path, final: Path) -> bool:
    """Give ``tmp`` the name ``final`` unless that name exists (the first writer wins)."""
    try:
        os.link(tmp, final, follow_symlinks=False)
    except FileExistsError:
        os.unlink(tmp)
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        # A file system without hard links (some SMB mounts): rename, after a look first.
        if os.path.lexists(final):
            os.unlink(tmp)
            return False
        os.rename(tmp, final)
        return True
    os.unlink(tmp)
    return True


def write_atomic(folder: Path, name: str, data: bytes, *, replace: bool = False) -> bool:
    """Write ``folder/name`` so that no reader ever sees it partly written: a dot-prefixed temp
    file in the same folder, write, flush, fsync, link (or with ``replace``, rename) into
    place, fsync the folder. Without ``replace``, returns False, writing nothing, when ``name``
    already exists."""
    tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, folder / name)
            placed = True
        else:
            placed = _place(tmp, folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)
    return placed


def _candidates(name: str, label: str | None) -> Iterator[str]:
    if label is None:
        yield name
        yield from (f"{name}.{n}" for n in itertools.count(1))
    else:
        yield from (f"{name}.{label}-{n}" for n in itertools.count(1))


def versions(folder: Path, name: str) -> Iterator[Path]:
    """``name``, ``name.1``, ``name.2`` … as they exist in ``folder`` (what ``move_into``
    made of files that came under one name)."""
    for candidate in _candidates(name, None):
        path = folder / candidate
        if not path.is_file():
            return
        yield path


def move_into(src: Path, folder: Path, name: str, *, label: str | None = None) -> str | None:
    """Move ``src`` into ``folder`` as ``name`` (or ``name.1`` … when taken; ``name.<label>-1`` …
    with a label), never replacing a file. Returns the name used, None if ``src`` is gone."""
    for candidate in _candidates(name, label):
        target = folder / candidate
        try:
            os.link(src, target, follow_symlinks=False)
        except FileExistsError:
            continue
        except FileNotFoundError:
            if not folder.is_dir():
                raise
            return None  # another reader moved it first
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            try:  # another file system: copy, then remove the original
                data = read_regular(src, 1 << 30)
            except FileNotFoundError:
                return None
            if not write_atomic(folder, candidate, data):
                continue
        else:
            fsync_dir(folder)
        src.unlink(missing_ok=True)
        return candidate
    raise AssertionError("unreachable: candidate names never run out")  # pragma: no cover


def move_with_sidecar(
    src: Path, sidecar: Path, folder: Path, name: str, *, label: str | None = None
) -> str | None:
    """``move_into`` for a file and its checksum sidecar (which becomes ``<name it got>.sha256``)
    with one folder fsync for the two: both are in ``folder`` for good before either leaves
    where it was. Returns the file's name there, None if ``src`` is gone."""
    for candidate in _candidates(name, label):
        try:
            os.link(src, folder / candidate, follow_symlinks=False)
        except FileExistsError:
            continue
        except FileNotFoundError:
            if not folder.is_dir():
                raise
            return None  # another reader moved it first
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            moved = move_into(src, folder, name, label=label)  # no hard links: one by one
            if moved is not None:
                move_into(sidecar, folder, moved + CHECKSUM_SUFFIX)
            return moved
        try:
            os.link(sidecar, folder / (candidate + CHECKSUM_SUFFIX), follow_symlinks=False)
            linked = True
        except OSError:  # gone, or its name taken (a stray one): moved on its own below
            linked = False
        fsync_dir(folder)
        src.unlink(missing_ok=True)
        if linked:
            sidecar.unlink(missing_ok=True)
        else:
            move_into(sidecar, folder, candidate + CHECKSUM_SUFFIX)
        return candidate
    raise AssertionError("unreachable: candidate names never run out")  # pragma: no cover


def shown(name: str) -> str:
    """A file name fit for one line of text: newlines, control characters and bytes that are
    not UTF-8 escaped (``a\\nb``, ``\\udcff``), so a name cannot forge a line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def parking_name(name: str) -> str:
    """``name``, or for one too long to take ``.sha256`` / ``.reason.txt`` and a temp file's
    affixes within the file system's 255 bytes, its first bytes and a digest of the whole."""
    raw = os.fsencode(name)
    if len(raw) <= _MAX_PARKED_NAME:
        return name
    return os.fsdecode(raw[:120]) + "~" + hashlib.sha256(raw).hexdigest()[:16]


def park(src: Path, folder: Path, reason: str, sidecar: Path | None = None) -> str | None:
    """Move a file (and its checksum sidecar) into the error ``folder`` with a
    ``<name>.reason.txt`` beside it; returns the name it got there (shortened when long)."""
    moved = move_into(src, folder, parking_name(src.name))
    if moved is None:
        return None
    if sidecar is not None and os.path.lexists(sidecar):
        move_into(sidecar, folder, moved + CHECKSUM_SUFFIX)
    text = f"file: {shown(src.name)}\nreason: {shown(reason)}\n"
    write_atomic(folder, moved + ".reason.txt", text.encode())
    return moved
