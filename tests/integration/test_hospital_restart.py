"""The hospital simulator restarted: a request file sent again for a case decided before is
answered from the ledger, its acknowledgement and result byte for byte as before, never decided
a second time (the case is kept with its decision in the same call that decides it)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from connectors.filedrop import FileDropConnector
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour, Verdict
from gateway.simulators.hospital import HospitalSimulator
from gateway.simulators.ledger import EffectLedger
from tests.integration.test_hospital import request_for
from tests.integration.test_hospital_unanswered import Clock


@pytest.mark.parametrize("outcome", ["completed", "denied"])
async def test_a_request_sent_again_after_a_restart_gets_the_same_answers(
    tmp_path: Path, outcome: str
) -> None:
    folders = {k: tmp_path / k for k in ("outbox", "inbox", "archive", "error")}
    for folder in folders.values():
        folder.mkdir()
    config = SystemConfig.model_validate({"kind": "filedrop", **folders})
    request = request_for()
    connector = FileDropConnector("hospital", config)
    await connector.send(request)
    await connector.close()
    clock = Clock()
    behaviour = Behaviour(by_application={request.application_id: Verdict(outcome)})  # type: ignore[arg-type]
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    names = [f"{request.task_id}.ack.xml", f"{request.task_id}.result.xml"]

    async def answers() -> list[bytes]:
        return [await asyncio.to_thread((folders["inbox"] / n).read_bytes) for n in names]

    try:
        first = HospitalSimulator(config, behaviour, ledger, clock=clock)
        first.processed.mkdir()  # as start() does; scanned by hand
        await first.scan()
        before = await answers()
        await first.stop()
        clock.now += 3600  # restarted an hour later; the gateway sends the request again
        sent = folders["outbox"] / "processed" / f"{request.task_id}.req.xml"
        await asyncio.to_thread(shutil.copy, sent, folders["outbox"])
        again = HospitalSimulator(config, behaviour, ledger, clock=clock)
        await again.scan()
        await again.stop()
        assert await answers() == before
        assert len(await ledger.effects()) == (1 if outcome == "completed" else 0)
    finally:
        ledger.close()
