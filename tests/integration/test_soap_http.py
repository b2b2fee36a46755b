"""The SOAP connector's HTTP side over real sockets: the POST goes out on the event loop
through one shared session (no worker thread), with the headers the WSDL names; faults,
broken answers and the session's life end as the error tree says.

A scripted aiohttp server stands in for the police service where the simulator cannot say
what is needed (a fault code it never uses, a garbled answer, a redirect loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from connectors.soap import SoapConnector
from connectors.xmlsafe import ContractTransport
from gateway.errors import Permanent, Retryable
from gateway.settings import SystemConfig
from tests.integration.test_hukou import _birth

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "urn:cn:gov:police:hukou:2026"
RECEIPT = (
    f'<soap:Envelope xmlns:soap="{SOAP}" xmlns:hk="{NS}"><soap:Body><hk:Receipt>'
    "<hk:CaseNo>HK20261128000001</hk:CaseNo><hk:AcceptedAt>2026-11-28T10:00:00+08:00"
    "</hk:AcceptedAt></hk:Receipt></soap:Body></soap:Envelope>"
).encode()
FAULT = (
    f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body><soap:Fault>'
    "<faultcode>{code}</faultcode><faultstring>refused by the test</faultstring>"
    "</soap:Fault></soap:Body></soap:Envelope>"
)


@dataclass
class Police:
    """What the scripted service answers, and what it saw."""

    status: int = 200
    body: bytes = RECEIPT
    headers: list[dict[str, str]] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)  # client sockets seen


@pytest.fixture
async def police() -> AsyncIterator[tuple[str, Police]]:
    script = Police()

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        script.headers.append(dict(request.headers))
        script.peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        return web.Response(status=script.status, body=script.body, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/hukou", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hukou", script
    await runner.cleanup()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., SoapConnector]]:
    made: list[SoapConnector] = []

    def make(url: str, **config: Any) -> SoapConnector:
        made.append(SoapConnector("hukou", SystemConfig(kind="soap", url=url, **config)))
        return made[-1]

    yield make
    for soap in made:
        await soap.close()


class NoThreads(concurrent.futures.ThreadPoolExecutor):
    """A default executor that fails any call which asks it for a worker thread."""

    asked: list[str]

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.asked.append(repr(fn))
        raise AssertionError(f"a worker thread was asked for: {fn!r}")


async def test_a_call_goes_out_on_the_loop_with_the_wsdls_headers(
    police: tuple[str, Police], connect: Callable[..., SoapConnector]
) -> None:
    url, script = police
    soap = connect(url)  # a local WSDL: loaded here, before the loop's executor is swapped
    executor = NoThreads(max_workers=1)
    executor.asked = []
    asyncio.get_running_loop().set_default_executor(executor)

    receipt = await soap.send(_birth())

    assert receipt.case_number == "HK20261128000001" and receipt.accepted_at
    assert executor.asked == []
    (headers,) = script.headers
    assert headers["SOAPAction"] == f'"{NS}#SubmitBirthRegistration"'
    assert headers["Content-Type"] == "text/xml; charset=utf-8"
    assert headers["Accept-Encoding"] == "identity"


async def test_calls_share_one_session_within_the_concurrency(
    police: tuple[str, Police], connect: Callable[..., SoapConnector]
) -> None:
    url, script = police
    soap = connect(url, concurrency=2)
    for _ in range(3):
        await soap.send(_birth())
    assert len(script.peers) == 1  # one kept-alive connection, not one per call
    await asyncio.gather(*(soap.send(_birth()) for _ in range(8)))
    assert 1 <= len(script.peers) <= 2
    assert len(script.headers) == 11


async def test_close_closes_the_session(
    police: tuple[str, Police], connect: Callable[..., SoapConnector]
) -> None:
    url, _ = police
    soap = connect(url)
    await soap.send(_birth())
    session = soap._session
    assert session is not None and not session.closed
    await soap.close()
    assert session.closed and soap._session is None
    await soap.close()  # twice is harmless (the runtime may close on two paths)


@pytest.mark.parametrize(
    ("faultcode", "error", "code"),
    [
        ("soap:Client", Permanent, "Client"),
        ("soap:Client.Authentication", Permanent, "Client.Authentication"),
        ("soap:VersionMismatch", Permanent, "VersionMismatch"),
        ("soap:MustUnderstand", Permanent, "MustUnderstand"),
        ("soap:Server", Retryable, "Server"),
        ("soap:Server.Busy", Retryable, "Server.Busy"),
    ],
)
async def test_a_soap11_fault_is_sorted_by_its_faultcode(
    police: tuple[str, Police],
    connect: Callable[..., SoapConnector],
    faultcode: str,
    error: type[Exception],
    code: str,
) -> None:
    url, script = police
    script.status, script.body = 500, FAULT.format(code=faultcode).encode()
    with pytest.raises(error) as caught:
        await connect(url).send(_birth())
    assert caught.value.code == code  # type: ignore[attr-defined]
    assert "refused by the test" in str(caught.value)


async def test_a_fault_in_a_200_is_still_a_fault(
    police: tuple[str, Police], connect: Callable[..., SoapConnector]
) -> None:
    url, script = police
    script.body = FAULT.format(code="soap:Client").encode()
    with pytest.raises(Permanent) as caught:
        await connect(url).send(_birth())
    assert caught.value.code == "Client"


@pytest.fixture
async def raw_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """Answers each connection with the bytes set in the list, then hangs up."""
    reply: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(reply[0])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hukou", reply
    server.close()
    await server.wait_closed()


async def test_an_answer_that_is_not_http_is_retryable(
    raw_server: tuple[str, list[bytes]], connect: Callable[..., SoapConnector]
) -> None:
    url, reply = raw_server
    reply.append(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")  # a port that is something else for now
    with pytest.raises(Retryable) as caught:
        await connect(url).send(_birth())
    assert caught.value.code == "unreachable"


async def test_a_redirect_loop_is_permanent(
    raw_server: tuple[str, list[bytes]], connect: Callable[..., SoapConnector]
) -> None:
    url, reply = raw_server
    reply.append(
        f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {url}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    with pytest.raises(Permanent) as caught:
        await connect(url).send(_birth())
    assert caught.value.code == "http" and "redirect" in caught.value.detail


def test_zeeps_transport_posts_nothing() -> None:
    """Answers are read by the connector under the XML policy; a POST through zeep's
    transport would skip that, so it is refused outright."""
    transport = ContractTransport(system="hukou", wsdl="/nonexistent/hukou.wsdl", timeout=1)
    with pytest.raises(RuntimeError, match="only loads the contract"):
        transport.post("http://127.0.0.1:9/hukou", b"<x/>", {})
