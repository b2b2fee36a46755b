"""SOAP connector (zeep): the police household registration service (``contracts/hukou``).

The WSDL is loaded once, from the package (``contracts/hukou/hukou.wsdl``) or from
``[systems.<name>] wsdl``; ``url`` overrides the endpoint address. zeep's requests-based
transport is blocking, so every call runs in a worker thread (``asyncio.to_thread``) under
the system's ``Limiter``; zeep values are turned into the mapping's typed values inside that
thread and never leave this module.

Submissions return a receipt; the police decide by hand later, so ``polls = True`` and the
gateway's timer calls ``check``, which asks QueryCase.

Library exceptions are translated here, and only here:

    Retryable   connection refused/reset or cut mid-answer, timeouts, HTTP 5xx/408/429,
                SOAP Server fault
    Permanent   SOAP Client / VersionMismatch / MustUnderstand fault, other HTTP 4xx,
                invalid XML or an answer outside the contract, a request zeep cannot build,
                an answer the XML policy refuses (``xmlsafe.UnsafeXml``: a DOCTYPE or
                entity, over 1 MiB, nested too deep)

The WSDL and every answer pass through ``xmlsafe.ContractTransport``: no socket while loading
a local WSDL, no file outside its folder, answers read up to the cap and vetted before zeep.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib import resources
from typing import Any, Final, TypeVar, cast, get_args

import requests.exceptions  # type: ignore[import-untyped, unused-ignore]  # zeep's transport
from requests.adapters import HTTPAdapter  # type: ignore[import-untyped, unused-ignore]
from zeep import Client
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import ExternalReferenceForbidden, Fault, TransportError
from zeep.helpers import serialize_object

from connectors.base import Decision, DepartmentRequest, Receipt
from connectors.limits import Limiter
from connectors.xmlsafe import ContractTransport, UnsafeXml, zeep_settings
from gateway.errors import ConfigurationError, GatewayError, Permanent, Retryable
from gateway.settings import SystemConfig
from mappings import hukou
from mappings.hukou import CaseGap, CaseStatus, CaseStatusCode, HukouReceipt, SoapCall

__all__ = ["SoapConnector"]

NAMESPACE: Final = "urn:cn:gov:police:hukou:2026"
BINDING: Final = f"{{{NAMESPACE}}}HukouBinding"
PACKAGED_WSDL: Final = ("hukou", "hukou.wsdl")  # under the ``contracts`` package
_STATUSES: Final = frozenset(get_args(CaseStatusCode))
_RETRY_HTTP: Final = frozenset({408, 425, 429})
_MAX_TEXT: Final = 300
T = TypeVar("T")


class SoapConnector:
    """``Connector`` for a system speaking the police household registration contract."""

    polls = True

    def __init__(self, system: str, config: SystemConfig) -> None:
        if config.kind != "soap":
            raise ConfigurationError(f"[systems.{system}] kind must be soap for SoapConnector")
        self.system = system
        self._config = config
        self._limiter = Limiter(config.concurrency, config.rate_per_second)
        # Loads stay in the WSDL's folder (or origin); answers are capped and vetted (xmlsafe).
        self._transport = ContractTransport(
            system=system, wsdl=config.wsdl or _packaged_wsdl(), timeout=config.timeout_seconds
        )
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=config.concurrency)
        self._transport.session.mount("http://", adapter)
        self._transport.session.mount("https://", adapter)
        self._service: Any = None
        self._loading = threading.Lock()
        wsdl = config.wsdl or ""
        if not wsdl.startswith(("http://", "https://")):
            self._load()  # a local file: fail at start, not on the first message
        # A WSDL behind a URL loads on the first call, in the worker thread, so that a
        # service on this very event loop (the demo's simulator) can answer it.

    # --- Connector ------------------------------------------------------------------
    async def send(self, request: DepartmentRequest) -> Receipt:
        """Submit the request (idempotent on ``RequestId`` = task id); the receipt starts
        the department's clock."""
        call = hukou.submission(request)
        answer = await self._call(call, _receipt)
        return hukou.receipt(answer)

    async def check(self, request: DepartmentRequest, case_number: str | None) -> Decision | None:
        """Ask QueryCase; None while the case waits to be taken up."""
        status = await self._call(hukou.status_query(request, case_number), _case_status)
        return hukou.decision(request, status)

    async def close(self) -> None:
        await asyncio.to_thread(self._transport.session.close)

    # --- calls ----------------------------------------------------------------------
    async def _call(self, call: SoapCall, parse: Callable[[Mapping[str, Any]], T]) -> T:
        async with self._limiter.slot():
            return await asyncio.to_thread(self._invoke, call, parse)

    def _invoke(self, call: SoapCall, parse: Callable[[Mapping[str, Any]], T]) -> T:
        """Runs in a worker thread: zeep call, then zeep's answer → typed value."""
        try:
            operation = self._operation(call.operation)
            data = serialize_object(operation(**call.body), dict)  # type: ignore[no-untyped-call]
        except Fault as exc:
            raise self._fault(exc) from None
        except TransportError as exc:
            raise self._http(exc.status_code) from None
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,  # the connection broke mid-answer
        ) as exc:
            kind = type(exc).__name__
            raise Retryable(
                f"police service unreachable: {kind}", self.system, "unreachable"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise Permanent(f"request failed: {type(exc).__name__}", self.system, "http") from None
        except (ZeepError, TypeError, ValueError) as exc:
            # zeep could not build the request or read the answer: no retry will change that.
            raise Permanent(
                f"{call.operation}: {_short(str(exc))}", self.system, type(exc).__name__
            ) from None
        if not isinstance(data, Mapping):
            raise Permanent(f"{call.operation}: answer has no body", self.system, "answer")
        try:
            return parse(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise Permanent(
                f"{call.operation}: answer outside the contract ({type(exc).__name__})",
                self.system,
                "answer",
            ) from None

    def _operation(self, name: str) -> Callable[..., Any]:
        try:
            return cast(Callable[..., Any], self._load()[name])
        except AttributeError:  # zeep's ServiceProxy says "no such operation" this way
            raise ConfigurationError(
                f"the WSDL of [systems.{self.system}] has no operation {name}", self.system, "wsdl"
            ) from None

    def _load(self) -> Any:
        """The zeep service proxy, built once (thread-safe)."""
        with self._loading:
            if self._service is None:
                self._service = self._build_service()
            return self._service

    def _build_service(self) -> Any:
        # A local WSDL must not reach out; one served over HTTP imports its XSD from there.
        settings = zeep_settings(remote=self._transport.remote)
        try:
            wsdl = self._config.wsdl or _packaged_wsdl()
            client = Client(wsdl, transport=self._transport, settings=settings)  # type: ignore[no-untyped-call]
            if self._config.url:
                return client.create_service(BINDING, self._config.url)  # type: ignore[no-untyped-call]
            return client.service
        except UnsafeXml as exc:
            raise ConfigurationError(
                f"[systems.{self.system}] cannot load the WSDL: {exc.detail}", self.system, exc.code
            ) from None
        except ExternalReferenceForbidden as exc:  # zeep's own guard, before the transport's
            raise ConfigurationError(
                f"[systems.{self.system}] cannot load the WSDL: refused to load "
                f"{_short(str(exc.url))}: external reference",
                self.system,
                "xml_outside",
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            # a served WSDL briefly unreachable at first use: every task would be parked
            raise Retryable(
                f"cannot load the WSDL of [systems.{self.system}]: {type(exc).__name__}",
                self.system,
                "wsdl_unreachable",
            ) from None
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status >= 500 or status in _RETRY_HTTP:
                raise Retryable(
                    f"cannot load the WSDL of [systems.{self.system}]: HTTP {status}",
                    self.system,
                    f"http_{status}",
                ) from None
            raise ConfigurationError(
                f"[systems.{self.system}] cannot load the WSDL: HTTP {status}",
                self.system,
                "wsdl",
            ) from None
        except (OSError, ZeepError, requests.exceptions.RequestException) as exc:
            raise ConfigurationError(
                f"[systems.{self.system}] cannot load the WSDL: {_short(str(exc))}",
                self.system,
                "wsdl",
            ) from None

    # --- error translation ----------------------------------------------------------
    def _fault(self, exc: Fault) -> GatewayError:
        kind = str(exc.code or "").rpartition(":")[2]  # "soap:Client.Auth" → "Client.Auth"
        code = _detail_code(exc.detail) or kind or "fault"
        detail = f"police service {kind or 'unknown'} fault: {_short(str(exc.message or ''))}"
        if kind.startswith(("Client", "VersionMismatch", "MustUnderstand")):
            return Permanent(detail, self.system, code)
        return Retryable(detail, self.system, code)  # Server, or a fault we cannot read

    def _http(self, status: int) -> GatewayError:
        detail = f"police service answered HTTP {status}"
        if status >= 500 or status in _RETRY_HTTP:
            return Retryable(detail, self.system, f"http_{status}")
        # A 200 with a body that is not XML lands here too (status 200): contract broken.
        return Permanent(detail, self.system, f"http_{status}")


def _packaged_wsdl() -> str:
    """The WSDL shipped in the ``contracts`` package, as a file path (installed as files)."""
    return str(resources.files("contracts").joinpath(*PACKAGED_WSDL))


# --- zeep answer → typed values (run in the worker thread) ------------------------------
def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _detail_code(detail: Any) -> str | None:
    """``FaultDetail/Code`` from the fault's detail element, if there is one."""
    find = getattr(detail, "findtext", None)
    if find is None:
        return None
    code = find(f".//{{{NAMESPACE}}}Code")
    return str(code).strip() or None if code is not None else None


def _moment(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError("not a date-time")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _receipt(data: Mapping[str, Any]) -> HukouReceipt:
    return HukouReceipt(case_no=str(data["CaseNo"]), accepted_at=_moment(data["AcceptedAt"]))


def _case_status(data: Mapping[str, Any]) -> CaseStatus:
    status = str(data["Status"])
    if status not in _STATUSES:
        raise ValueError("unknown status")
    gaps = (data.get("Gaps") or {}).get("Gap") or []
    return CaseStatus(
        case_no=str(data["CaseNo"]),
        request_id=str(data["RequestId"]),
        status=cast(CaseStatusCode, status),
        citizen_id=_optional_text(data.get("CitizenId")),
        result_no=_optional_text(data.get("ResultNo")),
        reason=_optional_text(data.get("Reason")),
        gaps=tuple(CaseGap(str(g["Field"]), str(g["Message"])) for g in gaps),
        decided_at=None if data.get("DecidedAt") is None else _moment(data["DecidedAt"]),
    )
