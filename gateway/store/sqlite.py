"""SQLite behind the ``Database`` seam: stdlib ``sqlite3``, off the event loop.

One connection lives on one dedicated worker thread; every call hops there, so a slow
statement or a wait for another process's write lock never stalls the event loop. An
``asyncio.Lock`` lets one transaction run at a time in this process, and each transaction
starts with ``BEGIN IMMEDIATE`` so several processes may share the file (WAL mode; a
writer waits up to ``busy_timeout`` for the others, then the caller gets
``StoreUnavailable``).

Two ways in. ``transaction()`` hops to the thread for every statement (and for BEGIN and
COMMIT). ``run(work)`` is the hot path: ``work`` is a coroutine function over a ``Tx`` that
awaits nothing but that ``Tx``; on the worker thread its calls complete at once, so the
whole transaction is driven there in one hop. Works submitted while the thread is busy are
grouped (group commit): the next hop runs every one of them, each inside a savepoint of one
``BEGIN IMMEDIATE … COMMIT``, so one that fails rolls back only its own statements, and the
answers come back to the loop in one wake-up. A failed COMMIT fails every work of the group
(none of them happened).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import Permanent, StoreUnavailable
from gateway.store.database import Dialect, Params, Row, Work

SQLITE = Dialect(
    name="sqlite",
    tokens={"BYTES": "BLOB", "SERIAL_ID": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    lock_rows="",  # BEGIN IMMEDIATE already holds the database's write lock
    skip_locked="",
    migration_lock=None,
)

T = TypeVar("T")
MAX_GROUP = 256  # works per group commit: bounds how long one hop holds the write lock
STATEMENT_CACHE = 256  # prepared statements kept per connection (sqlite3's default is 128)


class _Job:
    """One ``run`` call waiting for the worker: its work, its future, its context."""

    __slots__ = ("context", "future", "work")

    def __init__(self, work: Work[Any], future: asyncio.Future[Any]) -> None:
        self.work = work
        self.future = future
        self.context = contextvars.copy_context()  # structlog's bound values, for its logs


def _translate(exc: sqlite3.Error, during: str) -> Exception:
    """sqlite3's errors, grouped by what the caller should do."""
    detail = f"sqlite {during}: {exc}"
    if isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError):
        # locked beyond busy_timeout, cannot open the file, disk I/O error, closed
        return StoreUnavailable(detail, system="store", code=type(exc).__name__)
    # IntegrityError, ProgrammingError, DataError …: a bug or a broken invariant
    return Permanent(detail, system="store", code=type(exc).__name__)


class SqliteDatabase:
    def __init__(self, path: str, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-sqlite")
        self._lock = asyncio.Lock()
        self._conn: sqlite3.Connection | None = None
        self._queued: list[_Job] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: str, *, busy_timeout: float = 5.0) -> SqliteDatabase:
        """Open the file at ``path`` (creating it and its folder), or ``":memory:"``."""
        db = cls(path, busy_timeout)
        try:
            await db._call(db._connect, "open")
        except BaseException:
            db._executor.shutdown(wait=False)
            raise
        return db

    @property
    def dialect(self) -> Dialect:
        return SQLITE

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTx]:
        async with self._lock:
            try:
                await self._call(self._begin, "begin")
                yield _SqliteTx(self)
                await self._call(self._commit, "commit")
            except BaseException:
                # Queued behind whatever the worker is still running (a BEGIN this task was
                # cancelled while awaiting, say), so the write lock is never left held.
                with contextlib.suppress(RuntimeError):  # unless the store is closed
                    rollback = asyncio.get_running_loop().run_in_executor(
                        self._executor, self._rollback
                    )
                    await asyncio.shield(rollback)
                raise

    async def run(self, work: Work[T]) -> T:
        """``work`` in one transaction, driven on the worker thread (see the module doc)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queued.append(_Job(work, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._queued:
            async with self._lock:
                jobs = [j for j in self._queued[:MAX_GROUP] if not j.future.cancelled()]
                del self._queued[:MAX_GROUP]
                if not jobs:
                    continue
                try:
                    outcomes = await self._call(
                        functools.partial(self._run_group, jobs), "transaction"
                    )
                except asyncio.CancelledError:
                    for job in jobs:
                        job.future.cancel()
                    raise
                except Exception as exc:  # handed to every caller of the group
                    outcomes = [(False, exc)] * len(jobs)
            for job, (ok, value) in zip(jobs, outcomes, strict=True):
                if job.future.done():  # the caller was cancelled meanwhile
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    async def close(self) -> None:
        """Close after the running transaction, if any; later calls get StoreUnavailable."""
        async with self._lock:
            if self._conn is not None:
                await self._call(self._close, "close")
            self._executor.shutdown(wait=False)

    async def _call(self, fn: Callable[[], T], during: str) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except sqlite3.Error as exc:
            raise _translate(exc, during) from exc
        except OSError as exc:  # the database's folder could not be created
            raise StoreUnavailable(f"sqlite {during}: {exc}", system="store") from exc
        except RuntimeError as exc:  # the executor was shut down: the store is closed
            raise StoreUnavailable(f"sqlite {during}: {exc}", system="store") from exc

    # -- everything below runs on the worker thread ------------------------------------

    def _connect(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,  # sqlite3_busy_timeout: wait for other writers
            isolation_level=None,  # we issue BEGIN / COMMIT ourselves
            check_same_thread=True,  # only this worker thread ever touches it
            cached_statements=STATEMENT_CACHE,
        )
        try:
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (it stays so). While other connections open a new file
        SQLite may answer "locked" at once, bypassing the busy handler: retry until the
        busy timeout instead."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)  # on the worker thread, never on the event loop

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.InterfaceError("the store is closed")
        return self._conn

    def _begin(self) -> None:
        conn = self._connection()
        if conn.in_transaction:  # a rollback after cancellation did not get to run
            conn.rollback()
        conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._connection().execute("COMMIT")

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            # On failure the next _begin retries; the original error is what matters.
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _run_group(self, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        """Every job's work in one transaction, each in a savepoint when there are several;
        per job (True, result) or (False, exception). Raises only when the group as a whole
        failed (BEGIN, a savepoint, COMMIT): then nothing of it was committed."""
        conn = self._connection()
        tx = _DirectTx(conn)
        alone = len(jobs) == 1
        outcomes: list[tuple[bool, Any]] = []
        self._begin()
        try:
            for job in jobs:
                if job.future.cancelled():  # its caller gave up while BEGIN waited: skip it
                    outcomes.append((False, None))
                    continue
                if not alone:
                    conn.execute("SAVEPOINT work")
                try:
                    outcomes.append((True, job.context.run(_drive, job.work(tx))))
                except Exception as exc:  # the caller's, raised in its task
                    if isinstance(exc, sqlite3.Error):
                        exc = _translate(exc, "transaction")
                    outcomes.append((False, exc))
                    conn.execute("ROLLBACK" if alone else "ROLLBACK TO work")
                if not alone:
                    conn.execute("RELEASE work")
            if conn.in_transaction:
                conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return outcomes

    def _execute(self, sql: str, params: Params) -> int:
        return self._connection().execute(sql, tuple(params)).rowcount

    def _fetchone(self, sql: str, params: Params) -> Row | None:
        row: Row | None = self._connection().execute(sql, tuple(params)).fetchone()
        return row

    def _fetchall(self, sql: str, params: Params) -> list[Row]:
        rows: list[Row] = self._connection().execute(sql, tuple(params)).fetchall()
        return rows


class _SqliteTx:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._db._call(functools.partial(self._db._execute, sql, params), "execute")

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self._db._call(functools.partial(self._db._fetchone, sql, params), "query")

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._db._call(functools.partial(self._db._fetchall, sql, params), "query")


class _DirectTx:
    """The ``Tx`` of ``run``: on the worker thread, every call completes at once."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, tuple(params)).fetchone()
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        rows: list[Row] = self._conn.execute(sql, tuple(params)).fetchall()
        return rows


def _drive(coroutine: Any) -> Any:
    """Run a coroutine that never suspends to its end, here and now."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise RuntimeError("a store work awaited something other than its transaction")
