"""An operator sees which department system received which personal fields of an
application — field names per system, task, attempt and time, never a value — in the admin
API (``GET /v1/admin/applications/{id}``, over a real socket) and in ``gateway apps show``,
on both databases."""

from __future__ import annotations

import argparse
import json
import zoneinfo
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator

from gateway.admin import cli as admin_cli
from gateway.admin.auth import Operator
from gateway.admin.desk import Desk
from gateway.admin.views import when
from gateway.runtime import Gateway
from gateway.settings import OperatorConfig, Settings
from tests.conftest import INTAKE_ROLES
from tests.store.test_cases import accepted, birth_certificate_issued
from tests.support.portal import example

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]
LEAD = "lead-token-0123456789"
OPERATORS = {"lead": OperatorConfig(token=LEAD, roles=frozenset({"view"}))}  # type: ignore[arg-type]
MOTHER_ID = json.loads(example("newborn-yizhang-window"))["subjects"]["mother"]["id_number"]


@pytest.fixture
async def gateway(
    settings_for: Callable[..., Settings], database_url: str
) -> AsyncIterator[Gateway]:
    gw = Gateway(settings_for(database_url, operators=OPERATORS), roles=INTAKE_ROLES)
    await gw.start()
    assert gw.store is not None
    await accepted(gw.store)
    await birth_certificate_issued(gw.store)  # hospital, then police and CDC dispatched
    yield gw
    await gw.stop(drain_seconds=2)


def _check(disclosures: list[dict[str, object]], settings: Settings) -> None:
    by_system = {d["system"]: d for d in disclosures}
    assert sorted(by_system) == ["cdc", "hospital", "hukou"]
    assert by_system["hospital"] == {
        "system": "hospital",
        "operation": "birth_certificate",
        "task_id": "app1.birth_certificate",
        "attempt": 1,
        "at": when(1.0, zoneinfo.ZoneInfo(settings.timezone)),  # the dispatch's time
        "fields": [
            "subjects.child.name",
            "subjects.father.id_number",
            "subjects.father.name",
            "subjects.mother.id_number",
            "subjects.mother.name",
        ],
    }
    assert "subjects.mother.id_number" not in by_system["cdc"]["fields"]  # type: ignore[operator]
    assert MOTHER_ID not in json.dumps(disclosures)  # names only


async def test_the_admin_api_shows_the_disclosures(gateway: Gateway) -> None:
    async with (
        aiohttp.ClientSession(f"http://127.0.0.1:{gateway.http_port}") as session,
        session.get(
            "/v1/admin/applications/app1", headers={"Authorization": f"Bearer {LEAD}"}
        ) as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
    _check(body["disclosures"], gateway.settings)
    # as contracts/intake/openapi.yaml documents it
    document = yaml.safe_load((ROOT / "contracts/intake/openapi.yaml").read_text("utf-8"))
    schema = {**document, "$ref": "#/components/schemas/AdminApplication"}
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(body)]
    assert errors == []


async def test_apps_show_prints_the_disclosures(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gateway.store is not None
    desk = Desk(gateway.store, gateway.publish)
    op = Operator("lead", frozenset({"view"}), frozenset())
    args = argparse.Namespace(application_id="app1", unmask=False, why=None)
    assert await admin_cli._apps_show(args, desk, op, gateway.settings) == 0
    _check(json.loads(capsys.readouterr().out)["disclosures"], gateway.settings)
