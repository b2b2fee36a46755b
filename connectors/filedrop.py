"""File-drop transport: requests as files in the department's in-tray, answers as files in ours.

The protocol (``contracts/hospital/README.md`` specifies it for the hospital):

    gateway ─ <task id>.req.xml ─────────────▶ outbox   the department's in-tray, atomic files
    inbox ◀─ <task id>.ack.xml    + .sha256 ── department: taken in, case number, accepted at
    inbox ◀─ <task id>.result.xml + .sha256 ── department: the decision
    inbox ─▶ archive (reported, or a duplicate) │ error (+ <name>.reason.txt)

``FileDropConnector`` (``polls = False``) drops requests. ``FileDropResultSource`` scans the inbox,
takes only files whose checksum sidecar matches, and reports them: an acknowledgement as an
``in_progress`` decision carrying the case number and acceptance time (the task clock starts
there), a result as the decision. The source scans when a file arrives in the inbox (an inotify
wake-up, ``connectors.folderwatch``) and at least every ``scan_seconds`` (the fallback: a shared
folder gives no events). A file that arrives while a scan is still reporting (a report waits for
the store and the broker) is taken by a second scan at once, not after the first ends: up to
``SCANS_AT_ONCE`` scans overlap, each file is in the hands of one scan at a time, and a task's
answers are still reported in turn across scans (its acknowledgement before its result). Every
file operation runs on the connector's or the source's own
threads (``connectors.filethreads``), never on the event loop's default executor, which SOAP
sends and other stores share.

Past the house's 500 lines (529) since the overlapping scans: the result source (its scans,
turns and archive moves) is the seam to move into a module of its own; left for a session
with time to re-run the crash and ordering tests around it (issue 6's note).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from connectors.base import Decision, DepartmentRequest, Receipt, Report, Unreadable
from connectors.dropfolder import (
    CHECKSUM_SUFFIX,
    checksum_matches,
    move_with_sidecar,
    park,
    read_regular,
    safe_name,
    same_content,
    sha256_hex,
    shown,
    translate,
    versions,
    write_atomic,
)
from connectors.filedrop_codecs import Codec, codec_for
from connectors.filethreads import FileThreads
from connectors.folderwatch import FolderWatch
from connectors.limits import Limiter
from gateway.errors import ConfigurationError, GatewayError, Permanent, Retryable
from gateway.logs import get_logger
from gateway.settings import SystemConfig

log = get_logger(__name__)

REQUEST_SUFFIX = ".req.xml"
ANSWER_NAME = re.compile(r"(?P<task>[A-Za-z0-9][A-Za-z0-9._-]{0,199})\.(?P<kind>ack|result)\.xml")
NOTICE_PREFIX = ".untold-"  # error/.untold-<digest>.json: a set-aside file not yet told
REPORTS_AT_ONCE = 8  # tasks whose answers one scan reports side by side
SCANS_AT_ONCE = 2  # a scan starts on a wake-up while the last one still reports
T = TypeVar("T")


def _folder(config: SystemConfig, key: str, system: str) -> Path:
    value = getattr(config, key)
    if value is None:
        raise ConfigurationError(
            f"[systems.{system}] needs `{key}` (a folder) for a filedrop system", system=system
        )
    return Path(value)


class FileDropConnector:
    """Drops one request file per task into ``config.outbox``; answers come through
    ``FileDropResultSource``.

    ``send`` is idempotent on the task id and the request's content: a request already in the
    outbox, or sent before (a copy of each is kept as ``archive/<task id>.req.xml``), or already
    acknowledged or answered, is not written again. The same task id with other content (the
    request re-run after a correction) is written again, replacing a copy the department has not
    read yet.
    """

    polls = False

    def __init__(self, system: str, config: SystemConfig, *, codec: Codec | None = None) -> None:
        self.system = system
        self._outbox = _folder(config, "outbox", system)
        self._inbox = _folder(config, "inbox", system)
        self._archive = _folder(config, "archive", system)
        self._timeout = config.timeout_seconds
        self._codec = codec if codec is not None else codec_for(system)
        self._limiter = Limiter(config.concurrency, config.rate_per_second)
        # as many threads as requests may be in flight (at least 2: an fsync does not stall all)
        self._threads = FileThreads(max(2, config.concurrency), name=f"filedrop-{system}")

    async def send(self, request: DepartmentRequest) -> Receipt:
        name = safe_name(request.task_id, REQUEST_SUFFIX, system=self.system)
        async with self._limiter.slot():
            try:
                done = await asyncio.wait_for(
                    self._threads.run(self._drop, request, name), self._timeout
                )
            except TimeoutError:
                raise Retryable(
                    f"dropping {name} into {self._outbox} took over {self._timeout} s",
                    system=self.system,
                    code="timeout",
                ) from None
        (log.debug if done == "dropped" else log.info)(  # a plain drop: task_handed_over says it
            "filedrop_request_sent", system=self.system, task_id=request.task_id, done=done
        )
        return Receipt()  # no synchronous answer: the ack file brings case number and time

    def _drop(self, request: DepartmentRequest, name: str) -> str:
        data = self._codec.request_file(request)  # Permanent when the contract says no
        try:
            return self._place(name, data)
        except OSError as exc:
            raise translate(
                exc, self._outbox, system=self.system, action="dropping a request"
            ) from None

    def _place(self, name: str, data: bytes) -> str:
        """ "dropped", "corrected" or "already_sent"."""
        pending, copy = self._outbox / name, self._archive / name
        if same_content(pending, data) or same_content(copy, data):
            return "already_sent"
        if os.path.lexists(pending) or os.path.lexists(copy):
            done = "corrected"
            write_atomic(self._outbox, name, data, replace=True)
        elif self._answered(name.removesuffix(REQUEST_SUFFIX)):
            return "already_sent"  # answered before this gateway kept copies
        elif write_atomic(self._outbox, name, data):
            done = "dropped"
        else:
            return "already_sent"  # another connector process dropped it a moment ago
        self._archive.mkdir(parents=True, exist_ok=True)
        write_atomic(self._archive, name, data, replace=True)
        return done

    def _answered(self, task: str) -> bool:
        return any(
            os.path.lexists(folder / f"{task}.{kind}.xml")
            for folder in (self._inbox, self._archive)
            for kind in ("ack", "result")
        )

    async def check(self, request: DepartmentRequest, case_number: str | None) -> Decision | None:
        return None  # answers arrive as files: FileDropResultSource reports them

    async def close(self) -> None:
        self._threads.close()


@dataclass
class ScanCounts:
    """What one scan of the inbox did."""

    reported: int = 0
    duplicates: int = 0  # complete files whose name and content were archived already
    parked: int = 0  # moved to the error folder with a reason
    waiting: int = 0  # incomplete files left for a later scan (within the grace period)


@dataclass(frozen=True, slots=True)
class _Answer:
    path: Path
    sidecar: Path
    task: str
    kind: str  # "ack" | "result"
    data: bytes
    digest: str
    mtime: float


class FileDropResultSource:
    """Reports what a file-drop system writes into ``config.inbox`` (a ``ResultSource``).

    A file is taken only when its ``<name>.sha256`` sidecar matches; a file left incomplete for
    longer than ``grace_seconds`` (a writer that died), a file with an unexpected name, and a
    file that breaks the contract go to ``config.error`` with ``<name>.reason.txt``. A file is
    archived only after ``report`` returned; a file whose name and content the archive holds
    already is archived as ``<name>.duplicate-<n>`` and not reported again. Folders, symbolic
    links, FIFOs, sockets, devices and dot-files (writers' temp files) in the inbox are never
    opened or moved (a warning, once per name); only regular files are read, up to
    ``max_bytes``, and an entry that fails on its own never stops the scan of the others.
    """

    def __init__(
        self,
        system: str,
        config: SystemConfig,
        scan_seconds: float = 1.0,
        *,
        grace_seconds: float = 300.0,
        max_bytes: int = 1 << 20,
        codec: Codec | None = None,
    ) -> None:
        self.system = system
        self._inbox = _folder(config, "inbox", system)
        self._archive = _folder(config, "archive", system)
        self._error = _folder(config, "error", system)
        self._scan_seconds = scan_seconds
        self._grace = grace_seconds
        self._max_bytes = max_bytes
        self._codec = codec if codec is not None else codec_for(system)
        self._warned: set[str] = set()
        # parked files the gateway is still to hear of, each with its notice file in error/
        self._set_aside: list[tuple[Unreadable, Path]] = []
        self._recovered = False
        self._threads: FileThreads | None = None  # one thread: a scan is one step at a time
        self.on_unreadable: Callable[[Unreadable], Awaitable[None]] | None = None
        self.watch: FolderWatch | None = None  # while running: its wake-ups, for tests
        self._in_hand: set[str] = set()  # answer files a scan has taken and not let go yet
        # task → its answers' latest turn in any scan: True once they were all handled
        self._turns: dict[str, asyncio.Future[bool]] = {}
        self._telling = asyncio.Lock()  # set-aside files told by one scan at a time
        self._last_error: str | None = None

    async def run(self, report: Report) -> None:
        """Scan when a file arrives, and every ``scan_seconds`` in any case, until cancelled;
        a wake-up during a scan starts the next one at once (up to ``SCANS_AT_ONCE`` at a
        time). A failed scan (the inbox not there yet, a full disk, a report that could not be
        recorded) is logged, once per distinct error, and tried again at the next one: the
        source never stops on its own. Its watch, its scans and its threads end with it."""
        self.watch = watch = FolderWatch(self._inbox, name=f"filedrop:{self.system}")
        scans: set[asyncio.Task[None]] = set()
        try:
            watch.start()
            while True:
                if len(scans) >= SCANS_AT_ONCE:
                    await asyncio.wait(scans, return_when=asyncio.FIRST_COMPLETED)
                scan = asyncio.create_task(self._scan_logged(report))
                scans.add(scan)
                scan.add_done_callback(scans.discard)
                await watch.wait(self._scan_seconds)
        finally:
            for scan in scans:
                scan.cancel()
            await asyncio.gather(*scans, return_exceptions=True)
            watch.close()
            self.close()

    async def _scan_logged(self, report: Report) -> None:
        try:
            await self._io(self._prepare)
            await self.scan(report)
            self._last_error = None
        except GatewayError as exc:
            if str(exc) != self._last_error:
                log.warning("filedrop_scan_failed", system=self.system, error=str(exc))
            self._last_error = str(exc)
        except Exception:
            log.exception("filedrop_scan_failed", system=self.system)

    def close(self) -> None:
        """Let the source's threads go (a later scan starts new ones)."""
        if self._threads is not None:
            self._threads.close()
            self._threads = None

    async def scan(self, report: Report) -> ScanCounts:
        """One pass over the inbox, oldest first: each task's answers in turn (its
        acknowledgement before its result), up to ``REPORTS_AT_ONCE`` tasks' side by side (a
        report waits for the store and the broker; the file work stays on one thread). Files
        another scan has in hand are left to it; a task whose earlier answer another scan is
        still reporting waits for that report. A report that fails ends the scan with its
        error once the others are done."""
        counts = ScanCounts()
        if not self._recovered and self.on_unreadable is not None:
            async with self._telling:
                if not self._recovered:
                    # notices a process killed before telling left behind are told first
                    self._set_aside = await self._io(self._untold)
                    self._recovered = True
        tasks: dict[str, list[_Answer]] = {}
        for answer in await self._io(self._survey, counts):
            if answer.path.name not in self._in_hand:  # taken by this scan, on the loop
                self._in_hand.add(answer.path.name)
                tasks.setdefault(answer.task, []).append(answer)
        gate = asyncio.Semaphore(REPORTS_AT_ONCE)
        loop = asyncio.get_running_loop()

        async def in_turn(task: str, answers: list[_Answer]) -> None:
            earlier, mine = self._turns.get(task), loop.create_future()
            self._turns[task] = mine
            handled = False
            try:
                # An earlier answer of the task that failed to report goes first, next scan.
                if earlier is None or await asyncio.shield(earlier):
                    async with gate:
                        for answer in answers:
                            await self._report(answer, report, counts)
                    handled = True
            finally:
                self._in_hand.difference_update(a.path.name for a in answers)
                mine.set_result(handled)
                if self._turns.get(task) is mine:
                    del self._turns[task]

        outcomes = await asyncio.gather(
            *(in_turn(task, answers) for task, answers in tasks.items()), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        async with self._telling:
            await self._tell()
        return counts

    async def _report(self, answer: _Answer, report: Report, counts: ScanCounts) -> None:
        decision = await self._io(self._vet, answer, counts)
        if decision is None:
            return
        await report(decision)
        counts.reported += 1
        log.debug(  # result_applied says it at INFO (same task, system, outcome)
            "filedrop_answer_reported",
            system=self.system,
            task_id=decision.task_id,
            outcome=decision.outcome,
        )
        await self._io(self._archive_answer, answer)

    async def _tell(self) -> None:
        """Hand each file set aside to ``on_unreadable``; one that fails is told next scan."""
        if self.on_unreadable is None:
            self._set_aside.clear()  # nobody to tell (a bare source): the log said it
        while self._set_aside and self.on_unreadable is not None:
            item, notice = self._set_aside[0]
            await self.on_unreadable(item)
            await self._io(notice.unlink, True)  # missing_ok: told, the notice may go
            self._set_aside.pop(0)

    def _untold(self) -> list[tuple[Unreadable, Path]]:
        """The notices in ``error/`` of files set aside but not yet told, oldest first."""
        found: list[tuple[float, Unreadable, Path]] = []
        for notice in self._error.glob(f"{NOTICE_PREFIX}*.json"):
            try:
                data = json.loads(notice.read_text(encoding="utf-8"))
                item = Unreadable(data["request_id"], str(data["name"]), str(data["reason"]))
                found.append((notice.stat().st_mtime, item, notice))
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("filedrop_notice_unreadable", system=self.system, file=notice.name)
        return [(item, notice) for _, item, notice in sorted(found, key=lambda f: f[0])]

    def _notice(self, path: Path, item: Unreadable) -> Path:
        """Write, before the file moves, what the gateway must be told about it: a process
        killed between the move and the telling tells it at its next start."""
        digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:24]
        notice = self._error / f"{NOTICE_PREFIX}{digest}.json"
        body = {"request_id": item.request_id, "name": item.name, "reason": item.reason}
        temp = notice.with_name(notice.name + ".tmp")
        temp.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
        os.replace(temp, notice)
        return notice

    async def _io(self, fn: Callable[..., T], *args: object) -> T:
        if self._threads is None:
            self._threads = FileThreads(1, name=f"filedrop-{self.system}-scan")
        try:
            return await self._threads.run(fn, *args)
        except OSError as exc:
            raise translate(
                exc, self._inbox, system=self.system, action="reading answers"
            ) from None

    def _prepare(self) -> None:
        if not self._inbox.is_dir():
            raise ConfigurationError(
                f"inbox {self._inbox} of [systems.{self.system}] is not a folder",
                system=self.system,
            )
        self._archive.mkdir(parents=True, exist_ok=True)
        self._error.mkdir(parents=True, exist_ok=True)

    def _once(self, event: str, name: str, reason: str) -> None:
        """Warn about an inbox entry left where it is, once per name (not every scan)."""
        if name not in self._warned:
            if len(self._warned) > 10_000:
                self._warned.clear()
            self._warned.add(name)
            log.warning(event, system=self.system, file=shown(name), reason=reason)

    def _stale(self, now: float, *mtimes: float) -> bool:
        return now - max(mtimes) > self._grace

    def _park(
        self,
        path: Path,
        reason: str,
        counts: ScanCounts,
        sidecar: Path | None = None,
        *,
        tell: bool = False,
        task: str | None = None,
    ) -> None:
        """Move the file to ``error/`` with its reason; with ``tell``, the gateway hears of it
        too (``on_unreadable``): it blocks ``task`` with the reason, or keeps a dead letter."""
        item = Unreadable(task, shown(path.name), reason)
        notice = self._notice(path, item) if tell and self.on_unreadable is not None else None
        if park(path, self._error, reason, sidecar) is not None:
            counts.parked += 1
            log.warning(
                "filedrop_file_parked", system=self.system, file=shown(path.name), reason=reason
            )
            if notice is not None:
                self._set_aside.append((item, notice))
        elif notice is not None:
            notice.unlink(missing_ok=True)  # the file stays where it is: nothing to tell yet

    def _survey(self, counts: ScanCounts) -> list[_Answer]:
        now = time.time()
        files: dict[str, os.stat_result] = {}
        in_hand = set(self._in_hand)  # another scan's: neither read nor judged stale here
        with os.scandir(self._inbox) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.name in in_hand:
                    continue
                if entry.name.removesuffix(CHECKSUM_SUFFIX) in in_hand:
                    continue
                if entry.is_file(follow_symlinks=False):
                    files[entry.name] = entry.stat(follow_symlinks=False)
                else:
                    self._once("filedrop_entry_ignored", entry.name, "not a regular file")
        found: list[_Answer] = []
        for name, stat in files.items():
            try:
                answer = self._look_at(name, stat, files, now, counts)
            except FileNotFoundError:
                continue  # another reader took it meanwhile
            except OSError as exc:  # this one entry (swapped for a FIFO, a name too long …)
                self._once("filedrop_entry_skipped", name, exc.strerror or type(exc).__name__)
                continue
            if answer is not None:
                found.append(answer)
        found.sort(key=lambda a: (a.kind != "ack", a.mtime, a.path.name))
        return found

    def _look_at(
        self,
        name: str,
        stat: os.stat_result,
        files: dict[str, os.stat_result],
        now: float,
        counts: ScanCounts,
    ) -> _Answer | None:
        path = self._inbox / name
        if name.endswith(CHECKSUM_SUFFIX):
            if name.removesuffix(CHECKSUM_SUFFIX) not in files and self._stale(now, stat.st_mtime):
                self._park(path, "checksum file without its data file", counts)
            return None
        match = ANSWER_NAME.fullmatch(name)
        if match is None:
            if self._stale(now, stat.st_mtime):
                self._park(path, "unexpected file name", counts, tell=True)
            else:
                counts.waiting += 1
            return None
        sidecar = self._inbox / (name + CHECKSUM_SUFFIX)
        side = files.get(sidecar.name)
        problem = "no checksum file"
        if side is not None:
            data = read_regular(path, self._max_bytes)
            if len(data) > self._max_bytes:
                self._park(
                    path, f"larger than {self._max_bytes} bytes", counts, sidecar,
                    tell=True, task=match["task"],
                )  # fmt: skip
                return None
            digest = sha256_hex(data)
            if checksum_matches(read_regular(sidecar, 4096), name, digest):
                return _Answer(
                    path, sidecar, match["task"], match["kind"], data, digest, stat.st_mtime
                )
            problem = "checksum does not match the file"
        if self._stale(now, stat.st_mtime, side.st_mtime if side else 0.0):
            self._park(path, f"incomplete after {self._grace:g} s: {problem}", counts, sidecar)
        else:
            counts.waiting += 1
        return None

    def _vet(self, answer: _Answer, counts: ScanCounts) -> Decision | None:
        """The decision to report, or None when the file was handled without one."""
        name = answer.path.name
        if any(sha256_hex(read_regular(p, self._max_bytes)) == answer.digest
               for p in versions(self._archive, name)):  # fmt: skip
            moved = move_with_sidecar(
                answer.path, answer.sidecar, self._archive, name, label="duplicate"
            )
            if moved is not None:
                counts.duplicates += 1
                log.info("filedrop_duplicate_archived", system=self.system, file=name)
            return None
        try:
            decision = self._codec.read(answer.data)
            if decision.task_id != answer.task:
                raise Permanent("the task id inside does not match the file name")
            if (answer.kind == "ack") != (decision.outcome == "in_progress"):
                raise Permanent(f"a .{answer.kind}.xml file holds a {decision.outcome} answer")
        except Permanent as exc:
            self._park(answer.path, str(exc), counts, answer.sidecar, tell=True, task=answer.task)
            return None
        except Exception as exc:  # a poison file must not stop every scan after it
            log.exception("filedrop_answer_unreadable", system=self.system, file=name)
            reason = f"unreadable ({type(exc).__name__})"
            self._park(answer.path, reason, counts, answer.sidecar, tell=True, task=answer.task)
            return None
        if answer.kind == "ack" and (self._archive / f"{answer.task}.result.xml").exists():
            self._archive_answer(answer)  # the decision came first: the receipt adds nothing
            return None
        return decision

    def _archive_answer(self, answer: _Answer) -> None:
        try:
            current = read_regular(answer.path, self._max_bytes)
        except FileNotFoundError:
            return  # another reader archived it
        if sha256_hex(current) != answer.digest:
            log.warning("filedrop_answer_replaced", system=self.system, file=answer.path.name)
            return  # rewritten while we reported: the next scan takes the new content
        move_with_sidecar(answer.path, answer.sidecar, self._archive, answer.path.name)
