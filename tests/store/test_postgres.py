"""PostgreSQL specifics: failures at the boundary, and claims that skip locked rows."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from gateway.errors import StoreUnavailable
from gateway.store import NewApplication, open_store
from gateway.store.postgres import to_pyformat

pytestmark = pytest.mark.postgres


def test_placeholders_become_pyformat() -> None:
    assert to_pyformat("SELECT ? WHERE a LIKE '5%' AND b = ?") == (
        "SELECT %s WHERE a LIKE '5%%' AND b = %s"
    )


async def test_unreachable_server_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="refused"):
        await open_store("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2")


async def test_postgres_scheme_alias(postgres_url: str) -> None:
    store = await open_store(postgres_url.replace("postgresql://", "postgres://", 1))
    assert store.dialect == "postgresql"
    await store.close()


async def test_claim_skips_rows_another_transaction_holds(postgres_url: str) -> None:
    store = await open_store(postgres_url)
    ids = []
    for i in range(3):
        app = NewApplication(
            id=str(uuid.uuid4()),
            portal_id="window",
            idempotency_key=f"k{i}",
            channel="http",
            matter="newborn",
            schema_version="1.0",
            envelope_json="{}",
            fingerprint="f",
            created_at=float(i),
        )
        await store.create_application(app)
        ids.append(app.id)
    options = parse_qs(urlsplit(postgres_url).query)["options"][0]
    async with await psycopg.AsyncConnection.connect(postgres_url, options=options) as other:
        await other.execute("SELECT id FROM applications WHERE id = %s FOR UPDATE", (ids[0],))
        claimed = await asyncio.wait_for(store.claim_unpublished(100.0, 10, 30, 10), timeout=5)
        assert [a.id for a in claimed] == ids[1:]
    await store.close()
