"""Fixtures of the fault-injection suite: a ``World`` on SQLite, or on both stores."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.faults.harness import World
from tests.support.proxy import TcpProxy
from tests.support.rabbit import Rabbit

BROKER_RESTART_ENV = "GATEWAY_TEST_BROKER_RESTART"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "broker_restart: restarts the shared RabbitMQ node (rabbitmqctl stop_app/start_app); "
        f"every user of the broker sees it. Opt-in: {BROKER_RESTART_ENV}=1 (CI sets it)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The broker-restart case stops a developer's RabbitMQ node: run only when asked."""
    if os.environ.get(BROKER_RESTART_ENV) == "1":
        return
    opt_in = pytest.mark.skip(
        reason=f"restarts the shared RabbitMQ node: opt in with {BROKER_RESTART_ENV}=1 "
        "(.ci/run does)"
    )
    for item in items:
        if "broker_restart" in item.keywords:
            item.add_marker(opt_in)


async def _world(
    rabbit: Rabbit, vhost: str, tmp_path: Path, database_url: str
) -> AsyncIterator[World]:
    if shutil.which("rabbitmqctl") is None:
        pytest.fail(
            "the fault cases read queue depths (ready + unacked) with rabbitmqctl, which is not "
            f"on PATH: run them on the broker's host (vhost {vhost!r})"
        )
    params = rabbit.params
    proxy = TcpProxy(params.host, params.port)
    await proxy.start()
    world = World(tmp_path, rabbit, vhost, database_url, proxy=proxy)
    try:
        async with aiohttp.ClientSession() as session:
            world.session = session
            yield world
    finally:
        await world.close()
        await proxy.close()


@pytest.fixture
async def world(
    rabbit: Rabbit, amqp_vhost: tuple[str, str], tmp_path: Path
) -> AsyncIterator[World]:
    """A world on SQLite: for cases where the store's dialect does not matter."""
    async for w in _world(rabbit, amqp_vhost[0], tmp_path, f"sqlite:///{tmp_path / 'gw.db'}"):
        yield w


@pytest.fixture
async def world_on(
    rabbit: Rabbit, amqp_vhost: tuple[str, str], tmp_path: Path, database_url: str
) -> AsyncIterator[World]:
    """A world once on SQLite and once on PostgreSQL (``database_url`` is parametrised)."""
    async for w in _world(rabbit, amqp_vhost[0], tmp_path, database_url):
        yield w
