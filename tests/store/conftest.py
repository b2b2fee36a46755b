"""The ``store`` fixture: every shared test runs against SQLite and PostgreSQL.

The databases come from ``database_url`` in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest

from gateway.store import Store, open_store
from gateway.store.sql import Params, SqlStore


@pytest.fixture
def store_url(database_url: str) -> str:
    """The URL of an empty database, once per dialect (see ``database_url``)."""
    return database_url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


Query = Callable[[Store, str], Awaitable[list[tuple[Any, ...]]]]


async def _query(store: Store, statement: str, params: Params = ()) -> list[tuple[Any, ...]]:
    async with cast(SqlStore, store).database.transaction() as tx:
        if statement.lstrip().upper().startswith("SELECT"):
            return await tx.fetchall(statement, params)
        await tx.execute(statement, params)
        return []


@pytest.fixture
def query() -> Query:
    """Look under the Protocol: run one statement on a store's own database."""
    return _query
