"""Fixtures of the fault-injection suite: a ``World`` on SQLite, or on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.faults.harness import World
from tests.support.proxy import TcpProxy
from tests.support.rabbit import Rabbit


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "broker_restart: restarts the shared RabbitMQ node (rabbitmqctl stop_app/start_app); "
        "every user of the broker sees it. Deselect with -m 'not broker_restart'",
    )


async def _world(
    rabbit: Rabbit, vhost: str, tmp_path: Path, database_url: str
) -> AsyncIterator[World]:
    if not vhost:
        pytest.skip("the fault cases read queue depths with rabbitmqctl: need a vhost of their own")
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
