"""The police simulator as it runs in a process of its own (``own_process``: ``gateway
simulate``, the bench): it parses and checks on the event loop's thread instead of a worker
thread, and answers as it does beside the gateway (tests/integration/test_hukou.py)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors.soap import SoapConnector
from gateway.envelope.validators import citizen_id
from gateway.errors import Permanent
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour
from gateway.simulators.hukou import HukouSimulator
from gateway.simulators.hukou_soap import Contract
from gateway.simulators.ledger import EffectLedger
from tests.integration.test_hukou import _birth, _decided, assert_sent_valid

OTHER = "01936f0e-7a4b-7c3d-8e9f-0123456789ac"


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[HukouSimulator, SoapConnector, Any]]:
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    sim = HukouSimulator(
        SystemConfig(kind="soap", url="http://127.0.0.1:0/hukou"),
        Behaviour(seed=7),
        ledger,
        own_process=True,
    )
    await sim.start()
    soap = SoapConnector("hukou", SystemConfig(kind="soap", url=sim.url, timeout_seconds=5))
    yield sim, soap, ledger
    await soap.close()
    await sim.stop()
    ledger.close()


def _spy_threads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(method, thread) of each call of ``Contract.parse`` and ``Contract.check_answer``."""
    threads: list[tuple[str, int]] = []
    for name in ("parse", "check_answer"):
        real = getattr(Contract, name)

        def spy(self: Contract, arg: Any, real: Any = real, name: str = name) -> Any:
            threads.append((name, threading.get_ident()))
            return real(self, arg)

        monkeypatch.setattr(Contract, name, spy)
    return threads


async def test_parses_and_checks_on_the_loops_thread(
    parts: tuple[HukouSimulator, SoapConnector, EffectLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, connector, _ = parts
    threads = _spy_threads(monkeypatch)
    await connector.send(_birth())
    assert threads == [
        ("parse", threading.get_ident()),
        ("check_answer", threading.get_ident()),
    ]


async def test_two_births_of_one_day_and_county_get_two_citizen_ids_each_once(
    parts: tuple[HukouSimulator, SoapConnector, EffectLedger],
) -> None:
    sim, connector, ledger = parts
    ids = []
    for app in ("01936f0e-7a4b-7c3d-8e9f-0123456789ab", OTHER):
        request = _birth(app)
        receipt = await connector.send(request)
        decision = await _decided(connector, request, receipt.case_number)
        assert decision.outcome == "completed"
        assert await connector.send(request) == receipt  # resent: the same receipt
        assert await _decided(connector, request, receipt.case_number) == decision
        ids.append(citizen_id(decision.provides["citizen_id"]))
    assert ids[0][:14] == ids[1][:14] and ids[0] != ids[1]
    assert len(await ledger.effects()) == 2 and await ledger.double_effects() == []
    assert assert_sent_valid(sim) == 4


async def test_a_key_sent_again_with_other_content_is_refused(
    parts: tuple[HukouSimulator, SoapConnector, EffectLedger],
) -> None:
    _, connector, _ = parts
    await connector.send(_birth())
    with pytest.raises(Permanent) as caught:
        await connector.send(_birth(subjects__child__name="王子涵"))  # same key, other content
    assert caught.value.code == "DUPLICATE_REQUEST"


async def test_beside_the_gateway_it_parses_and_checks_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    sim = HukouSimulator(
        SystemConfig(kind="soap", url="http://127.0.0.1:0/hukou"), Behaviour(), ledger
    )
    await sim.start()
    connector = SoapConnector("hukou", SystemConfig(kind="soap", url=sim.url, timeout_seconds=5))
    try:
        threads = _spy_threads(monkeypatch)
        await connector.send(_birth())
    finally:
        await connector.close()
        await sim.stop()
        ledger.close()
    assert [name for name, _ in threads] == ["parse", "check_answer"]
    assert all(thread != threading.get_ident() for _, thread in threads)
