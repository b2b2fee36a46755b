"""Opening a store: URL schemes and migrations, on both dialects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from gateway.errors import ConfigurationError
from gateway.store import Store, open_store
from gateway.store.sql import Migration, SqlStore, apply_migrations, load_migrations
from gateway.store.sqlite import SQLITE

Query = Callable[[Store, str], Awaitable[list[tuple[Any, ...]]]]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def expected_versions() -> list[tuple[int]]:
    return [(m.version,) for m in load_migrations()]


async def test_migrations_are_recorded_once(store_url: str, query: Query) -> None:
    first = await open_store(store_url)
    await first.close()
    second = await open_store(store_url)
    try:
        assert await apply_migrations(cast(SqlStore, second).database, now=0) == []
        versions = await query(second, "SELECT version FROM schema_migrations ORDER BY version")
        assert versions == expected_versions()
        assert versions[0] == (1,)
    finally:
        await second.close()


async def test_processes_starting_together_migrate_once(store_url: str, query: Query) -> None:
    stores = await asyncio.gather(*(open_store(store_url) for _ in range(4)))
    try:
        for store in stores:
            await store.ping()
        versions = await query(stores[0], "SELECT version FROM schema_migrations")
        assert sorted(versions) == expected_versions()
    finally:
        for store in stores:
            await store.close()


async def test_schema_newer_than_the_code_is_refused(store_url: str, query: Query) -> None:
    store = await open_store(store_url)
    await query(store, "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)")
    await store.close()
    with pytest.raises(ConfigurationError, match="9999"):
        await open_store(store_url)


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("mysql://gateway:s3cret@db/gateway", "'mysql'"),
        ("postgresql+psycopg://postgres@localhost/test", "'postgresql+psycopg'"),
        ("gateway.db", "(none)"),
    ],
)
async def test_unknown_scheme_is_a_configuration_error(url: str, scheme: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        await open_store(url)
    message = str(caught.value)
    assert scheme in message
    assert "sqlite:///" in message
    assert "postgresql://" in message
    assert "s3cret" not in message


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://host/file.db", "sqlite:relative.db"])
async def test_sqlite_url_needs_three_slashes_and_a_path(url: str) -> None:
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        await open_store(url)


async def test_sqlite_memory_and_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    memory = await open_store("sqlite:///:memory:")
    await memory.ping()
    await memory.close()
    assert names(tmp_path) == []
    relative = await open_store("sqlite:///var/gateway.sqlite3")  # the settings' default
    await relative.close()
    assert "gateway.sqlite3" in names(tmp_path / "var")


def test_dialect_tokens_are_substituted_and_unknown_ones_refused() -> None:
    migration = Migration(
        7, "0007_x.sql", "-- a comment; with a semicolon\nCREATE TABLE t (b {{BYTES}});\n"
    )
    assert migration.statements(SQLITE) == ["CREATE TABLE t (b BLOB)"]
    broken = Migration(8, "0008_y.sql", "CREATE TABLE t (b {{BLOB}});")
    with pytest.raises(ConfigurationError, match=r"0008_y\.sql.*\{\{BLOB\}\}"):
        broken.statements(SQLITE)
