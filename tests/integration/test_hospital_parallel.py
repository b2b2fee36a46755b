"""The hospital simulator takes a scan's files side by side: every request is still acknowledged
and decided once, and the certificates it issues are numbered without a gap or a repeat."""

from __future__ import annotations

import re
from pathlib import Path

from connectors.filedrop import FileDropConnector
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour
from gateway.simulators.hospital import HospitalSimulator
from gateway.simulators.ledger import EffectLedger
from tests.integration.test_hospital import request_for
from tests.support.waiting import eventually, true

CERTIFICATE = re.compile(rb"<CertificateNo>(R\d{9})</CertificateNo>")


async def test_a_burst_is_taken_side_by_side_each_request_once(tmp_path: Path) -> None:
    folders = {k: tmp_path / k for k in ("outbox", "inbox", "archive", "error")}
    for folder in folders.values():
        folder.mkdir()
    config = SystemConfig.model_validate({"kind": "filedrop", **folders})
    requests = [request_for() for _ in range(12)]
    connector = FileDropConnector("hospital", config)
    for request in requests:  # all in the in-tray before the simulator's first scan
        await connector.send(request)
    await connector.close()
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    sim = HospitalSimulator(config, Behaviour(), ledger, scan_seconds=0.02, parallel=4)
    await sim.start()
    try:
        sidecars = [folders["inbox"] / f"{r.task_id}.result.xml.sha256" for r in requests]
        assert await eventually(lambda: true(all(p.exists() for p in sidecars)))
        numbers = sorted(
            m[1].decode()
            for r in requests
            for m in [
                CERTIFICATE.search((folders["inbox"] / f"{r.task_id}.result.xml").read_bytes())
            ]
            if m is not None
        )
        assert numbers == [f"R{n:09d}" for n in range(1, 13)]
        assert await ledger.double_effects() == []
        assert await ledger.delivery_count("hospital") == 12
        assert sorted(p.name for p in (folders["outbox"] / "processed").iterdir()) == sorted(
            f"{r.task_id}.req.xml" for r in requests
        )
    finally:
        await sim.stop()
        ledger.close()
