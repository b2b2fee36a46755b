"""The police decide at once: the decision comes with the receipt, not from a poll timer.

The real gateway (every role, on the test vhost) and the real department simulators; the
police simulator decides with no delay, and hukou is polled only once an hour. The bundle
still completes, because the connector asked QueryCase once right after the Submit
(``poll_on_receipt``) and the one receipt result carried the decision; the police saw one
submission and one status query for the newborn, nothing from a timer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.runtime import Gateway
from gateway.settings import Settings
from gateway.simulators.fleet import Fleet, local_systems
from gateway.simulators.hukou import HukouSimulator
from gateway.simulators.ledger import EffectLedger
from tests.conftest import WINDOW_SECRET
from tests.support.portal import Portal, example
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker
AN_HOUR = 3600.0


@pytest.fixture
async def running(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    settings = settings_for(systems=local_systems(tmp_path / "sim", poll_seconds=AN_HOUR))
    assert settings.systems["hukou"].poll_on_receipt  # the default
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    gw = Gateway(settings)
    await gw.start()
    fleet = Fleet(settings, ledger, callback_base_url=f"http://127.0.0.1:{gw.http_port}")
    fleet.behaviour("hukou").decision_delay_seconds = 0.0  # no officer in the loop
    await fleet.start()
    async with aiohttp.ClientSession() as session:
        portal = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
        yield {"portal": portal, "police": fleet.running["hukou"], "ledger": ledger}
    await fleet.stop()
    await gw.stop(drain_seconds=2)
    ledger.close()


async def test_a_decision_taken_at_once_completes_the_bundle_without_a_poll(
    running: dict[str, Any],
) -> None:
    portal: Portal = running["portal"]
    police: HukouSimulator = running["police"]
    app_id = (await portal.submit(example("newborn-yizhang-window"))).json()["application_id"]

    async def completed() -> dict[str, Any] | None:
        view = (await portal.show(app_id)).json()
        return view if view["status"] == "completed" else None

    view = await eventually(completed, within=30)  # an hour before any poll timer is due
    assert view is not None, (await portal.show(app_id)).json()
    hukou = next(t for t in view["tasks"] if t["step"] == "hukou")
    assert hukou["status"] == "completed" and hukou["case_number"]
    asked = [body for body in police.received if b"QueryCaseRequest" in body]
    submitted = [body for body in police.received if b"SubmitBirthRegistration" in body]
    assert len(submitted) == 1 and len(asked) == 1  # the one question right after the receipt
    effects = [e.task for e in await running["ledger"].effects(app_id)]
    assert effects.count("hukou") == 1
    assert effects.index("hukou") < effects.index("medical_insurance")  # it fed insurance
