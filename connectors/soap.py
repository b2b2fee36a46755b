"""SOAP connector (zeep): the police household registration service (``contracts/hukou``).

The WSDL is loaded once, from the package (``contracts/hukou/hukou.wsdl``) or from
``[systems.<name>] wsdl``; ``url`` overrides the endpoint address. zeep builds each request
from the WSDL and parses each answer; the POST itself goes through one shared aiohttp
session on the event loop (at most ``concurrency`` connections, ``timeout_seconds`` per
call) under the system's ``Limiter``, so no call holds a thread. Building and parsing a
message are a few hundred microseconds of CPU and stay on the loop; zeep values are turned
into the mapping's typed values here and never leave this module.

Submissions return a receipt; the police decide by hand later, so ``polls = True`` and the
gateway's timer calls ``check``, which asks QueryCase.

Library exceptions are translated here, and only here:

    Retryable   connection refused/reset or cut mid-answer, timeouts, HTTP 5xx/408/429,
                SOAP Server fault
    Permanent   SOAP Client / VersionMismatch / MustUnderstand fault, other HTTP 4xx,
                invalid XML or an answer outside the contract, a request zeep cannot build,
                an answer the XML policy refuses (``xmlsafe.UnsafeXml``: a DOCTYPE or
                entity, over 1 MiB, nested too deep)

The WSDL loads through ``xmlsafe.ContractTransport`` (no socket while loading a local WSDL,
no file outside its folder); every answer is read under the same policy
(``xmlsafe.answer_is_read``, ``read_capped``, ``vet_answer``) before zeep sees it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Final, TypeVar, cast, get_args

import aiohttp
import requests.exceptions  # type: ignore[import-untyped, unused-ignore]  # zeep's WSDL loads
from zeep import Client
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import ExternalReferenceForbidden, Fault, TransportError
from zeep.helpers import serialize_object
from zeep.wsdl.utils import etree_to_string

from connectors import xmlsafe
from connectors.base import Decision, DepartmentRequest, Receipt
from connectors.limits import Limiter
from connectors.proxies import env_proxy
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


@dataclass(frozen=True, slots=True)
class _Port:
    """The loaded contract: zeep's client and binding, and the address to post to."""

    client: Any  # zeep.Client
    binding: Any  # zeep's SoapBinding for BINDING
    options: dict[str, Any]  # zeep's binding options: {"address": …}


@dataclass(frozen=True, slots=True)
class _Answer:
    """An HTTP answer in the shape zeep's ``process_reply`` reads (requests' ``Response``)."""

    status_code: int
    content: bytes
    headers: Mapping[str, str]
    encoding: str | None = None


class SoapConnector:
    """``Connector`` for a system speaking the police household registration contract."""

    polls = True

    def __init__(self, system: str, config: SystemConfig) -> None:
        if config.kind != "soap":
            raise ConfigurationError(f"[systems.{system}] kind must be soap for SoapConnector")
        self.system = system
        self._config = config
        self._limiter = Limiter(config.concurrency, config.rate_per_second)
        # Loads stay in the WSDL's folder (or origin) and are vetted (xmlsafe).
        self._transport = ContractTransport(
            system=system, wsdl=config.wsdl or _packaged_wsdl(), timeout=config.timeout_seconds
        )
        self._session: aiohttp.ClientSession | None = None
        self._port: _Port | None = None
        self._loading = threading.Lock()
        wsdl = config.wsdl or ""
        if not wsdl.startswith(("http://", "https://")):
            self._load()  # a local file: fail at start, not on the first message
        # A WSDL behind a URL loads on the first call, in a worker thread, so that a
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
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._transport.session.close()  # the WSDL loads' pool: closing sockets only

    # --- calls ----------------------------------------------------------------------
    async def _call(self, call: SoapCall, parse: Callable[[Mapping[str, Any]], T]) -> T:
        port = self._port if self._port is not None else await asyncio.to_thread(self._load)
        operation = self._operation(port, call.operation)
        message, headers = self._build(port, call)
        async with self._limiter.slot():
            answer = await self._post(port.options["address"], message, headers)
        data = self._read(port, operation, call, answer)
        try:
            return parse(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise Permanent(
                f"{call.operation}: answer outside the contract ({type(exc).__name__})",
                self.system,
                "answer",
            ) from None

    def _build(self, port: _Port, call: SoapCall) -> tuple[bytes, dict[str, str]]:
        """The request envelope zeep builds from the WSDL, and its HTTP headers (SOAPAction,
        Content-Type as the binding says)."""
        try:
            envelope, headers = port.binding._create(
                call.operation, (), call.body, client=port.client, options=port.options
            )
            return etree_to_string(envelope), dict(headers)  # type: ignore[no-untyped-call]
        except (ZeepError, TypeError, ValueError) as exc:
            raise self._unreadable(call, exc) from None

    async def _post(self, address: str, message: bytes, headers: dict[str, str]) -> _Answer:
        """POST on the loop; only an answer the XML policy reads is read, up to its cap."""
        try:
            async with self._client(address).post(address, data=message, headers=headers) as resp:
                content_type = resp.headers.get("Content-Type", "")
                if not xmlsafe.answer_is_read(resp.status, content_type):
                    raise self._http(resp.status)  # its body is not read: it decides nothing
                chunks = resp.content.iter_chunked(xmlsafe.CHUNK)
                body = await xmlsafe.read_capped(chunks, system=self.system)
                return _Answer(resp.status, body, resp.headers)
        except aiohttp.TooManyRedirects:
            raise Permanent("request failed: too many redirects", self.system, "http") from None
        except (
            aiohttp.ClientConnectionError,  # refused, reset, server disconnected
            aiohttp.ClientPayloadError,  # the connection broke mid-answer
            aiohttp.ClientResponseError,  # an answer that is not HTTP
            TimeoutError,
        ) as exc:
            kind = type(exc).__name__
            raise Retryable(
                f"police service unreachable: {kind}", self.system, "unreachable"
            ) from None
        except aiohttp.ClientError as exc:  # an address aiohttp cannot use
            raise Permanent(f"request failed: {type(exc).__name__}", self.system, "http") from None

    def _read(
        self, port: _Port, operation: Any, call: SoapCall, answer: _Answer
    ) -> Mapping[str, Any]:
        """The answer vetted by the XML policy, then parsed by zeep's binding."""
        content_type = answer.headers.get("Content-Type", "")
        try:
            xmlsafe.vet_answer(answer.content, answer.status_code, content_type, system=self.system)
            result = port.binding.process_reply(port.client, operation, answer)
            data = serialize_object(result, dict)  # type: ignore[no-untyped-call]
        except Fault as exc:
            raise self._fault(exc) from None
        except TransportError as exc:  # not XML: the status decides
            raise self._http(exc.status_code) from None
        except (ZeepError, TypeError, ValueError) as exc:
            raise self._unreadable(call, exc) from None
        if not isinstance(data, Mapping):
            raise Permanent(f"{call.operation}: answer has no body", self.system, "answer")
        return data

    def _client(self, address: str) -> aiohttp.ClientSession:
        """The one session of this connector, made on first use (on the running loop), through
        the proxy the environment names for its one ``address``."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._config.concurrency),
                timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds),
                headers={"Accept-Encoding": "identity"},
                proxy=env_proxy(address),
            )
        return self._session

    def _operation(self, port: _Port, name: str) -> Any:
        try:
            return port.binding.get(name)
        except ValueError:  # zeep's binding says "no such operation" this way
            raise ConfigurationError(
                f"the WSDL of [systems.{self.system}] has no operation {name}", self.system, "wsdl"
            ) from None

    def _load(self) -> _Port:
        """The contract, loaded once (thread-safe: a served WSDL loads in a worker thread)."""
        with self._loading:
            if self._port is None:
                self._port = self._build_port()
            return self._port

    def _build_port(self) -> _Port:
        # A local WSDL must not reach out; one served over HTTP imports its XSD from there.
        settings = zeep_settings(remote=self._transport.remote)
        try:
            wsdl = self._config.wsdl or _packaged_wsdl()
            client = Client(wsdl, transport=self._transport, settings=settings)  # type: ignore[no-untyped-call]
            return self._port_of(client)
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

    def _port_of(self, client: Any) -> _Port:
        """HukouBinding and its address: ``url`` when configured, else the WSDL's own."""
        binding = client.wsdl.bindings.get(BINDING)
        address = self._config.url or next(
            (
                port.binding_options.get("address")
                for service in client.wsdl.services.values()
                for port in service.ports.values()
                if port.binding is binding
            ),
            None,
        )
        if binding is None or not address:
            missing = "HukouBinding" if binding is None else "an address for HukouBinding"
            raise ConfigurationError(
                f"[systems.{self.system}] the WSDL has no {missing}: set url or fix the WSDL",
                self.system,
                "wsdl",
            )
        return _Port(client, binding, {"address": address})

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

    def _unreadable(self, call: SoapCall, exc: Exception) -> Permanent:
        # zeep could not build the request or read the answer: no retry will change that.
        return Permanent(f"{call.operation}: {_short(str(exc))}", self.system, type(exc).__name__)


def _packaged_wsdl() -> str:
    """The WSDL shipped in the ``contracts`` package, as a file path (installed as files)."""
    return str(resources.files("contracts").joinpath(*PACKAGED_WSDL))


# --- zeep answer → typed values ---------------------------------------------------------
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
