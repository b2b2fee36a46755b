"""The one ``Store`` implementation, written once over the database seam (``database.py``).

Every method is one ``Database.run(work)``: on SQLite one hop to the store's thread, grouped
with concurrent callers' works into one commit. What differs between the dialects is data
on ``Dialect``; nothing here catches a driver's exception (the seams translate them).
"""

# ruff: noqa: S608 -- statements here are assembled only from this module's literals and
# ``Dialect`` constants; every value is a bound ``?`` parameter, never text in the SQL.

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.errors import StoreUnavailable
from gateway.store.base import Answer, Nonce, NonceReused
from gateway.store.database import (
    Database,
    Dialect,
    Migration,
    Params,
    Row,
    Tx,
    Work,
    apply_migrations,
    load_migrations,
)
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

if TYPE_CHECKING:
    from gateway.store.cases import CaseStore

__all__ = [  # the seam's names stay importable from here, where they used to live
    "Database",
    "Dialect",
    "Migration",
    "Params",
    "Row",
    "SqlStore",
    "Tx",
    "Work",
    "apply_migrations",
    "load_migrations",
]

NONCE_PURGE_INTERVAL = 60.0  # seconds between opportunistic purges of expired nonces

# --- the store ----------------------------------------------------------------------------

_APP_COLUMNS = (
    "id, portal_id, idempotency_key, channel, matter, schema_version, status, "
    "envelope_json, created_at, updated_at, accepted_at, version"
)
_LETTER_COLUMNS = (
    "message_id, exchange, routing_key, headers_json, body, reason, error_kind, system, "
    "matter, application_id, portal_id, attempts, first_failed_at, last_failed_at"
)
_RECEIVED = ApplicationStatus.RECEIVED.value


def _application(row: Row) -> ApplicationRecord:
    return ApplicationRecord(
        id=row[0],
        portal_id=row[1],
        idempotency_key=row[2],
        channel=row[3],
        matter=row[4],
        schema_version=row[5],
        status=ApplicationStatus(row[6]),
        envelope_json=row[7],
        created_at=float(row[8]),
        updated_at=float(row[9]),
        accepted_at=None if row[10] is None else float(row[10]),
        version=int(row[11]),
    )


def _dead_letter(row: Row) -> DeadLetterRecord:
    letter = DeadLetter(
        message_id=row[1],
        exchange=row[2],
        routing_key=row[3],
        headers_json=row[4],
        body=bytes(row[5]),
        reason=row[6],
        error_kind=row[7],
        system=row[8],
        matter=row[9],
        application_id=row[10],
        portal_id=row[11],
        attempts=int(row[12]),
        first_failed_at=float(row[13]),
        last_failed_at=float(row[14]),
    )
    return DeadLetterRecord(id=int(row[0]), letter=letter, stored_at=float(row[15]))


async def _mark_accepted(tx: Tx, application_id: str, now: float) -> bool:
    changed = await tx.execute(
        "UPDATE applications SET status = ?, accepted_at = ?, updated_at = ?, "
        "version = version + 1, relay_lease_until = NULL WHERE id = ? AND status = ?",
        (ApplicationStatus.ACCEPTED.value, float(now), float(now), application_id, _RECEIVED),
    )
    return changed == 1


async def _complete(
    tx: Tx, portal_id: str, key: str, status_code: int, body: bytes, content_type: str
) -> None:
    await tx.execute(
        "UPDATE idempotency SET status_code = ?, response_body = ?, content_type = ?, "
        "lease_until = NULL WHERE portal_id = ? AND key = ?",
        (status_code, bytes(body), content_type, portal_id, key),
    )


async def _remember_nonce(tx: Tx, portal_id: str, nonce: Nonce, purge: bool) -> bool:
    """Record the nonce; False when this portal used it within its ttl."""
    if purge:
        await tx.execute("DELETE FROM nonces WHERE expires_at <= ?", (nonce.now,))
    # A row comes back only when it is new or its earlier use has expired.
    changed = await tx.execute(
        "INSERT INTO nonces (portal_id, nonce, expires_at) VALUES (?, ?, ?) "
        "ON CONFLICT (portal_id, nonce) DO UPDATE SET expires_at = excluded.expires_at "
        "WHERE nonces.expires_at <= ?",
        (portal_id, nonce.value, float(nonce.now + nonce.ttl), float(nonce.now)),
    )
    return changed == 1


async def _claim(
    tx: Tx,
    dialect: Dialect,
    portal_id: str,
    key: str,
    fingerprint: str,
    now: float,
    lease_seconds: float,
    application_id: str | None = None,
) -> Claim:
    """``application_id``: the application a fresh claim leads to, written with the key
    when the key has none yet (the caller creates it in the same transaction), rather than
    by a statement of its own. ``Fresh`` carries the application the key named before."""
    lease_until = float(now + lease_seconds)
    inserted = await tx.execute(
        "INSERT INTO idempotency (portal_id, key, fingerprint, lease_until, created_at, "
        "application_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (portal_id, key) DO NOTHING",
        (portal_id, key, fingerprint, lease_until, float(now), application_id),
    )
    if inserted:
        return Fresh(None)
    row = await tx.fetchone(
        "SELECT fingerprint, application_id, status_code, response_body, content_type, "
        "lease_until FROM idempotency WHERE portal_id = ? AND key = ?" + dialect.lock_rows,
        (portal_id, key),
    )
    if row is None:  # only if a purge removed it between the two statements
        raise StoreUnavailable("idempotency record vanished during claim", system="store")
    stored_fingerprint, stored_application_id, status_code, body, content_type, held = row
    if stored_fingerprint != fingerprint:
        return Mismatch()
    if status_code is not None:
        return Replay(int(status_code), bytes(body), content_type, stored_application_id)
    if held is not None and float(held) > now:
        return InFlight(float(held))
    await tx.execute(
        "UPDATE idempotency SET lease_until = ?, application_id = COALESCE(application_id, ?) "
        "WHERE portal_id = ? AND key = ?",
        (lease_until, application_id, portal_id, key),
    )
    return Fresh(stored_application_id)


async def _create(tx: Tx, app: NewApplication, *, link_key: bool = True) -> ApplicationRecord:
    """Insert the application; ``link_key``: also point its idempotency record at it (not
    needed when the key was claimed with the application's id in this transaction)."""
    await tx.execute(
        "INSERT INTO applications (id, portal_id, idempotency_key, channel, matter, "
        "schema_version, status, envelope_json, fingerprint, created_at, updated_at, "
        "version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        (
            app.id,
            app.portal_id,
            app.idempotency_key,
            app.channel,
            app.matter,
            app.schema_version,
            _RECEIVED,
            app.envelope_json,
            app.fingerprint,
            float(app.created_at),
            float(app.created_at),
        ),
    )
    if link_key:
        await tx.execute(
            "UPDATE idempotency SET application_id = ? WHERE portal_id = ? AND key = ?",
            (app.id, app.portal_id, app.idempotency_key),
        )
    return ApplicationRecord(
        id=app.id,
        portal_id=app.portal_id,
        idempotency_key=app.idempotency_key,
        channel=app.channel,
        matter=app.matter,
        schema_version=app.schema_version,
        status=ApplicationStatus.RECEIVED,
        envelope_json=app.envelope_json,
        created_at=float(app.created_at),
        updated_at=float(app.created_at),
        accepted_at=None,
        version=1,
    )


async def _one_application(tx: Tx, where: str, params: Params) -> ApplicationRecord | None:
    row = await tx.fetchone(f"SELECT {_APP_COLUMNS} FROM applications WHERE {where}", params)
    return None if row is None else _application(row)


class SqlStore:
    """``Store`` over any ``Database``; every method is one transaction (``Database.run``)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._next_nonce_purge = float("-inf")  # a throttle only: no other process needs it
        self._cases: CaseStore | None = None

    @property
    def database(self) -> Database:
        return self._db

    @property
    def cases(self) -> CaseStore:
        """Tasks, timeline, outbox and timers of the internal push (``cases.py``)."""
        if self._cases is None:  # imported here, once: cases.py imports this module
            from gateway.store.cases import CaseStore

            self._cases = CaseStore(self._db)
        return self._cases

    @property
    def dialect(self) -> str:
        return self._db.dialect.name

    async def ping(self) -> None:
        async def work(tx: Tx) -> None:
            await tx.fetchone("SELECT 1")

        await self._db.run(work)

    async def close(self) -> None:
        await self._db.close()

    async def remember_nonce(self, portal_id: str, nonce: str, now: float, ttl: float) -> bool:
        purge = self._nonce_purge_due(now)

        async def work(tx: Tx) -> bool:
            return await _remember_nonce(tx, portal_id, Nonce(nonce, now, ttl), purge)

        return await self._db.run(work)

    def _nonce_purge_due(self, now: float) -> bool:
        if now < self._next_nonce_purge:
            return False
        self._next_nonce_purge = now + NONCE_PURGE_INTERVAL
        return True

    async def claim_idempotency(
        self, portal_id: str, key: str, fingerprint: str, now: float, lease_seconds: float
    ) -> Claim:
        async def work(tx: Tx) -> Claim:
            return await _claim(
                tx, self._db.dialect, portal_id, key, fingerprint, now, lease_seconds
            )

        return await self._db.run(work)

    async def admit(
        self,
        portal_id: str,
        key: str,
        fingerprint: str,
        now: float,
        lease_seconds: float,
        *,
        new: NewApplication | None,
        refusal: Answer | None = None,
        nonce: Nonce | None = None,
    ) -> tuple[Claim, ApplicationRecord | None]:
        purge = nonce is not None and self._nonce_purge_due(nonce.now)

        async def work(tx: Tx) -> tuple[Claim, ApplicationRecord | None]:
            if nonce is not None and not await _remember_nonce(tx, portal_id, nonce, purge):
                raise NonceReused(portal_id)
            claim = await _claim(
                tx,
                self._db.dialect,
                portal_id,
                key,
                fingerprint,
                now,
                lease_seconds,
                application_id=None if new is None else new.id,
            )
            if not isinstance(claim, Fresh):
                return claim, None
            if claim.application_id is not None:
                earlier = await _one_application(tx, "id = ?", (claim.application_id,))
                if earlier is not None:
                    return claim, earlier
            if new is not None:
                # The claim named ``new`` unless the key named an application before
                # (whose row is gone): then it is pointed at ``new`` here.
                return claim, await _create(tx, new, link_key=claim.application_id is not None)
            if refusal is not None:
                await _complete(
                    tx, portal_id, key, refusal.status_code, refusal.body, refusal.content_type
                )
            return claim, None

        return await self._db.run(work)

    async def complete_idempotency(
        self, portal_id: str, key: str, status_code: int, body: bytes, content_type: str
    ) -> None:
        async def work(tx: Tx) -> None:
            await _complete(tx, portal_id, key, status_code, body, content_type)

        await self._db.run(work)

    async def release_idempotency(self, portal_id: str, key: str) -> None:
        async def work(tx: Tx) -> None:
            await tx.execute(
                "UPDATE idempotency SET lease_until = NULL "
                "WHERE portal_id = ? AND key = ? AND status_code IS NULL",
                (portal_id, key),
            )

        await self._db.run(work)

    async def create_application(self, app: NewApplication) -> ApplicationRecord:
        async def work(tx: Tx) -> ApplicationRecord:
            return await _create(tx, app)

        return await self._db.run(work)

    async def mark_accepted(self, application_id: str, now: float) -> bool:
        async def work(tx: Tx) -> bool:
            return await _mark_accepted(tx, application_id, now)

        return await self._db.run(work)

    async def accept_and_answer(
        self,
        application_id: str,
        now: float,
        portal_id: str,
        key: str,
        status_code: int,
        body: bytes,
        content_type: str,
    ) -> bool:
        async def work(tx: Tx) -> bool:
            changed = await _mark_accepted(tx, application_id, now)
            await _complete(tx, portal_id, key, status_code, body, content_type)
            return changed

        return await self._db.run(work)

    async def get_application(self, application_id: str) -> ApplicationRecord | None:
        return await self._one_application("id = ?", (application_id,))

    async def find_application(self, portal_id: str, key: str) -> ApplicationRecord | None:
        return await self._one_application(
            "portal_id = ? AND idempotency_key = ?", (portal_id, key)
        )

    async def _one_application(self, where: str, params: Params) -> ApplicationRecord | None:
        async def work(tx: Tx) -> ApplicationRecord | None:
            return await _one_application(tx, where, params)

        return await self._db.run(work)

    async def list_applications(
        self,
        *,
        status: ApplicationStatus | None = None,
        matter: str | None = None,
        portal_id: str | None = None,
        created_from: float | None = None,
        created_to: float | None = None,
        limit: int = 100,
    ) -> Sequence[ApplicationRecord]:
        """Newest first; ``created_from`` is inclusive, ``created_to`` exclusive."""
        conditions: list[str] = []
        params: list[object] = []
        for condition, value in (
            ("status = ?", None if status is None else ApplicationStatus(status).value),
            ("matter = ?", matter),
            ("portal_id = ?", portal_id),
            ("created_at >= ?", None if created_from is None else float(created_from)),
            ("created_at < ?", None if created_to is None else float(created_to)),
        ):
            if value is not None:
                conditions.append(condition)
                params.append(value)
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""

        async def work(tx: Tx) -> list[Row]:
            return await tx.fetchall(
                f"SELECT {_APP_COLUMNS} FROM applications {where}"
                "ORDER BY created_at DESC, id DESC LIMIT ?",
                (*params, int(limit)),
            )

        return [_application(r) for r in await self._db.run(work)]

    async def claim_unpublished(
        self, now: float, older_than: float, lease_seconds: float, limit: int
    ) -> Sequence[ApplicationRecord]:
        """Oldest first. On PostgreSQL rows another relay is claiming are skipped, not
        waited for; on SQLite ``BEGIN IMMEDIATE`` makes the whole claim exclusive."""

        async def work(tx: Tx) -> list[Row]:
            return await tx.fetchall(
                "UPDATE applications SET relay_lease_until = ? WHERE id IN ("
                "SELECT id FROM applications WHERE status = ? AND updated_at < ? "
                "AND (relay_lease_until IS NULL OR relay_lease_until <= ?) "
                f"ORDER BY updated_at, id LIMIT ?{self._db.dialect.skip_locked}"
                f") RETURNING {_APP_COLUMNS}",
                (
                    float(now + lease_seconds),
                    _RECEIVED,
                    float(now - older_than),
                    float(now),
                    int(limit),
                ),
            )

        rows = await self._db.run(work)
        return sorted((_application(r) for r in rows), key=lambda a: (a.updated_at, a.id))

    async def add_dead_letter(self, letter: DeadLetter, now: float) -> int | None:
        async def work(tx: Tx) -> Row | None:
            return await tx.fetchone(
                f"INSERT INTO dead_letters ({_LETTER_COLUMNS}, stored_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (message_id) DO NOTHING RETURNING id",
                (
                    letter.message_id,
                    letter.exchange,
                    letter.routing_key,
                    letter.headers_json,
                    bytes(letter.body),
                    letter.reason,
                    letter.error_kind,
                    letter.system,
                    letter.matter,
                    letter.application_id,
                    letter.portal_id,
                    int(letter.attempts),
                    float(letter.first_failed_at),
                    float(letter.last_failed_at),
                    float(now),
                ),
            )

        row = await self._db.run(work)
        return None if row is None else int(row[0])

    async def list_dead_letters(
        self, *, system: str | None = None, limit: int = 100
    ) -> Sequence[DeadLetterRecord]:
        """Newest first."""
        where, params = ("WHERE system = ? ", (system,)) if system is not None else ("", ())

        async def work(tx: Tx) -> list[Row]:
            return await tx.fetchall(
                f"SELECT id, {_LETTER_COLUMNS}, stored_at FROM dead_letters {where}"
                "ORDER BY id DESC LIMIT ?",
                (*params, int(limit)),
            )

        return [_dead_letter(r) for r in await self._db.run(work)]
