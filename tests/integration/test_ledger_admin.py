"""``GET /v1/admin/reports/ledger`` on a running gateway (intake role, real socket, real
RabbitMQ), over the store seeded in ``tests/store/test_reports.py``: role ``view``, the
operator's systems only, JSON or CSV, every fault of the query at once."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from gateway.runtime import Gateway
from gateway.settings import OperatorConfig, Settings
from gateway.store import open_store
from gateway.store.sql import SqlStore
from tests.store.test_reports import seeded

pytestmark = pytest.mark.broker
URL = "/v1/admin/reports/ledger"
OPERATORS = {
    "lead": OperatorConfig(token="lead-token-0123456789"),  # type: ignore[arg-type]
    "police": OperatorConfig(
        token="police-token-0123456789",  # type: ignore[arg-type]
        systems=frozenset({"hukou"}),
    ),
    "none": OperatorConfig(token="none-token-0123456789", roles=frozenset()),  # type: ignore[arg-type]
}


async def test_the_ledger_route(settings_for: Callable[..., Settings], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    store = await open_store(db)
    try:
        await seeded(store)
        assert isinstance(store, SqlStore)
        async with store.database.transaction() as tx:  # nothing for a relay to send
            await tx.execute("DELETE FROM outbox")
    finally:
        await store.close()
    gw = Gateway(settings_for(db, operators=OPERATORS), roles=["intake"])
    await gw.start()
    try:
        base = f"http://127.0.0.1:{gw.http_port}{URL}"
        async with aiohttp.ClientSession() as http:

            async def get(token: str | None, **params: str) -> aiohttp.ClientResponse:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with http.get(base, params=params, headers=headers) as resp:
                    await resp.read()
                    return resp

            async def json_of(token: str, **params: str) -> tuple[int, dict[str, object]]:
                headers = {"Authorization": f"Bearer {token}"}
                async with http.get(base, params=params, headers=headers) as resp:
                    return resp.status, await resp.json(content_type=None)

            status, body = await json_of("lead-token-0123456789", month="2026-11")
            assert status == 200 and body["month"] == "2026-11" and body["scope"] is None
            total = body["total"]
            assert isinstance(total, dict)
            assert (total["received"], total["completed_late"], total["open_overdue"]) == (5, 1, 3)

            status, body = await json_of("police-token-0123456789", month="2026-11")
            rows = body["rows"]
            assert status == 200 and body["scope"] == ["hukou"] and isinstance(rows, list)
            assert {r["system"] for r in rows} == {"hukou"}
            assert isinstance(body["total"], dict) and body["total"]["received"] == 1

            headers = {"Authorization": "Bearer lead-token-0123456789"}
            async with http.get(
                base, params={"month": "2026-11", "format": "csv"}, headers=headers
            ) as resp:
                assert resp.status == 200 and resp.content_type == "text/csv"
                table = list(csv.DictReader(io.StringIO(await resp.text())))
            assert table[-1]["department"] == "*" and table[-1]["received"] == "5"

            status, body = await json_of("lead-token-0123456789", month="2026-13", format="xls")
            assert status == 422
            errors = body["errors"]
            assert isinstance(errors, list)
            assert [e["loc"] for e in errors] == ["query.month", "query.format"]
            assert (await get(None, month="2026-11")).status == 401
            assert (await get("none-token-0123456789", month="2026-11")).status == 403
    finally:
        await gw.stop(drain_seconds=1)
