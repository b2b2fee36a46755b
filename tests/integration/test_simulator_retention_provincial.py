"""The provincial simulator past its retention: a case dropped from memory answers a resent
POST and a GET as it did before (the same case, no second decision or callback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from connectors.base import Decision
from connectors.rest import CallbackReceiver, RestConnector
from gateway.simulators.behaviour import Behaviour
from gateway.simulators.ledger import EffectLedger
from gateway.simulators.provincial import ProvincialSimulator
from tests.integration.test_provincial import (
    BASE_PATH,
    CALLBACK_PATH,
    Platform,
    Sink,
    Tap,
    config,
    fixture_request,
    serve,
)


@pytest.fixture
async def platform(tmp_path: Any) -> AsyncIterator[Platform]:
    behaviour = Behaviour(seed=7)
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    sink, reports = Sink(), []

    async def report(decision: Decision) -> None:
        reports.append(decision)

    sink_runner, sink_url = await serve([web.post(CALLBACK_PATH, sink.handle)])
    sink.receiver = CallbackReceiver(config("http://unused.invalid"), report)
    simulator = ProvincialSimulator(
        config(f"http://127.0.0.1:0{BASE_PATH}"), behaviour, ledger, None,
        callback_backoff_seconds=0.05, retain=1,
    )  # fmt: skip
    await simulator.start()
    tap = Tap(simulator.url.removesuffix(BASE_PATH))
    tap_runner, tap_url = await serve([web.route("*", BASE_PATH + "/{tail:.*}", tap.handle)])
    connector = RestConnector(
        "provincial", config(tap_url + BASE_PATH), callback_url=sink_url + CALLBACK_PATH
    )
    yield Platform(simulator, behaviour, ledger, connector, tap, sink, reports, tap_url)
    await connector.close()
    await simulator.stop()
    await tap_runner.cleanup()
    await sink_runner.cleanup()
    ledger.close()


async def test_a_case_dropped_from_memory_is_answered_as_before(platform: Platform) -> None:
    first, second = (fixture_request(n) for n in ("retirement.file_review", "retirement.pension"))
    receipt = await platform.connector.send(first)
    decision = await platform.decision_for(first.task_id)
    await platform.connector.send(second)
    assert await platform.decision_for(second.task_id) is not None
    assert platform.simulator.case(str(receipt.case_number)) is None  # dropped from memory

    polled = await platform.connector.check(first, receipt.case_number)  # GET by number
    resent = await platform.connector.send(first)  # the same POST again

    assert polled == decision
    assert resent.case_number == receipt.case_number
    assert await platform.ledger.delivery_count("provincial") == 3
    assert await platform.ledger.double_effects() == []
    assert platform.contract_kept() == []
