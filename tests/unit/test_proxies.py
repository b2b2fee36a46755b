"""Which forward proxy a connector's session uses: the scheme's ``*_PROXY`` unless
``NO_PROXY`` exempts the department's host."""

from __future__ import annotations

import pytest
from yarl import URL

from connectors.proxies import env_proxy


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_no_proxy_named_goes_direct() -> None:
    assert env_proxy("http://police.local:8081/hukou") is None


def test_each_scheme_takes_its_own_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://gw:pw@proxy.local:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://tls-proxy.local:3128")
    assert env_proxy("http://police.local:8081/hukou") == URL("http://gw:pw@proxy.local:3128")
    assert env_proxy(URL("https://platform.local/v1")) == URL("http://tls-proxy.local:3128")


def test_no_proxy_exempts_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.local:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.gov.local")
    assert env_proxy("http://police.gov.local/hukou") is None
    assert env_proxy("http://police.elsewhere/hukou") == URL("http://proxy.local:3128")
