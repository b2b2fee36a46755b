"""The hospital as the gateway meets it: a legacy system that only exchanges files
(contracts/hospital/).

It watches its in-tray (``config.outbox``: the gateway's outbox) for complete request files
``<task id>.req.xml`` (dot-files are writers' temp files and are never read) and, per file, as
the contract says:

* it checks the file with its own safe parser against ``request.xsd``; a file that breaks the
  contract (not XML, not valid, TaskId not the file's name) is answered with a
  ``RequestRejected`` document as ``<name>.result.xml`` saying where (never the values);
* it is idempotent on the task id: the same id gets the same acknowledgement (same case
  number, same acceptance time) and, once decided, the same result, byte for byte; a
  certificate is issued at most once (``EffectLedger.apply``). A request changed after a
  CORRECTION result is decided again;
* it writes ``<task id>.ack.xml`` at once and ``<task id>.result.xml`` after
  ``Behaviour.decision_delay_seconds`` per ``Behaviour.verdict``, each atomically (temp file,
  fsync, rename) into its out-tray (``config.inbox``) and then its ``.sha256`` sidecar;
* consumed request files go to ``processed/`` under its in-tray;
* down (``Behaviour.down()``: an outage window or a random failure) it does not take the file,
  which waits in the in-tray for a later scan; during an outage window it decides nothing.

Every delivery and every issued certificate goes into the ledger under (hospital, application,
task). Undecided cases live in memory: a simulator stopped before deciding does not decide.
A decided case is written to the ledger (``keep_case``) before its result file (a result file
that could not be written is written at the next deciding step: the same decision), and only the
newest ``retain`` decided cases stay in memory too (``Retention``): a request file sent again
for an older one is answered from the ledger, and memory stays flat.

It scans when a file arrives in its in-tray (an inotify wake-up, ``connectors.folderwatch``) and
every ``scan_seconds`` in any case (decisions fall due with time, not with files). The files of
one scan are taken, and the cases due decided, up to ``parallel`` at a time, their file work on
the simulator's own threads: a real hospital's fsyncs do not wait in line behind each other or
behind the gateway's other work. A case already due when its file is taken (no decision delay)
is decided right after its acknowledgement is written, before its file is moved to
``processed/`` and without waiting for the scan's other files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

from lxml import etree

from connectors.filethreads import FileThreads
from connectors.folderwatch import FolderWatch
from gateway.errors import ConfigurationError
from gateway.logs import get_logger
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour, Verdict, application_of
from gateway.simulators.ledger import EffectLedger, LedgerCalls
from gateway.simulators.retention import DEFAULT_RETAIN, Retention

log = get_logger(__name__)
T = TypeVar("T")

SYSTEM = "hospital"
NS = "urn:one-window:hospital:v1"
CHINA = timezone(timedelta(hours=8))
_REQUEST = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]{0,199})\.req\.xml")
_ELEMENT = re.compile(r"Element '(?:\{[^}]*\})?([^']+)'")
_STATUS = {
    "completed": "ISSUED",
    "denied": "REFUSED",
    "correction_requested": "CORRECTION",
    "suspended": "SUSPENDED",
}


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


class _Rejected(Exception):
    def __init__(self, code: str, detail: str, task_id: str | None = None) -> None:
        super().__init__(detail)
        self.code, self.detail, self.task_id = code, detail[:500], task_id


@dataclass
class _Case:
    task_id: str
    application_id: str
    task: str
    kind: str  # BIRTH | DEATH
    case_no: str
    accepted_at: str
    fingerprint: str
    names: list[str]
    known_no: str | None
    place: str  # county of birth or death
    final: dict[str, Any] | None = None


class HospitalSimulator:
    """Scans its in-tray when a file arrives and every ``scan_seconds`` (an attribute too: the
    bench shortens it); ``scans`` counts finished scans (tests wait on it instead of on the
    clock)."""

    def __init__(
        self,
        config: SystemConfig,
        behaviour: Behaviour,
        ledger: EffectLedger,
        *,
        scan_seconds: float = 0.05,
        clock: Callable[[], float] = time.time,
        parallel: int = 8,
        retain: int = DEFAULT_RETAIN,
    ) -> None:
        if config.outbox is None or config.inbox is None:
            raise ConfigurationError("the hospital simulator needs `outbox` and `inbox` folders")
        self._in = Path(config.outbox)
        self._out = Path(config.inbox)
        self.processed = self._in / "processed"
        self._behaviour, self._ledger = behaviour, ledger
        self.scan_seconds, self._clock = scan_seconds, clock
        self._parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        )
        xsd = (resources.files("contracts") / "hospital" / "request.xsd").read_bytes()
        self._schema = etree.XMLSchema(etree.fromstring(xsd, self._parser))
        self._cases: dict[str, _Case] = {}  # open ones, and the newest decided ones
        self._unanswered: dict[str, _Case] = {}  # decided and kept, its result file not written
        self._retention = Retention(retain)
        self._serial: int | None = None
        self._serial_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._parallel = max(1, parallel)
        self._threads: FileThreads | None = None
        self.watch: FolderWatch | None = None  # while running: its wake-ups, for tests
        self.scans = 0

    async def start(self) -> None:
        def prepare() -> None:
            self.processed.mkdir(parents=True, exist_ok=True)
            self._out.mkdir(parents=True, exist_ok=True)

        await self._io(prepare)
        self._task = asyncio.create_task(self._loop(), name="hospital-simulator")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._threads is not None:
            self._threads.close()
            self._threads = None

    async def _loop(self) -> None:
        self.watch = watch = FolderWatch(self._in, name="hospital-simulator")
        try:
            watch.start()
            while True:
                try:
                    await self.scan()
                except Exception:
                    log.exception("hospital_simulator_scan_failed")
                self.scans += 1
                await watch.wait(self.scan_seconds)
        finally:
            watch.close()

    async def scan(self) -> None:
        """Take every complete request file (oldest first), then decide what is due."""
        taken = [
            name
            for name in await self._io(self._requests)
            if not self._behaviour.down(self._clock())  # down: the file waits in the in-tray
        ]
        await self._each(self._take, taken)
        if not self._in_outage():
            due = [c for c in self._cases.values() if c.final is None and self._due(c)]
            await self._each(self._decide, [*due, *self._unanswered.values()])

    async def _each(self, work: Callable[[T], Awaitable[None]], items: Iterable[T]) -> None:
        """``work`` on every item, ``parallel`` at a time; one that fails is logged and the
        others go on (it is tried again at a later scan: its file is still there)."""
        gate = asyncio.Semaphore(self._parallel)

        async def one(item: T) -> None:
            async with gate:
                await work(item)

        for outcome in await asyncio.gather(*(one(i) for i in items), return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("hospital_simulator_file_failed", exc_info=outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        if self._threads is None:
            self._threads = FileThreads(min(self._parallel, 4), name="hospital-simulator")
        return await self._threads.run(fn, *args)

    def _requests(self) -> list[str]:
        with os.scandir(self._in) as entries:
            found = [
                (e.stat(follow_symlinks=False).st_mtime, e.name)
                for e in entries
                if _REQUEST.fullmatch(e.name) and e.is_file(follow_symlinks=False)
            ]
        return [name for _, name in sorted(found)]

    def _in_outage(self) -> bool:
        now = self._clock()
        return any(start <= now < end for start, end in self._behaviour.outages)

    def _due(self, case: _Case) -> bool:
        accepted = datetime.fromisoformat(case.accepted_at).timestamp()
        return self._behaviour.due(accepted, self._clock())

    # -- taking a request --------------------------------------------------------------------
    async def _take(self, name: str) -> None:
        path = self._in / name
        try:
            data = await self._io(path.read_bytes)
        except FileNotFoundError:
            return
        stem = name.removesuffix(".req.xml")
        try:
            root = self._check(data, stem)
        except _Rejected as rejected:
            await self._reject(name, stem, rejected)
        else:
            case = await self._accept(root, data)
            if case.final is None and self._due(case) and not self._in_outage():
                try:  # due already: its result follows its ack now, not after the scan's takes
                    await self._decide(case)
                except Exception:  # undecided: the scan's deciding tries it again
                    log.exception("hospital_simulator_file_failed")
        await self._io(self._file_away, path)

    def _check(self, data: bytes, stem: str) -> Any:
        try:
            root = etree.fromstring(data, self._parser)
        except etree.XMLSyntaxError as exc:
            raise _Rejected("NOT_WELL_FORMED", f"line {exc.lineno}: not well-formed") from None
        if root.getroottree().docinfo.doctype:
            raise _Rejected("NOT_WELL_FORMED", "a DOCTYPE is not allowed")
        if not self._schema.validate(root):
            places = []
            for entry in list(self._schema.error_log)[:5]:
                m = _ELEMENT.search(str(entry.message))
                places.append(f"line {entry.line} {m[1] if m else '?'} ({entry.type_name})")
            raise _Rejected("SCHEMA_INVALID", "; ".join(places))
        task_id = str(root.findtext(_q("TaskId")))
        if task_id != stem:
            raise _Rejected("NAME_MISMATCH", "TaskId is not the file's name", task_id)
        return root

    async def _reject(self, name: str, stem: str, rejected: _Rejected) -> None:
        application_id, task = _business_key(stem)
        await self._ledger.record_delivery(
            SYSTEM, application_id, task, stem, f"rejected: {rejected.code}"
        )
        task_id = rejected.task_id if rejected.task_id and _REQUEST.fullmatch(
            rejected.task_id + ".req.xml") else None  # fmt: skip
        doc = _element("RequestRejected", RequestFile=name, TaskId=task_id, Code=rejected.code,
                       Detail=rejected.detail, RejectedAt=_stamp(self._now()))  # fmt: skip
        await self._write(f"{stem}.result.xml", doc)
        log.info("hospital_request_rejected", file=name, code=rejected.code)

    async def _accept(self, root: Any, data: bytes) -> _Case:
        task_id = str(root.findtext(_q("TaskId")))
        application_id, task = _business_key(task_id)
        fingerprint = hashlib.sha256(data).hexdigest()
        case, stored = self._cases.get(task_id), None
        if case is None:
            case, stored = await self._kept(task_id)
        detail = "duplicate"
        if case is None:
            case = self._open(root, task_id, fingerprint, stored)
            detail = "accepted" if stored is None else "duplicate"
        elif (
            case.fingerprint != fingerprint and case.final and case.final["status"] == "CORRECTION"
        ):
            case = self._open(root, task_id, fingerprint, None)  # corrected: decide it again
            detail = "accepted: corrected"
        await self._ledger.record_delivery(SYSTEM, application_id, task, task_id, detail)
        await self._write(f"{task_id}.ack.xml", self._ack(case))
        if case.final is not None:
            await self._answer(case)
        return case

    def _open(
        self, root: Any, task_id: str, fingerprint: str, stored: dict[str, Any] | None
    ) -> _Case:
        application_id, task = _business_key(task_id)
        birth = root.find(_q("Birth"))
        body, kind = (birth, "BIRTH") if birth is not None else (root.find(_q("Death")), "DEATH")
        place = body.findtext(f"{_q('Child')}/{_q('BirthPlace')}") or body.findtext(
            f"{_q('Deceased')}/{_q('PlaceOfDeath')}")  # fmt: skip
        self._unanswered.pop(task_id, None)  # what this request replaces was never told
        case = _Case(
            task_id, application_id, task, kind,
            case_no="H" + hashlib.sha256(task_id.encode()).hexdigest()[:12].upper(),
            accepted_at=stored["accepted_at"] if stored else _stamp(self._now()),
            fingerprint=fingerprint,
            names=[str(n.text) for n in root.iter(_q("Name"))],
            known_no=body.findtext(f"{_q('Deceased')}/{_q('KnownCertificateNo')}"),
            place=str(place)[:6],
            final=stored,
        )  # fmt: skip
        self._cases[task_id] = case
        if stored is None:
            self._retention.reopened(task_id)
        else:
            self._hold(case)
        return case

    async def _kept(self, task_id: str) -> tuple[_Case | None, dict[str, Any] | None]:
        """A decided case no longer in memory, from the ledger; else the effect applied under
        its task id, if any (an older simulator's). One hop to the ledger's thread for both."""

        def look_up(calls: LedgerCalls) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            kept = calls.case(SYSTEM, key=task_id)
            return (kept, None) if kept is not None else (None, calls.applied(SYSTEM, task_id))

        kept, stored = await self._ledger.run(look_up)
        if kept is None:
            return None, stored
        if (held := self._cases.get(task_id)) is not None:  # a file of the same task, taken
            return held, None  # side by side, restored or reopened it meanwhile: memory is newer
        case = _Case(**kept)
        self._hold(case)
        return case, None

    def _hold(self, case: _Case) -> None:
        """Hold a decided case in memory, dropping the oldest ones beyond the retention."""
        self._cases[case.task_id] = case
        for task_id in self._retention.decided(case.task_id):
            self._cases.pop(task_id, None)

    def _file_away(self, path: Path) -> None:
        for n in range(10_000):
            target = self.processed / (path.name if n == 0 else f"{path.name}.{n}")
            if not os.path.lexists(target):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, target)
                return

    # -- deciding ----------------------------------------------------------------------------
    async def _decide(self, case: _Case) -> None:
        """Decide ``case`` and write its result; a case decided already whose result could not
        be written (``_unanswered``) gets that decision's result, not a new decision."""
        if case.final is None:
            await self._settle(case)
        await self._answer(case)
        log.info(
            "hospital_decided", task_id=case.task_id, status=case.final and case.final["status"]
        )

    async def _answer(self, case: _Case) -> None:
        """Write the decided ``case``'s result file: then it is owed no more."""
        assert case.final is not None
        await self._write(f"{case.task_id}.result.xml", self._result(case.final))
        if self._unanswered.get(case.task_id) is case:
            del self._unanswered[case.task_id]

    async def _settle(self, case: _Case) -> None:
        """Decide ``case``: its result kept in the ledger (and owed until its file is written)."""
        verdict = self._behaviour.verdict(case.application_id, case.names)
        decided = await self._final(case, verdict)

        def settle(calls: LedgerCalls) -> dict[str, Any]:
            """Apply a certificate once per task id (the one that stands, if another process
            issued it first) and keep the case decided: one hop to the ledger's thread."""
            result = decided
            if verdict.outcome == "completed":
                result = calls.apply(SYSTEM, case.application_id, case.task, case.task_id, decided)
            state = dataclasses.asdict(dataclasses.replace(case, final=result))
            calls.keep_case(SYSTEM, case.task_id, case.case_no, state)
            return result

        case.final = await self._ledger.run(settle)
        if self._cases.get(case.task_id) is case:  # not replaced by a correction meanwhile
            self._hold(case)
            self._unanswered[case.task_id] = case  # until its result file is written

    async def _final(self, case: _Case, verdict: Verdict) -> dict[str, Any]:
        result: dict[str, Any] = {
            "task_id": case.task_id, "kind": case.kind, "case_no": case.case_no,
            "status": _STATUS[verdict.outcome], "decided_at": _stamp(self._now()),
            "accepted_at": case.accepted_at,
        }  # fmt: skip
        if verdict.outcome == "completed":
            result["certificate_no"] = await self._certificate_no(case)  # applied by _decide
            return result
        if verdict.outcome == "correction_requested":
            result["gaps"] = [list(g) for g in verdict.gaps] or [["Materials", "请补正材料"]]
            result["reason"] = verdict.reason
        else:
            default = "不符合签发条件" if verdict.outcome == "denied" else "待医学鉴定"
            result["reason"] = verdict.reason or default
        return result

    async def _certificate_no(self, case: _Case) -> str:
        if case.known_no:
            return case.known_no  # the family's certificate is confirmed, not issued again
        async with self._serial_lock:  # cases are decided side by side: count once
            if self._serial is None:
                self._serial = await self._ledger.effect_count(SYSTEM)
        self._serial += 1
        if case.kind == "BIRTH":
            return f"R{self._serial:09d}"
        return f"S{case.place}{self._now():%y%m%d}{self._serial % 10_000:04d}"

    # -- documents ---------------------------------------------------------------------------
    def _ack(self, case: _Case) -> bytes:
        return _element(
            "Acknowledgement", TaskId=case.task_id, CaseNo=case.case_no, AcceptedAt=case.accepted_at
        )

    def _result(self, r: dict[str, Any]) -> bytes:
        root = etree.fromstring(
            _element("CertificateResult", TaskId=r["task_id"], Kind=r["kind"],
                     CaseNo=r["case_no"], Status=r["status"], DecidedAt=r["decided_at"],
                     CertificateNo=r.get("certificate_no"), Reason=r.get("reason")),
            self._parser,
        )  # fmt: skip
        if r.get("gaps"):
            gaps = etree.SubElement(root, _q("Gaps"))
            for field, message in r["gaps"]:
                etree.SubElement(gaps, _q("Gap"), field=field).text = message
        return cast(bytes, etree.tostring(root, xml_declaration=True, encoding="UTF-8"))

    async def _write(self, name: str, data: bytes) -> None:
        await self._io(_write_with_checksum, self._out, name, data)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), CHINA)


def _element(tag: str, **children: str | None) -> bytes:
    root = etree.Element(_q(tag), nsmap={None: NS}, version="1.0")
    for child, text in children.items():
        if text is not None:
            etree.SubElement(root, _q(child)).text = text
    return cast(bytes, etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _write_with_checksum(folder: Path, name: str, data: bytes) -> None:
    """Data first, then its checksum, each through a temp file (written, fsynced) renamed into
    place in that order; then one fsync of the folder for both renames."""
    line = f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()
    temps: list[Path] = []
    try:
        temps.append(_temp(folder, name, data))
        temps.append(_temp(folder, name + ".sha256", line))
        for tmp, final in zip(temps, (name, name + ".sha256"), strict=True):
            os.replace(tmp, folder / final)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)  # a rename that failed leaves no temp behind
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp(folder: Path, name: str, data: bytes) -> Path:
    tmp = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _business_key(task_id: str) -> tuple[str, str]:
    try:
        return application_of(task_id)
    except ValueError:
        return task_id, "unknown"
