"""The hospital simulator owes a decided case its result file until the file is written: a
result whose write failed (a full disk, an I/O error) is written at the next deciding step,
the same decision (kept in the ledger), never a second one and never not at all."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from connectors.base import DepartmentRequest
from connectors.filedrop import FileDropConnector
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour
from gateway.simulators.hospital import HospitalSimulator
from gateway.simulators.ledger import EffectLedger
from tests.integration.test_hospital import request_for


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def _setup(
    tmp_path: Path, delay: float, clock: Clock
) -> tuple[HospitalSimulator, EffectLedger, DepartmentRequest, Path]:
    folders = {k: tmp_path / k for k in ("outbox", "inbox", "archive", "error")}
    for folder in folders.values():
        folder.mkdir()
    config = SystemConfig.model_validate({"kind": "filedrop", **folders})
    request = request_for()
    connector = FileDropConnector("hospital", config)
    await connector.send(request)
    await connector.close()
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    behaviour = Behaviour(decision_delay_seconds=delay)
    sim = HospitalSimulator(config, behaviour, ledger, clock=clock)
    sim.processed.mkdir(exist_ok=True)  # as start() does: taken files go there
    return sim, ledger, request, folders["inbox"] / f"{request.task_id}.result.xml"


def _fail_first_result(
    sim: HospitalSimulator, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[str]]:
    """(the writes that failed, the files written), the first result's write failing."""
    failed: list[str] = []
    written: list[str] = []
    real = sim._write

    async def write(name: str, data: bytes) -> None:
        if name.endswith(".result.xml") and not failed:
            failed.append(name)
            raise OSError(28, "No space left on device")
        await real(name, data)
        written.append(name)

    monkeypatch.setattr(sim, "_write", write)
    return failed, written


async def _assert_the_kept_decision(
    sim: HospitalSimulator, ledger: EffectLedger, request: DepartmentRequest, result: Path
) -> None:
    kept = await ledger.case("hospital", key=request.task_id)
    assert kept is not None and kept["final"]["status"] == "ISSUED"
    assert await asyncio.to_thread(result.read_bytes) == sim._result(kept["final"])
    [effect] = await ledger.effects()
    assert effect.result["certificate_no"] == kept["final"]["certificate_no"]


async def test_a_result_not_written_in_the_take_is_written_by_the_same_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    sim, ledger, request, result = await _setup(tmp_path, 0.0, clock)
    failed, written = _fail_first_result(sim, monkeypatch)
    try:
        await sim.scan()  # taken and decided at once; its result's first write fails
        assert failed == [result.name]
        await _assert_the_kept_decision(sim, ledger, request, result)
        await sim.scan()  # told: not written again
        assert written == [f"{request.task_id}.ack.xml", result.name]
    finally:
        await sim.stop()
        ledger.close()


async def test_a_result_not_written_when_due_is_written_at_the_next_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    sim, ledger, request, result = await _setup(tmp_path, 60.0, clock)
    failed, written = _fail_first_result(sim, monkeypatch)
    try:
        await sim.scan()  # taken: acknowledged, not due
        clock.now += 120
        await sim.scan()  # decided; its result's first write fails
        assert failed == [result.name] and not result.exists()
        await sim.scan()
        await _assert_the_kept_decision(sim, ledger, request, result)
        await sim.scan()  # told: not written again
        assert written == [f"{request.task_id}.ack.xml", result.name]
    finally:
        await sim.stop()
        ledger.close()
