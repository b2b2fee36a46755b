"""The database seam under the store, and the schema migrations that run over it.

    Database.run(work) ─────▶ Tx.execute / Tx.fetchone / Tx.fetchall
    Database.transaction() ─┘
        ├── SqliteDatabase    gateway/store/sqlite.py
        └── PostgresDatabase  gateway/store/postgres.py

``run(work)`` is the hot path: ``work`` is an ``async def`` over one ``Tx`` that awaits
nothing else, so SQLite can drive the whole transaction on its worker thread in one hop
and group the works of concurrent callers into one commit. ``transaction()`` suits code
that must await other things between statements.

SQL is written with ``?`` placeholders; the PostgreSQL seam turns them into ``%s``. What
differs between the dialects is data on ``Dialect``: two type tokens in the migration
files, the row-lock suffixes, and the statement that serialises migrations. Each seam
translates its driver's exceptions into ``StoreUnavailable`` (try again) or ``Permanent``
(a constraint or SQL error: a bug, retrying cannot help).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, TypeVar

from gateway.errors import ConfigurationError

Row = tuple[Any, ...]
Params = Sequence[object]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str  # "sqlite" | "postgresql"
    tokens: Mapping[str, str]  # {{TOKEN}} substitutions in migration files
    lock_rows: str  # appended to a SELECT whose rows the transaction will change
    skip_locked: str  # appended to a SELECT that claims rows other workers may hold
    migration_lock: str | None  # run first in the migration transaction, if needed


class Tx(Protocol):
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...


T = TypeVar("T")
Work = Callable[[Tx], Coroutine[Any, Any, T]]
"""One transaction's statements: an ``async def`` that awaits only its ``Tx``."""


class Database(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        ...

    async def run(self, work: Work[T]) -> T:
        """``work`` in one transaction: committed when it returns, rolled back (its own
        statements only) when it raises; its result or its exception."""
        ...

    async def close(self) -> None: ...


# --- migrations ---------------------------------------------------------------------------

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_TOKEN = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, dialect: Dialect) -> list[str]:
        """The file's statements, tokens substituted; ``--`` comment lines dropped."""

        def substitute(match: re.Match[str]) -> str:
            try:
                return dialect.tokens[match[1]]
            except KeyError:
                raise ConfigurationError(
                    f"migration {self.name} uses unknown token {match[0]}", system="store"
                ) from None

        lines = [ln for ln in self.sql.splitlines() if not ln.lstrip().startswith("--")]
        text = _TOKEN.sub(substitute, "\n".join(lines))
        return [s.strip() for s in text.split(";") if s.strip()]


def load_migrations() -> list[Migration]:
    """The packaged ``migrations/NNNN_name.sql`` files, in version order."""
    folder = resources.files("gateway.store").joinpath("migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match[1])
        if version in found:
            raise ConfigurationError(
                f"two migrations share version {version}: {found[version].name}, {entry.name}",
                system="store",
            )
        found[version] = Migration(version, entry.name, entry.read_text("utf-8"))
    return [found[v] for v in sorted(found)]


async def apply_migrations(db: Database, now: float) -> list[int]:
    """Apply the migrations this database lacks, in one transaction; the versions applied.

    Safe when several processes start at once: PostgreSQL takes a transaction-scoped
    advisory lock first, SQLite's ``BEGIN IMMEDIATE`` already holds the write lock.
    """
    migrations = load_migrations()
    async with db.transaction() as tx:
        if db.dialect.migration_lock:
            await tx.execute(db.dialect.migration_lock)
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        done = {int(r[0]) for r in await tx.fetchall("SELECT version FROM schema_migrations")}
        known = max((m.version for m in migrations), default=0)
        if done and max(done) > known:
            raise ConfigurationError(
                f"the database schema is at version {max(done)}, newer than this gateway's "
                f"{known}: run a gateway release that knows it",
                system="store",
            )
        applied: list[int] = []
        for migration in migrations:
            if migration.version in done:
                continue
            for statement in migration.statements(db.dialect):
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (migration.version, now),
            )
            applied.append(migration.version)
    return applied
