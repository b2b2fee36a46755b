"""A police decision that comes hours later, on a simulated clock.

Every clock in the process (the gateway's, the simulators', the portal's signatures) reads
``time.time``, which the test shifts by hours at once: the household-registration task
waits, polled from a timer row with no delivery held, then the decision arrives and the
bundle completes, with the hukou step's working time visible in the view.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.runtime import Gateway
from gateway.settings import Settings
from gateway.simulators.fleet import Fleet, local_systems
from gateway.simulators.ledger import EffectLedger
from tests.conftest import WINDOW_SECRET
from tests.support.portal import Portal, example
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker
HOURS = 3600.0


class ShiftedClock:
    def __init__(self) -> None:
        self.offset = 0.0
        self._real = time.time

    def __call__(self) -> float:
        return self._real() + self.offset


@pytest.fixture
async def shifted(
    settings_for: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[dict[str, Any]]:
    clock = ShiftedClock()
    monkeypatch.setattr(time, "time", clock)
    settings = settings_for(systems=local_systems(tmp_path / "sim", poll_seconds=0.2))
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    gw = Gateway(settings, clock=lambda: time.time())
    await gw.start()
    fleet = Fleet(settings, ledger, callback_base_url=f"http://127.0.0.1:{gw.http_port}")
    fleet.behaviour("hukou").decision_delay_seconds = 3 * HOURS
    await fleet.start()
    async with aiohttp.ClientSession() as session:
        portal = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
        yield {"clock": clock, "portal": portal, "ledger": ledger}
    await fleet.stop()
    await gw.stop(drain_seconds=2)
    ledger.close()


async def test_a_decision_three_hours_later_still_completes_the_bundle(
    shifted: dict[str, Any],
) -> None:
    portal: Portal = shifted["portal"]
    clock: ShiftedClock = shifted["clock"]
    app_id = (await portal.submit(example("newborn-yizhang-window"))).json()["application_id"]

    async def hukou_task() -> dict[str, Any]:
        view = (await portal.show(app_id)).json()
        return next(t for t in view["tasks"] if t["step"] == "hukou")

    async def waiting_on_police() -> bool:
        return (await hukou_task())["status"] in ("submitted", "in_progress")

    assert await eventually(waiting_on_police)
    before = await hukou_task()
    assert before["overdue"] is False

    clock.offset = 3 * HOURS + 60  # the afternoon passes

    async def completed() -> dict[str, Any] | None:
        view = (await portal.show(app_id)).json()
        return view if view["status"] == "completed" else None

    view = await eventually(completed, within=30)
    assert view is not None
    hukou = next(t for t in view["tasks"] if t["step"] == "hukou")
    took = dt.datetime.fromisoformat(hukou["finished_at"]) - dt.datetime.fromisoformat(
        hukou["dispatched_at"]
    )
    assert took >= dt.timedelta(hours=3)
    effects = [e.task for e in await shifted["ledger"].effects(app_id)]
    assert effects.index("hukou") < effects.index("medical_insurance")
    assert json.dumps(view["results"], ensure_ascii=False).count("citizen_id") == 1
