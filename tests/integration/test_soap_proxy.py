"""The SOAP connector posts through the forward proxy the environment names (HTTP_PROXY,
with its credentials), unless NO_PROXY exempts the police host: a real local server plays
the proxy and answers the receipt itself."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from connectors.soap import SoapConnector
from gateway.errors import Retryable
from gateway.settings import SystemConfig
from tests.integration.test_hukou import _birth
from tests.integration.test_soap_http import RECEIPT

POLICE = "http://police.example.invalid:8081/hukou"  # never resolved: only the proxy knows it


@dataclass
class Seen:
    targets: list[str] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        seen.targets.append(str(request.url))
        seen.auth.append(request.headers.get("Proxy-Authorization", ""))
        return web.Response(body=RECEIPT, content_type="text/xml")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def test_the_post_goes_through_the_proxy_with_its_credentials(
    proxy: tuple[str, Seen], monkeypatch: pytest.MonkeyPatch
) -> None:
    where, seen = proxy
    monkeypatch.setenv("HTTP_PROXY", f"http://gw:s3cret@{where}")
    soap = SoapConnector("hukou", SystemConfig(kind="soap", url=POLICE))
    try:
        receipt = await soap.send(_birth())
    finally:
        await soap.close()
    assert receipt.case_number == "HK20261128000001"
    assert seen.targets == [POLICE]
    assert seen.auth == ["Basic " + base64.b64encode(b"gw:s3cret").decode()]


async def test_no_proxy_exempts_the_police_host(
    proxy: tuple[str, Seen], monkeypatch: pytest.MonkeyPatch
) -> None:
    where, seen = proxy
    monkeypatch.setenv("HTTP_PROXY", f"http://{where}")
    monkeypatch.setenv("NO_PROXY", "localhost,police.example.invalid")
    soap = SoapConnector("hukou", SystemConfig(kind="soap", url=POLICE, timeout_seconds=5))
    try:
        with pytest.raises(Retryable):  # straight to a host that does not resolve
            await soap.send(_birth())
    finally:
        await soap.close()
    assert seen.targets == []
