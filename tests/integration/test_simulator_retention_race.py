"""Hukou past its retention: a status query and a correction of the same dropped case side by
side. The correction reopens the case; the query, which read the ledger before, must not put
its stale copy (still awaiting the correction) in place of the reopened one, or the corrected
submission is never decided and every later query answers the old verdict."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors.soap import SoapConnector
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour
from gateway.simulators.hukou import HukouSimulator
from gateway.simulators.ledger import EffectLedger
from tests.integration.test_hukou import _birth, _decided

A, B = "0193aaaa-7a4b-7c3d-8e9f-0123456789ab", "0193bbbb-7a4b-7c3d-8e9f-0123456789ab"


@pytest.fixture
async def police(tmp_path: Path) -> AsyncIterator[tuple[HukouSimulator, SoapConnector]]:
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    config = SystemConfig(kind="soap", url="http://127.0.0.1:0/hukou")
    sim = HukouSimulator(config, Behaviour(seed=7), ledger, retain=1)
    await sim.start()
    soap = SoapConnector("hukou", SystemConfig(kind="soap", url=sim.url, timeout_seconds=5))
    yield sim, soap
    await soap.close()
    await sim.stop()
    ledger.close()


async def test_a_query_read_before_a_correction_does_not_undo_it(
    police: tuple[HukouSimulator, SoapConnector],
) -> None:
    sim, connector = police
    first = _birth(A, subjects__child__sex="9")  # the officer asks for the child's sex
    receipt = await connector.send(first)
    assert (await _decided(connector, first, receipt.case_number)).outcome == (
        "correction_requested"
    )
    other = _birth(B)
    await _decided(connector, other, (await connector.send(other)).case_number)
    assert first.task_id not in sim._by_request  # dropped from memory: retain=1

    read, release = asyncio.Event(), asyncio.Event()
    case_of = sim.ledger.case

    async def slow_case(system: str, **by: Any) -> Any:
        found = await case_of(system, **by)
        if by.get("case_no") == receipt.case_number:  # the query's read, held back
            read.set()
            await release.wait()
        return found

    sim.ledger.case = slow_case  # type: ignore[method-assign]
    query = asyncio.create_task(connector.check(first, receipt.case_number))
    await read.wait()
    corrected = _birth(A, subjects__child__sex="1")
    again = await connector.send(corrected)  # reopens the case while the query waits
    release.set()
    await query

    assert again.case_number == receipt.case_number
    decision = await _decided(connector, corrected, again.case_number)
    assert decision.outcome == "completed"
