"""The internal push end to end: real RabbitMQ, real store, the four department simulators
over real sockets, folders and queues. Order and "nothing twice" are read from the
simulators' own effect ledgers, never from the gateway's belief."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.catalogue.model import load
from gateway.envelope.validators import citizen_id
from gateway.runtime import Gateway
from gateway.settings import Settings
from gateway.simulators.behaviour import Verdict
from gateway.simulators.fleet import Fleet, local_systems
from gateway.simulators.ledger import EffectLedger
from tests.conftest import WINDOW_SECRET
from tests.support.portal import Portal, example_json
from tests.support.rabbit import Rabbit
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker
FINAL = {"completed", "rejected", "withdrawn", "blocked", "correction_requested"}


class Pipeline:
    def __init__(self, gw: Gateway, fleet: Fleet, ledger: EffectLedger, portal: Portal) -> None:
        self.gw, self.fleet, self.ledger, self.portal = gw, fleet, ledger, portal

    async def submit(self, envelope: dict[str, Any]) -> str:
        answer = await self.portal.submit(json.dumps(envelope, ensure_ascii=False).encode())
        assert answer.status == 202, answer.body
        app_id: str = answer.json()["application_id"]
        return app_id

    async def view(self, app_id: str) -> dict[str, Any]:
        answer = await self.portal.show(app_id)
        assert answer.status == 200, answer.body
        view: dict[str, Any] = answer.json()
        return view

    async def settled(
        self, app_id: str, within: float = 30.0, status: set[str] = FINAL
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            view = await self.view(app_id)
            return view if view["status"] in status else None

        view = await eventually(probe, within)
        assert view is not None, await self.view(app_id)
        return view  # type: ignore[no-any-return]


@pytest.fixture
async def pipeline(
    settings_for: Callable[..., Settings], database_url: str, tmp_path: Path, rabbit: Rabbit
) -> AsyncIterator[Pipeline]:
    settings = settings_for(database_url, systems=local_systems(tmp_path / "sim", poll_seconds=0.2))
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    gw = Gateway(settings)
    await gw.start()
    fleet = Fleet(settings, ledger, callback_base_url=f"http://127.0.0.1:{gw.http_port}")
    await fleet.start()
    async with aiohttp.ClientSession() as session:
        portal = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
        yield Pipeline(gw, fleet, ledger, portal)
    await fleet.stop()
    await gw.stop(drain_seconds=2)
    assert await ledger.double_effects() == []  # nothing twice, in every test
    ledger.close()


def by_step(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["step"]: t for t in view["tasks"]}


async def test_newborn_bundle_completes_in_dependency_order(pipeline: Pipeline) -> None:
    app_id = await pipeline.submit(example_json("newborn-yizhang-window"))
    view = await pipeline.settled(app_id)
    assert view["status"] == "completed", by_step(view)
    results = {r["step"]: r for r in view["results"]}
    assert "cn-workdays" in view["calendar"]  # due times name the calendar they used
    assert set(results) == {
        "birth_certificate",
        "vaccination",
        "hukou",
        "medical_insurance",
        "social_security_card",
    }
    new_id = results["hukou"]["provides"]["citizen_id"]
    assert citizen_id(new_id) == new_id  # a valid GB 11643 number from the police
    assert results["birth_certificate"]["provides"]["birth_certificate_no"][0].isalpha()
    assert all(r["case_number"] for r in results.values())

    effects = await pipeline.ledger.effects(app_id)
    order = [e.task for e in effects]
    assert order.index("birth_certificate") < order.index("hukou")
    assert order.index("birth_certificate") < order.index("vaccination")
    assert order.index("hukou") < order.index("medical_insurance")
    assert order.index("hukou") < order.index("social_security_card")
    kinds = [e["kind"] for e in view["timeline"]] if "timeline" in view else []
    assert kinds[0] == "application.accepted" and kinds[-1] == "application.completed"


async def test_retirement_and_after_death_complete(pipeline: Pipeline) -> None:
    retirement = await pipeline.submit(example_json("retirement-online"))
    after_death = await pipeline.submit(example_json("after-death-mobile"))
    for app_id in (retirement, after_death):
        view = await pipeline.settled(app_id)
        assert view["status"] == "completed", by_step(view)
    death = by_step(await pipeline.view(after_death))
    assert death["hukou_cancellation"]["status"] == "completed"
    steps = {e.task for e in await pipeline.ledger.effects(after_death)}
    applicable = {s for s, t in death.items() if t["status"] == "completed"}
    assert steps == applicable  # every completed task is an effect in some department


OTHER_MATTERS = {  # one example per matter typed after the first three; each asks for every step
    "school_entry": "school-entry-online",
    "medical_care": "medical-care-window",
    "housing": "housing-window",
    "veteran": "veteran-window",
    "marriage_birth": "marriage-birth-window",
    "disability": "disability-mobile",
}


async def test_the_other_six_matters_complete_in_catalogue_order(pipeline: Pipeline) -> None:
    apps = {m: await pipeline.submit(example_json(name)) for m, name in OTHER_MATTERS.items()}
    catalogue = load()
    for matter, app_id in apps.items():
        view = await pipeline.settled(app_id, within=60)
        tasks = by_step(view)
        assert view["status"] == "completed", (matter, tasks)
        steps = {s.key: s for s in catalogue.matter(matter).steps}
        assert {k: t["status"] for k, t in tasks.items()} == dict.fromkeys(steps, "completed")

        effects = await pipeline.ledger.effects(app_id)
        # one effect per step, applied by the system the catalogue names
        assert sorted((e.task, e.system) for e in effects) == sorted(
            (k, s.system) for k, s in steps.items()
        )
        seq = {e.task: e.seq for e in effects}
        for key, step in steps.items():
            for dependency in step.depends_on:
                assert seq[dependency] < seq[key], f"{matter}: {key} before {dependency}"
        results = {r["step"]: r for r in view["results"]}
        for key, step in steps.items():  # what each step provides reached the results pack
            assert set(results[key]["provides"]) == set(step.provides), (matter, key)


async def test_a_denied_step_cancels_its_dependents(pipeline: Pipeline) -> None:
    envelope = example_json("newborn-yizhang-window")
    envelope["subjects"]["child"]["name"] = "驳回测试"
    pipeline.fleet.behaviour("hukou").by_name["驳回测试"] = Verdict(
        "denied", reason="household head is not registered here"
    )
    app_id = await pipeline.submit(envelope)
    view = await pipeline.settled(app_id, status={"rejected"})
    tasks = by_step(view)
    assert tasks["hukou"]["status"] == "denied"
    assert tasks["hukou"]["reason"] == "household head is not registered here"
    assert tasks["medical_insurance"]["status"] == "cancelled"
    assert tasks["social_security_card"]["status"] == "cancelled"
    steps = {e.task for e in await pipeline.ledger.effects(app_id)}
    assert "medical_insurance" not in steps and "social_security_card" not in steps


async def test_a_correction_reruns_only_the_step_that_asked(pipeline: Pipeline) -> None:
    envelope = example_json("newborn-yizhang-window")
    envelope["subjects"]["child"]["name"] = "补正测试"
    pipeline.fleet.behaviour("hukou").by_name["补正测试"] = Verdict(
        "correction_requested",
        reason="name does not match the birth certificate",
        gaps=[("NewbornName", "give the name as on the birth certificate")],
    )
    app_id = await pipeline.submit(envelope)
    view = await pipeline.settled(app_id, status={"correction_requested"})
    assert by_step(view)["hukou"]["gaps"]
    answer = await pipeline.portal.request(
        "POST",
        f"/v1/applications/{app_id}/corrections",
        json.dumps({"changes": {"subjects.child.name": "王子轩"}}).encode(),
        None,
    )
    assert answer.status == 202, answer.body
    view = await pipeline.settled(app_id, status={"completed", "rejected"})
    assert view["status"] == "completed"
    tasks = by_step(view)
    assert tasks["hukou"]["attempt"] == 2
    assert tasks["birth_certificate"]["attempt"] == 1  # not re-run


async def test_withdrawal_stops_the_bundle(pipeline: Pipeline) -> None:
    pipeline.fleet.behaviour("hospital").decision_delay_seconds = 60
    app_id = await pipeline.submit(example_json("newborn-yizhang-window"))

    async def started() -> bool:
        return bool((await pipeline.view(app_id))["tasks"])

    assert await eventually(started)  # the orchestrator has fanned it out
    answer = await pipeline.portal.request(
        "POST",
        f"/v1/applications/{app_id}/withdrawal",
        json.dumps({"reason": "moved away"}).encode(),
        None,
    )
    assert answer.status == 200, answer.body
    view = answer.json()
    assert view["status"] == "withdrawn"
    assert {t["status"] for t in view["tasks"]} == {"cancelled"}


async def test_each_department_is_asked_once_and_nothing_is_left_to_send(
    pipeline: Pipeline,
) -> None:
    app_id = await pipeline.submit(example_json("newborn-yizhang-window"))
    assert (await pipeline.settled(app_id))["status"] == "completed"
    asked = Counter(
        (system, task) for system, task, _, _ in await pipeline.ledger.deliveries(app_id)
    )
    assert asked == Counter(
        {
            ("hospital", "birth_certificate"): 1,
            ("cdc", "vaccination"): 1,
            ("hukou", "hukou"): 1,
            ("provincial", "medical_insurance"): 1,
            ("provincial", "social_security_card"): 1,
        }
    )
    assert pipeline.gw.store is not None
    leftover = await pipeline.gw.store.cases.claim_outbox(time.time() + 3600, 30, 10)
    assert leftover == []  # every task and event left the outbox once it was confirmed


async def test_a_department_outage_shorter_than_the_retries_costs_nothing(
    pipeline: Pipeline,
) -> None:
    now = time.time()
    pipeline.fleet.behaviour("provincial").outages.append((now, now + 2.0))
    app_id = await pipeline.submit(example_json("retirement-online"))
    view = await pipeline.settled(app_id)
    assert view["status"] == "completed", by_step(view)
    refused = [
        d
        for d in await pipeline.ledger.deliveries(app_id)
        if "503" in d[3] or "unavailable" in d[3] or "outage" in d[3]
    ]
    assert refused  # the outage really turned requests away, and they were retried
    assert pipeline.gw.store is not None
    assert await pipeline.gw.store.list_dead_letters() == []


# A department that stays down: its task is retried through the broker delay queues until
# [systems.x].retry is spent, then dead-lettered and its application blocked with the reason
# (tests/integration/test_retry_queues.py, with a policy small enough to wait for).
