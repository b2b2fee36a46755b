"""The simulators hold in memory their open cases and only the newest ``retain`` decided ones;
older decided cases are answered from the ledger, the same as before they left memory, and a
citizen ID is never given out twice although none is held in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.soap import SoapConnector
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour
from gateway.simulators.hukou import HukouSimulator
from gateway.simulators.ledger import EffectLedger
from gateway.simulators.retention import Retention
from tests.integration.test_hukou import _birth, _decided

RETAIN = 2


def test_retention_names_the_oldest_decided_beyond_the_limit() -> None:
    kept = Retention(2)
    assert kept.decided("a") == [] and kept.decided("b") == []
    kept.reopened("a")  # open again: not counted, not dropped
    assert kept.decided("c") == []
    assert kept.decided("a") == ["b"]  # decided again: now the newest
    assert kept.decided("d") == ["c"] and len(kept) == 2


@pytest.fixture
async def police(tmp_path: Path) -> AsyncIterator[tuple[HukouSimulator, SoapConnector]]:
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    config = SystemConfig(kind="soap", url="http://127.0.0.1:0/hukou")
    sim = HukouSimulator(config, Behaviour(seed=7), ledger, retain=RETAIN)
    await sim.start()
    soap = SoapConnector("hukou", SystemConfig(kind="soap", url=sim.url, timeout_seconds=5))
    yield sim, soap
    await soap.close()
    await sim.stop()
    ledger.close()


async def test_hukou_holds_the_newest_decided_cases_and_answers_older_ones_from_the_ledger(
    police: tuple[HukouSimulator, SoapConnector],
) -> None:
    sim, connector = police
    births = [_birth(f"0193{n:04d}-7a4b-7c3d-8e9f-0123456789ab") for n in range(RETAIN + 4)]
    answers = []
    for request in births:  # one county, birth date and sex: each needs a new sequence
        receipt = await connector.send(request)
        decision = await _decided(connector, request, receipt.case_number)
        assert decision is not None and decision.outcome == "completed"
        answers.append((receipt, decision))

    assert len(sim._by_request) <= RETAIN and len(sim._by_case) <= RETAIN
    ids = [decision.provides["citizen_id"] for _, decision in answers]
    assert len(set(ids)) == len(ids)  # no citizen ID twice, none held in memory

    first, (receipt, decision) = births[0], answers[0]
    assert first.task_id not in sim._by_request  # dropped from memory ...
    again = await connector.check(first, receipt.case_number)  # ... asked by CaseNo
    assert again == decision
    resent = await connector.send(first)  # the same submission: the same receipt
    assert (resent.case_number, resent.accepted_at) == (receipt.case_number, receipt.accepted_at)
    assert len(sim._by_request) <= RETAIN
