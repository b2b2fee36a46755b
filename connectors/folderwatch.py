"""Wake a folder's scanner when something arrives in it, instead of at the next interval only.

A scanner loops ``await watch.wait(interval)`` → scan. ``wait`` returns as soon as a file was
created, written and closed, or moved into the folder (Linux inotify: ``IN_CREATE``,
``IN_CLOSE_WRITE``, ``IN_MOVED_TO``), or when ``interval`` has passed, whichever comes first.
The events are only a hint: the scan stays the source of truth, and it still runs every
``interval`` (a shared or NFS folder written from another host gives no events at all).

Bursts coalesce: any number of events before a ``wait`` make it return once, and events during a
scan make the next ``wait`` return at once, so the scan after them sees their files. Dot-files
(writers' temp files, which scanners never read) wake nobody.

Where inotify is missing (not Linux) or fails (the per-user watch limit reached, a folder that
refuses it), the watch says so once in the log and ``wait`` is a plain interval sleep. A folder
that does not exist yet is watched from the first ``wait`` after it appears.

The inotify descriptor is read through ``loop.add_reader`` on the owner's event loop; ``close``
(or leaving ``async with``) removes the reader and closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import struct
import sys
from pathlib import Path
from types import TracebackType

from gateway.logs import get_logger

log = get_logger(__name__)

IN_CLOSE_WRITE = 0x0000_0008
IN_MOVED_TO = 0x0000_0080
IN_CREATE = 0x0000_0100
IN_Q_OVERFLOW = 0x0000_4000
IN_IGNORED = 0x0000_8000  # the watch is gone (the folder was removed or unmounted)
IN_ONLYDIR = 0x0100_0000
WATCHED = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class InotifyUnavailable(OSError):
    """This platform has no inotify (the watch falls back to interval scanning)."""


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if sys.platform != "linux":
        raise InotifyUnavailable(errno.ENOSYS, f"no inotify on {sys.platform}")
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def inotify_init() -> int:
    """A non-blocking, close-on-exec inotify descriptor (``OSError`` when there is none)."""
    try:
        init = _c().inotify_init1
    except AttributeError:
        raise InotifyUnavailable(errno.ENOSYS, "the C library has no inotify_init1") from None
    fd = int(init(os.O_NONBLOCK | os.O_CLOEXEC))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return fd


def inotify_add_watch(fd: int, folder: Path, mask: int) -> int:
    wd = int(_c().inotify_add_watch(fd, os.fsencode(folder), ctypes.c_uint32(mask)))
    if wd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(folder))
    return wd


def worth_a_scan(buffer: bytes) -> tuple[bool, bool]:
    """(an event names a file a scanner would read, the watch is gone) for one read's events."""
    wake = lost = False
    offset = 0
    while offset + _EVENT.size <= len(buffer):
        _, mask, _, length = _EVENT.unpack_from(buffer, offset)
        name = buffer[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
        offset += _EVENT.size + length
        if mask & IN_Q_OVERFLOW:
            wake = True  # events were dropped: whatever they were, scan
        elif mask & IN_IGNORED:
            lost = wake = True
        elif mask & WATCHED and not name.startswith(b"."):
            wake = True
    return wake, lost


class FolderWatch:
    """Wake-up hints for one folder (see the module docstring); made on the loop that waits."""

    def __init__(self, folder: Path, *, name: str) -> None:
        self.folder = folder
        self.name = name  # the scanner, for the log: "filedrop:hospital", "hospital-simulator"
        self._seen = asyncio.Event()
        self._fd: int | None = None
        self._wd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broken = False  # inotify failed for good: interval scanning only
        self.wakeups = 0  # waits ended by an event rather than the interval

    @property
    def watching(self) -> bool:
        return self._wd is not None

    async def __aenter__(self) -> FolderWatch:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Watch from now on (before the first scan, so that nothing falls between them)."""
        self._arm(late=False)

    async def wait(self, interval: float) -> bool:
        """Until a change was seen or ``interval`` passed; True when a change ended it."""
        self._arm(late=True)
        if not self._seen.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._seen.wait(), interval)
        seen = self._seen.is_set()
        self._seen.clear()  # what arrives from now on wakes the wait after the coming scan
        if seen:
            self.wakeups += 1
        return seen

    def _arm(self, *, late: bool) -> None:
        """Watch the folder, if not yet and if it can be: retried at each wait while the
        folder is missing, given up (once in the log) on any other failure. Watched ``late``
        (after a scan), files may have come between: the next scan looks for them."""
        if self._wd is not None or self._broken:
            return
        try:
            if self._fd is None:
                self._fd = inotify_init()
                self._loop = asyncio.get_running_loop()
                self._loop.add_reader(self._fd, self._drain)
            self._wd = inotify_add_watch(self._fd, self.folder, WATCHED | IN_ONLYDIR)
        except OSError as exc:
            if exc.errno == errno.ENOENT and not isinstance(exc, InotifyUnavailable):
                return  # not there yet: the scan says so; watched once it exists
            self._broken = True
            self.close()
            log.warning(
                "folder_watch_unavailable",
                scanner=self.name,
                folder=str(self.folder),
                reason=exc.strerror or str(exc),
                fallback="scanning at the interval only",
            )
            return
        if late:
            self._seen.set()

    def _drain(self) -> None:
        if self._fd is None:
            return
        wake = lost = False
        while True:
            try:
                buffer = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                break
            except OSError:
                lost = wake = True
                break
            if not buffer:
                break
            w, gone = worth_a_scan(buffer)
            wake, lost = wake or w, lost or gone
        if lost:
            self._wd = None  # the folder went away: watched again when it is back
        if wake:
            self._seen.set()

    def close(self) -> None:
        fd, self._fd, self._wd = self._fd, None, None
        if fd is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(fd)
        os.close(fd)
