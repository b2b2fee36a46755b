"""Fixtures shared by the whole suite: the real broker (a private vhost) and settings."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from gateway.logs import configure_logging
from gateway.runtime import Gateway
from gateway.settings import PortalConfig, Settings
from tests.support.postgres import fresh_schema
from tests.support.proxy import TcpProxy
from tests.support.rabbit import Rabbit, create_vhost, rabbitmqctl, with_port

BASE_AMQP_URL = os.environ.get("GATEWAY_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
WINDOW_SECRET = "window-secret-0123456789"
ONLINE_SECRET = "online-secret-0123456789"
ONLINE_OLD_SECRET = "online-old-secret-0123456789"
INTAKE_ROLES = ("intake", "relay", "deadletters")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, once per dialect. PostgreSQL tests get a schema of their own in
    ``GATEWAY_TEST_POSTGRES_URL``; deselect them with ``-m "not postgres"``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gw.sqlite3'}"
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture(scope="session")
def amqp_vhost() -> Iterator[tuple[str, str]]:
    """(vhost, url) of a vhost made for this test session, deleted at the end."""
    if url := os.environ.get("GATEWAY_TEST_AMQP_URL"):
        yield vhost_of(url), url  # the vhost it names: the tests fill and empty it
        return
    vhost, url = create_vhost(BASE_AMQP_URL)
    try:
        yield vhost, url
    finally:
        rabbitmqctl("delete_vhost", vhost)


def vhost_of(url: str) -> str:
    """The vhost an AMQP URL names (``/`` when it names none), as rabbitmqctl spells it."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


@pytest.fixture
def rabbit(amqp_vhost: tuple[str, str]) -> Rabbit:
    """The session vhost, emptied of the gateway's queues before the test."""
    r = Rabbit(amqp_vhost[1])
    r.reset()
    return r


@pytest.fixture
async def proxy(rabbit: Rabbit) -> AsyncIterator[TcpProxy]:
    params = rabbit.params
    p = TcpProxy(params.host, params.port)
    await p.start()
    yield p
    await p.close()


def make_settings(amqp_url: str, database_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "http_port": 0,
        "log_format": "json",
        "portals": {
            "window": PortalConfig(secret=WINDOW_SECRET, amqp_user="guest"),  # type: ignore[arg-type]
            "online": PortalConfig(
                secret=ONLINE_SECRET,  # type: ignore[arg-type]
                previous_secret=ONLINE_OLD_SECRET,
            ),  # type: ignore[arg-type]
        },
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings_for(rabbit: Rabbit, tmp_path: Path) -> Callable[..., Settings]:
    def build(
        database_url: str | None = None, *, via: TcpProxy | None = None, **overrides: Any
    ) -> Settings:
        url = with_port(rabbit.url, via.port) if via is not None else rabbit.url
        return make_settings(
            url, database_url or f"sqlite:///{tmp_path / 'gw.sqlite3'}", **overrides
        )

    return build


@pytest.fixture
async def gateway(
    settings_for: Callable[..., Settings], database_url: str
) -> AsyncIterator[Gateway]:
    """A running gateway's intake side (intake, relay, dead letters) on the test vhost, once
    per store dialect: nothing consumes gw.accepted, so tests can read what intake sent."""
    gw = Gateway(settings_for(database_url), roles=INTAKE_ROLES)
    await gw.start()
    yield gw
    await gw.stop(drain_seconds=2)


@pytest.fixture
def log_capture() -> Iterator[io.StringIO]:
    """Every log line (structlog and stdlib) rendered as in deployment, into a buffer."""
    buffer = io.StringIO()
    handler = configure_logging("json", stream=buffer, level=logging.DEBUG)
    yield buffer
    logging.getLogger().removeHandler(handler)
