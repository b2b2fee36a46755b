"""A department's answer on ``gw.results`` that dies (past the delivery limit, rejected) is
no longer a silent end: the dead-letter store dead-letters the task it answered, so its
application turns ``blocked`` with the reason. Real RabbitMQ, real SQLite store; the
letter is made by RabbitMQ itself (a reject without requeue)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from gateway.broker.topology import RESULTS
from gateway.orchestration.messages import ResultMessage, routing_key
from gateway.runtime import Gateway
from gateway.settings import Settings
from tests.conftest import INTAKE_ROLES, WINDOW_SECRET
from tests.support.portal import Portal, example_json
from tests.support.rabbit import Rabbit
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


def _reject_one(queue: str) -> Callable[[Any], bool]:
    def go(ch: Any) -> bool:
        method, _props, _body = ch.basic_get(queue)
        if method is None:
            return False
        ch.basic_reject(method.delivery_tag, requeue=False)
        return True

    return go


async def test_a_dead_answer_blocks_its_task_and_application(
    settings_for: Callable[..., Settings], rabbit: Rabbit
) -> None:
    settings = settings_for()
    roles = [*INTAKE_ROLES, "orchestrator"]  # no connector: the tasks wait in their queues
    async with Gateway(settings, roles=roles) as gw, aiohttp.ClientSession() as session:
        assert gw.store is not None
        store = gw.store
        portal = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
        body = json.dumps(example_json("newborn-yizhang-window"), ensure_ascii=False).encode()
        answer = await portal.submit(body)
        assert answer.status == 202, answer.body
        app_id = str(answer.json()["application_id"])

        async def dispatched() -> Any:
            state = await store.cases.load(app_id)
            tasks = [t for t in state.tasks if t.status.value == "dispatched"] if state else []
            return tasks[0] if tasks else None

        task = await eventually(dispatched, within=30)
        assert task is not None

    # the orchestrator is gone: the department's answer waits on gw.results, then dies
    async with Gateway(settings, roles=INTAKE_ROLES) as gw:
        assert gw.store is not None
        store = gw.store
        receipt = ResultMessage(
            task_id=task.id, application_id=app_id, system=task.system, kind="receipt",
            attempt=task.attempt, case_number="C-1",
        )  # fmt: skip
        await gw.publish(
            RESULTS, routing_key(task.system, task.matter, task.step), receipt.message()
        )
        assert await asyncio.to_thread(rabbit._run, _reject_one(RESULTS))

        async def blocked() -> Any:
            state = await store.cases.load(app_id)
            return state if state and state.application.status.value == "blocked" else None

        state = await eventually(blocked, within=30)
        assert state is not None, "the application was not blocked"
        (dead,) = [t for t in state.tasks if t.id == task.id]
        assert dead.status.value == "dead_lettered"
        assert dead.reason and "dead-lettered by RabbitMQ: rejected" in dead.reason
        async with aiohttp.ClientSession() as session:
            portal = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
            view = (await portal.show(app_id)).json()
        assert view["status"] == "blocked" and view["blocked_reason"] == dead.reason


async def test_a_dead_answer_replayed_brings_the_application_to_completion(world: Any) -> None:
    """The receipt's letter replayed re-dispatches its task (the department answers the same
    request id again): the application, blocked by a dead answer, completes."""
    from tests.faults.harness import CONNECTORS, CORE, FRONT
    from tests.faults.ledger_check import read_store

    w = world
    config = w.config("gw")
    core = w.process("core", CORE, config=config)
    await core.start()
    await w.start_departments()
    (app_id,) = await w.submit(1)

    async def dispatched() -> Any:
        rows = await asyncio.to_thread(
            read_store, w.database_url,
            "SELECT id, system, matter, step, attempt, application_id FROM tasks "
            "WHERE status = 'dispatched'",
        )  # fmt: skip
        return next((r[:5] for r in rows if r[5] == app_id), None)

    task_id, system, matter, step, attempt = await eventually(dispatched, within=60)
    await core.stop()  # the orchestrator is gone; the task message waits on gw.tasks
    front = w.process("front", FRONT, config=config)
    await front.start()
    receipt = ResultMessage(
        task_id=task_id, application_id=app_id, system=system, kind="receipt",
        attempt=attempt, case_number="C-1",
    ).message()  # fmt: skip
    await w.rabbit.apublish(
        RESULTS, routing_key(system, matter, step), receipt.body,
        message_id=receipt.message_id, correlation_id=app_id, headers=receipt.headers,
        content_type="application/json",
    )  # fmt: skip
    assert await asyncio.to_thread(w.rabbit._run, _reject_one(RESULTS))

    async def blocked() -> Any:
        rows = await asyncio.to_thread(
            read_store, w.database_url,
            "SELECT id FROM tasks WHERE status = 'dead_lettered'",
        )  # fmt: skip
        return [r for r in rows if r[0] == task_id] or None

    assert await eventually(blocked, within=60)
    rest = w.process("rest", ("orchestrator", "scheduler", *CONNECTORS), config=config)
    await rest.start()
    replay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "--config", str(config),
        "dlq", "replay", "--all", "--reason", "the orchestrator is back",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await replay.communicate()
    assert replay.returncode == 0, output.decode()
    report = await w.check("a dead gw.results answer replayed")
    report.assert_sound(completed=1)
