"""The hospital simulator decides a case already due as it takes the request: its result file
follows its acknowledgement before the request is moved to processed/; a case not yet due
waits for a later scan."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.filedrop import FileDropConnector
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour
from gateway.simulators.hospital import HospitalSimulator
from gateway.simulators.ledger import EffectLedger
from tests.integration.test_hospital import request_for


@pytest.mark.parametrize(("delay", "decided"), [(0.0, True), (3600.0, False)])
async def test_a_due_case_is_decided_before_its_file_is_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delay: float, decided: bool
) -> None:
    folders = {k: tmp_path / k for k in ("outbox", "inbox", "archive", "error")}
    for folder in folders.values():
        folder.mkdir()
    config = SystemConfig.model_validate({"kind": "filedrop", **folders})
    requests = [request_for() for _ in range(3)]
    connector = FileDropConnector("hospital", config)
    for request in requests:
        await connector.send(request)
    await connector.close()
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    sim = HospitalSimulator(config, Behaviour(decision_delay_seconds=delay), ledger, parallel=3)
    events: list[tuple[str, str]] = []
    written, moved = sim._write, sim._file_away

    async def write(name: str, data: bytes) -> None:
        await written(name, data)
        events.append(("written", name))

    def file_away(path: Path) -> None:
        events.append(("moved", path.name))
        moved(path)

    monkeypatch.setattr(sim, "_write", write)
    monkeypatch.setattr(sim, "_file_away", file_away)
    try:
        await sim.scan()  # not started: one scan, nothing in the background
        for r in requests:
            mine = [e for e in events if e[1].startswith(r.task_id)]
            after = [("written", f"{r.task_id}.result.xml")] if decided else []
            assert mine == [
                ("written", f"{r.task_id}.ack.xml"),
                *after,
                ("moved", f"{r.task_id}.req.xml"),
            ]
        assert len(await ledger.effects()) == (3 if decided else 0)
        assert await ledger.double_effects() == []
        assert await ledger.delivery_count("hospital") == 3
    finally:
        await sim.stop()
        ledger.close()
