"""The simulators' effect ledger: calls combined in one hop (``EffectLedger.run``) are the
calls made one by one, on the ledger's one thread."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from gateway.simulators.ledger import EffectLedger, LedgerCalls

BORN = {"citizen_id": "43102220261120001X", "result_no": "CS1"}


async def test_combined_calls_apply_once_and_read_what_one_by_one_reads(tmp_path: Path) -> None:
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    try:
        threads: list[str] = []

        def decide(calls: LedgerCalls) -> tuple[set[str], dict[str, Any], dict[str, Any]]:
            threads.append(threading.current_thread().name)
            before = calls.citizen_ids("hukou", "43102220261120")
            first = calls.apply("hukou", "app", "hukou", "app.hukou", BORN)
            again = calls.apply("hukou", "app", "hukou", "app.hukou", {**BORN, "result_no": "x"})
            calls.keep_case("hukou", "app.hukou", "HK1", {"status": "APPROVED"})
            return before, first, again

        before, first, again = await ledger.run(decide)
        assert threads == ["effect-ledger_0"]
        assert before == set() and first == again == BORN  # the first one stands
        assert await ledger.citizen_ids("hukou", "43102220261120") == {BORN["citizen_id"]}
        assert await ledger.applied("hukou", "app.hukou") == BORN
        assert await ledger.case("hukou", case_no="HK1") == {"status": "APPROVED"}
        assert await ledger.case("hukou", key="app.hukou") == {"status": "APPROVED"}
        assert await ledger.case("hukou", key="other") is None
        assert await ledger.applied("hukou", "other") is None
        assert await ledger.double_effects() == [] and len(await ledger.effects("app")) == 1
    finally:
        ledger.close()
