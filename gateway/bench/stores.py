"""Throw-away stores for the bench: SQLite in a temporary file, PostgreSQL in a fresh schema.

The PostgreSQL schema is created in the database at the given URL, handed to ``open_store``
through the URL's ``search_path`` and dropped with everything in it afterwards, so the bench
never touches the gateway's own tables.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from gateway.store import Store, open_store


@asynccontextmanager
async def sqlite_store(folder: Path | None = None) -> AsyncIterator[Store]:
    with tempfile.TemporaryDirectory(prefix="gateway-bench-", dir=folder) as tmp:
        store = await open_store(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        try:
            yield store
        finally:
            await store.close()


@asynccontextmanager
async def postgres_store(url: str) -> AsyncIterator[Store]:
    """A store in schema ``gw_bench_<random>`` of the database at ``url``, dropped at exit.

    Raises ``psycopg.OperationalError`` when the database cannot be reached.
    """
    async with postgres_schema(url) as schema_url:
        store = await open_store(schema_url)
        try:
            yield store
        finally:
            await store.close()


@asynccontextmanager
async def postgres_schema(url: str) -> AsyncIterator[str]:
    """The URL of a fresh schema ``gw_bench_<random>`` in the database at ``url`` (through
    ``search_path``), dropped with everything in it at exit."""
    schema = f"gw_bench_{uuid.uuid4().hex[:12]}"
    admin = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
    try:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield with_search_path(url, schema)
        finally:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    finally:
        await admin.close()


async def postgres_unreachable(url: str) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used (None when a connection opens)."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=5)
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    await conn.close()
    return None


def without_password(url: str) -> str:
    """``url`` fit to print: its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query), ("options", f"-c search_path={schema}")]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
