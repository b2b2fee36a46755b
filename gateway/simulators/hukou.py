"""Police household registration simulator: the SOAP 1.1 service of ``contracts/hukou``.

An honest implementation of the contract, reached at ``[systems.<name>] url``:

* ``GET <path>?wsdl`` serves the WSDL (address rewritten to this server), ``?xsd=hukou.xsd``
  the schema it imports;
* ``POST <path>`` takes SOAP 1.1 envelopes, parsed safely and validated against
  ``hukou.xsd`` (``hukou_soap``): what the contract refuses gets a ``Client`` fault, an
  outage or failure (``Behaviour.down()``) a ``Server`` fault, both with HTTP 500;
* a submission returns a Receipt at once and is idempotent per ``RequestId``: the same
  content returns the same Receipt, other content is refused (``DUPLICATE_REQUEST``) unless
  the case awaits a correction (补正), when it replaces the request and the case restarts;
* a case is decided ``decision_delay_seconds`` after acceptance (IN_PROGRESS from half-way)
  by ``Behaviour.verdict(application, names)`` and the officer's own checks; an approval
  applies the effect - the registration, for a birth with a valid new citizen ID - once per
  ``RequestId`` through ``EffectLedger.apply``; a suspended case resumes when its verdict
  no longer says suspended.

``Behaviour.request`` is told of each submission when it has arrived and when its case is
open, before the answer leaves (the fault-injection tests kill the caller there).

Every submission is recorded in the ledger under (system, application, task); the last
raw request bodies are kept in ``received`` so tests can validate them independently.

Memory stays flat: open cases live in memory; a decided case (approved, rejected, awaiting a
correction) is written to the ledger (``keep_case``) and only the newest ``retain`` of them stay
in memory too (``Retention``); the others are answered from the ledger, by RequestId or CaseNo.
Citizen IDs already given out are looked up in the ledger's effects, never held in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs; stays here

from gateway.envelope.validators import citizen_id_check_char
from gateway.logs import get_logger
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour, application_of
from gateway.simulators.hukou_soap import NS, Contract, SoapFault, envelope, fault, short, tree
from gateway.simulators.ledger import EffectLedger, LedgerCalls
from gateway.simulators.retention import DEFAULT_RETAIN, Retention

__all__ = ["HukouSimulator"]

log = get_logger(__name__)
T = TypeVar("T")
CHINA: Final = timezone(timedelta(hours=8), "CST")
OPERATIONS: Final = {  # request element → (operation, result number prefix)
    "SubmitBirthRegistrationRequest": ("birth_registration", "CS"),
    "SubmitDeregistrationRequest": ("deregistration", "ZX"),
    "SubmitKinshipVerificationRequest": ("kinship_verification", "QS"),
    "SubmitHouseholdChangeRequest": ("household_change", "BG"),
}
RESULT_PREFIX: Final = dict(OPERATIONS.values())
OPEN: Final = ("PENDING", "IN_PROGRESS", "SUSPENDED")  # statuses that may still change
_DATES: Final = ("accepted_at", "decided_at")


@dataclass
class _Case:
    case_no: str
    request_id: str
    operation: str
    application_id: str
    task: str
    fingerprint: str
    request: Any  # the validated request element (None for a case restored from the ledger)
    accepted_at: datetime
    status: str = "PENDING"
    citizen_id: str | None = None
    result_no: str | None = None
    reason: str | None = None
    gaps: list[tuple[str, str]] = field(default_factory=list)
    decided_at: datetime | None = None

    def text(self, path: str) -> str | None:
        found = self.request.findtext("/".join(f"{{{NS}}}{p}" for p in path.split("/")))
        return None if found is None else str(found)

    def names(self) -> list[str]:
        """The person names the officer sees (for ``Behaviour.by_name``)."""
        return [str(e.text) for e in self.request.iter(f"{{{NS}}}Name") if e.text]

    def state(self) -> dict[str, Any]:
        """The decided case as the ledger keeps it (without the request: it is decided)."""
        kept = {k: v for k, v in vars(self).items() if k != "request" and k not in _DATES}
        kept.update({k: getattr(self, k) and getattr(self, k).isoformat() for k in _DATES})
        return kept

    @classmethod
    def kept(cls, state: dict[str, Any]) -> _Case:
        dates = {k: state[k] and datetime.fromisoformat(state[k]) for k in _DATES}
        gaps = [(f, m) for f, m in state["gaps"]]
        return cls(**{**state, **dates, "gaps": gaps, "request": None})


class HukouSimulator:
    def __init__(
        self,
        config: SystemConfig,
        behaviour: Behaviour,
        ledger: EffectLedger,
        *,
        system: str = "hukou",
        tick_seconds: float = 0.05,
        retain: int = DEFAULT_RETAIN,
        own_process: bool = False,
    ) -> None:
        parts = urlsplit(config.url or "http://127.0.0.1:8081/hukou")
        self._host = parts.hostname or "127.0.0.1"
        self._port = 80 if parts.port is None else parts.port  # 0: any free port
        self._path = parts.path or "/"
        self.system, self.behaviour, self.ledger = system, behaviour, ledger
        self.received: deque[bytes] = deque(maxlen=1000)  # raw request bodies, newest last
        self._tick_seconds = tick_seconds
        # Beside the gateway (the demo, the tests) parsing and validating go to a thread, off
        # the loop they share; in a process of its own the hop would cost more than it frees.
        self._own_process = own_process
        self._by_request: dict[str, _Case] = {}
        self._by_case: dict[str, _Case] = {}
        self._retention = Retention(retain)  # decided cases also held in memory
        self._serial = 0
        self._lock = asyncio.Lock()  # accepting and deciding never interleave
        self._contract: Contract | None = None
        self._wsdl = b""
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The endpoint (with the real port when the config asked for port 0)."""
        return f"http://{self._host}:{self._port}{self._path}"

    @property
    def contract(self) -> Contract:
        if self._contract is None:
            raise RuntimeError("the simulator is not started")
        return self._contract

    # --- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        self._contract = await asyncio.to_thread(Contract)
        self._serial = await self.ledger.delivery_count(self.system)  # case numbers go on
        app = web.Application()
        app.router.add_get(self._path, self._get)
        app.router.add_post(self._path, self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._port = int(self._runner.addresses[0][1])
        self._wsdl = await asyncio.to_thread(self.contract.served_wsdl, self.url)
        self._ticker = asyncio.create_task(self._tick(), name=f"{self.system}-simulator")
        log.info("simulator_started", system=self.system, url=self.url)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        self._ticker = self._runner = None

    # --- HTTP -------------------------------------------------------------------------
    async def _get(self, request: web.Request) -> web.Response:
        if self.behaviour.down():
            return web.Response(status=503, text="service unavailable")
        if "wsdl" in request.query:
            return web.Response(body=self._wsdl, content_type="text/xml", charset="utf-8")
        if request.query.get("xsd") == "hukou.xsd":
            return web.Response(body=self.contract.xsd, content_type="text/xml", charset="utf-8")
        raise web.HTTPNotFound()

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(body)
        try:
            if self.behaviour.down():
                raise SoapFault("Server", "SERVICE_UNAVAILABLE", "服务暂不可用，请稍后重试")
            if request.content_type != "text/xml":
                raise SoapFault("Client", "UNSUPPORTED_MEDIA_TYPE", "SOAP 1.1 needs text/xml")
            name, element = await self._blocking(self.contract.parse, body)
            if name == "QueryCaseRequest":
                answer = await self._query(element)
            else:
                answer = await self._submit(name, element)
            await self._blocking(self.contract.check_answer, answer)
            status, reply = 200, envelope(answer)
        except SoapFault as error:
            status, reply = 500, fault(error)
        return web.Response(body=reply, status=status, content_type="text/xml", charset="utf-8")

    async def _blocking(self, fn: Callable[[Any], T], arg: Any) -> T:
        return fn(arg) if self._own_process else await asyncio.to_thread(fn, arg)

    # --- operations -------------------------------------------------------------------
    async def _submit(self, name: str, element: Any) -> Any:
        request_id = str(element.findtext(f"{{{NS}}}RequestId"))
        operation = OPERATIONS[name][0]
        try:
            application_id, task = application_of(request_id)
        except ValueError:  # another client's key: the ledger files it under the key itself
            application_id, task = request_id, operation
        await self.ledger.record_delivery(self.system, application_id, task, request_id, name)
        self.behaviour.request("arrived", application_id, task)
        canonical = etree.tostring(element, method="c14n", exclusive=True)
        fingerprint = hashlib.sha256(canonical).hexdigest()
        now = datetime.now(CHINA).replace(microsecond=0)
        async with self._lock:  # one case per RequestId, even with two requests in flight
            case = self._by_request.get(request_id) or await self._restore(request_id)
            if case is None:
                self._serial += 1
                case = _Case(
                    f"HK{now:%Y%m%d}{self._serial:06d}", request_id, operation,
                    application_id, task, fingerprint, element, now,
                )  # fmt: skip
                self._by_request[request_id] = self._by_case[case.case_no] = case
            elif case.fingerprint != fingerprint:
                if case.status != "CORRECTION" or case.operation != operation:
                    raise SoapFault("Client", "DUPLICATE_REQUEST", "RequestId already used")
                case.fingerprint, case.request, case.accepted_at = fingerprint, element, now
                case.status, case.gaps, case.reason, case.decided_at = "PENDING", [], None, None
                self._retention.reopened(request_id)
        self.behaviour.request("taken", application_id, task)
        return tree("Receipt", [("CaseNo", case.case_no), ("AcceptedAt", case.accepted_at)])

    async def _query(self, element: Any) -> Any:
        case_no = element.findtext(f"{{{NS}}}CaseNo")
        if case_no is not None:
            case = self._by_case.get(case_no) or await self._restore(case_no=case_no)
        else:
            request_id = str(element.findtext(f"{{{NS}}}RequestId"))
            case = self._by_request.get(request_id) or await self._restore(request_id)
        if case is None:
            raise SoapFault("Client", "CASE_NOT_FOUND", "no such case")
        await self._advance(case)
        gaps = [tree("Gap", [("Field", f), ("Message", short(m))]) for f, m in case.gaps]
        return tree(
            "CaseStatus",
            [
                ("CaseNo", case.case_no),
                ("RequestId", case.request_id),
                ("Status", case.status),
                ("CitizenId", case.citizen_id),
                ("ResultNo", case.result_no),
                ("Reason", case.reason and short(case.reason)),
                ("Gaps", tree("Gaps", gaps) if gaps else None),
                ("DecidedAt", case.decided_at),
            ],
        )

    async def _restore(
        self, request_id: str | None = None, *, case_no: str | None = None
    ) -> _Case | None:
        """A decided case no longer in memory (or decided before this simulator restarted),
        from the ledger: its decision stands."""
        kept = await self.ledger.case(self.system, key=request_id, case_no=case_no)
        if kept is not None:
            case = _Case.kept(kept)
        elif request_id is None:
            return None
        elif (stored := await self.ledger.applied(self.system, request_id)) is not None:
            case = _Case(
                stored["case_no"], request_id, stored["operation"], "", "", stored["fingerprint"],
                None, datetime.fromisoformat(stored["accepted_at"]), "APPROVED",
                stored.get("citizen_id"), stored["result_no"],
                decided_at=datetime.fromisoformat(stored["decided_at"]),
            )  # fmt: skip  # approved by an older simulator, before cases were kept
        else:
            return None
        held = self._by_case.get(case.case_no)
        if held is not None:  # restored (a query does it without the lock) or reopened by a
            return held  # correction while the ledger was read: memory's copy is the newer
        self._hold(case)
        return case

    def _hold(self, case: _Case) -> None:
        """Hold a decided case in memory, dropping the oldest ones beyond the retention."""
        self._by_request[case.request_id] = self._by_case[case.case_no] = case
        for request_id in self._retention.decided(case.request_id):
            dropped = self._by_request.pop(request_id, None)
            if dropped is not None:
                self._by_case.pop(dropped.case_no, None)

    # --- deciding ---------------------------------------------------------------------
    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._tick_seconds)
            for case in [c for c in self._by_request.values() if c.status in OPEN]:
                try:
                    await self._advance(case)
                except Exception:  # keep deciding the other cases; the log says why
                    log.exception("simulator_decision_failed", system=self.system)

    async def _advance(self, case: _Case) -> None:
        async with self._lock:
            accepted = case.accepted_at.timestamp()
            if case.status in ("PENDING", "IN_PROGRESS"):
                if self.behaviour.due(accepted):
                    await self._decide(case)
                elif time.time() >= accepted + self.behaviour.decision_delay_seconds / 2:
                    case.status = "IN_PROGRESS"  # an officer has taken it up
            elif case.status == "SUSPENDED":
                verdict = self.behaviour.verdict(case.application_id, case.names())
                if verdict.outcome != "suspended":
                    await self._decide(case)

    async def _decide(self, case: _Case) -> None:
        """Decide ``case`` (the caller holds the lock); what goes to the ledger (the citizen IDs
        given out looked up, the effect applied, the decided case kept) goes in one hop."""
        verdict = self.behaviour.verdict(case.application_id, case.names())
        outcome, reason, gaps = verdict.outcome, verdict.reason, list(verdict.gaps)
        if outcome == "completed" and (checks := _officer_checks(case)):
            outcome, gaps = "correction_requested", checks
        case.decided_at = datetime.now(CHINA).replace(microsecond=0)
        if outcome == "completed":
            await self._approve(case)  # applied and kept
        elif outcome == "denied":
            case.status, case.reason = "REJECTED", reason or "不符合登记条件"
        elif outcome == "suspended":
            case.status, case.reason = "SUSPENDED", reason or "案件中止办理"
        else:
            case.status, case.reason = "CORRECTION", reason
            case.gaps = gaps or [("", reason or "请补正材料")]
        if case.status not in OPEN:  # decided: on disk, and in memory while among the newest
            if outcome != "completed":
                await self.ledger.keep_case(
                    self.system, case.request_id, case.case_no, case.state()
                )
            self._hold(case)
        log.info("simulator_decided", system=self.system, case=case.case_no, status=case.status)

    async def _approve(self, case: _Case) -> None:
        """Apply the approval's effect once per RequestId and keep the case approved, in one
        call on the ledger's thread; then ``case`` says what stands."""
        assert case.decided_at is not None
        result: dict[str, Any] = {
            "case_no": case.case_no,
            "operation": case.operation,
            "fingerprint": case.fingerprint,
            "accepted_at": case.accepted_at.isoformat(),
            "decided_at": case.decided_at.isoformat(),
            "result_no": RESULT_PREFIX[case.operation] + case.case_no[2:],
        }
        birth = _birth_of(case) if case.operation == "birth_registration" else None

        def approve(calls: LedgerCalls) -> dict[str, Any]:
            if birth is not None:  # free: under the lock, looked up and applied in this call
                prefix, parity = birth
                result["citizen_id"] = _free_citizen_id(
                    prefix, parity, calls.citizen_ids(self.system, prefix)
                )
            stored = calls.apply(
                self.system, case.application_id, case.task, case.request_id, result
            )
            approved = replace(
                case,
                status="APPROVED",
                result_no=stored["result_no"],
                citizen_id=stored.get("citizen_id"),
                decided_at=datetime.fromisoformat(stored["decided_at"]),
            )  # a copy: the loop's case changes once the call is back
            calls.keep_case(self.system, case.request_id, case.case_no, approved.state())
            return stored

        stored = await self.ledger.run(approve)
        case.status, case.result_no = "APPROVED", stored["result_no"]
        case.citizen_id = stored.get("citizen_id")
        case.decided_at = datetime.fromisoformat(stored["decided_at"])


def _birth_of(case: _Case) -> tuple[str, int]:
    """GB 11643's first 14 characters for the child (the household address's county, the
    birth date in Beijing time) and the parity of the sequence (odd: a boy)."""
    region = (case.text("Household/AddressDivision") or "")[:6]
    born = datetime.fromisoformat(case.text("Child/BirthDateTime") or "")
    born = born if born.tzinfo else born.replace(tzinfo=CHINA)
    parity = 1 if case.text("Child/Sex") == "1" else 0
    return region + born.astimezone(CHINA).strftime("%Y%m%d"), parity


def _free_citizen_id(prefix: str, parity: int, given: set[str]) -> str:
    """GB 11643: ``prefix``, the first free sequence of the right parity, the check."""
    issued = {number[:17] for number in given}
    for sequence in range(1, 1000):
        body = f"{prefix}{sequence:03d}"
        if sequence % 2 == parity and body not in issued:
            return body + citizen_id_check_char(body)
    raise RuntimeError("no free citizen ID sequence for this county and birth date")


def _officer_checks(case: _Case) -> list[tuple[str, str]]:
    """Rules of the contract an officer checks before approving (README "Decisions")."""
    gaps: list[tuple[str, str]] = []
    if case.operation == "birth_registration" and case.text("Child/Sex") not in ("1", "2"):
        gaps.append(("Child/Sex", "出生登记须申报性别（男或女）"))
    if case.operation == "household_change":
        change = case.text("ChangeType")
        if change in ("0201", "0501") and case.request.find(f"{{{NS}}}Household") is None:
            gaps.append(("Household", "迁入或恢复户口须提供落户地址"))
        if change == "0701" and case.text("MaritalStatus") is None:
            gaps.append(("MaritalStatus", "婚姻状况变更须申报婚姻状况"))
    return gaps
