"""The gateway's store: one ``Store`` Protocol, opened from a database URL.

    sqlite:///relative/file.db   sqlite:////absolute/file.db   sqlite:///:memory:
    postgresql://user@host:5432/dbname   (or postgres://…; any libpq URI parameters)

``open_store`` connects and applies the pending migrations before it returns.
"""

from __future__ import annotations

import time

from gateway.errors import ConfigurationError
from gateway.store.base import Store
from gateway.store.operators import OperatorStore, operators_of
from gateway.store.postgres import PostgresDatabase
from gateway.store.records import (
    ApplicationRecord,
    ApplicationStatus,
    Claim,
    DeadLetter,
    DeadLetterRecord,
    Fresh,
    InFlight,
    Mismatch,
    NewApplication,
    Replay,
)
from gateway.store.sql import Database, SqlStore, apply_migrations
from gateway.store.sqlite import SqliteDatabase

__all__ = [
    "ApplicationRecord",
    "ApplicationStatus",
    "Claim",
    "DeadLetter",
    "DeadLetterRecord",
    "Fresh",
    "InFlight",
    "Mismatch",
    "NewApplication",
    "OperatorStore",
    "Replay",
    "Store",
    "open_store",
    "operators_of",
]

_SQLITE_PREFIX = "sqlite:///"
_ACCEPTED = (
    "sqlite:///path/to/file.db (sqlite:///:memory: for tests) or postgresql://user@host:port/dbname"
)


async def open_store(url: str) -> Store:
    """The store at ``url``, its schema migrated to this release's version.

    Raises ``ConfigurationError`` for a URL this gateway cannot use and
    ``StoreUnavailable`` when the database cannot be reached.
    """
    scheme = url.partition(":")[0].lower() if ":" in url else ""
    db: Database
    if scheme == "sqlite":
        if not url.startswith(_SQLITE_PREFIX) or len(url) == len(_SQLITE_PREFIX):
            raise ConfigurationError(
                f"database URL with scheme 'sqlite' needs a path: use {_ACCEPTED}",
                code="database_url",
            )
        db = await SqliteDatabase.open(url[len(_SQLITE_PREFIX) :])
    elif scheme in ("postgresql", "postgres"):
        db = await PostgresDatabase.open(url)
    else:
        raise ConfigurationError(
            f"unsupported database URL scheme {scheme or '(none)'!r}: use {_ACCEPTED}",
            code="database_url",
        )
    try:
        await apply_migrations(db, now=time.time())
    except BaseException:
        await db.close()
        raise
    return SqlStore(db)
