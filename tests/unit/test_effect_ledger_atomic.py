"""The simulators' effect ledger: calls combined in one hop (``EffectLedger.run``) stand or fall
together, so a decision whose case could not be kept leaves no effect applied behind it (the
simulator decides it again, from nothing)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.simulators.ledger import EffectLedger, LedgerCalls

BORN = {"citizen_id": "43102220261120001X", "result_no": "CS1"}


def _approve(state: dict[str, object]) -> Callable[[LedgerCalls], dict[str, Any]]:
    def approve(calls: LedgerCalls) -> dict[str, Any]:
        stored = calls.apply("hukou", "app", "hukou", "app.hukou", BORN)
        calls.keep_case("hukou", "app.hukou", "HK1", state)
        return stored

    return approve


async def test_a_combined_call_that_fails_leaves_nothing_applied(tmp_path: Path) -> None:
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    try:
        with pytest.raises(TypeError):  # the case cannot be kept (not JSON)
            await ledger.run(_approve({"status": "APPROVED", "at": object()}))
        assert await ledger.applied("hukou", "app.hukou") is None
        assert await ledger.citizen_ids("hukou", "43102220261120") == set()
        assert await ledger.case("hukou", key="app.hukou") is None
        assert await ledger.run(_approve({"status": "APPROVED"})) == BORN  # decided again
        assert await ledger.case("hukou", case_no="HK1") == {"status": "APPROVED"}
        assert len(await ledger.effects("app")) == 1
    finally:
        ledger.close()


async def test_a_combined_call_reads_what_it_wrote_and_others_see_it_once_done(
    tmp_path: Path,
) -> None:
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    other = EffectLedger(tmp_path / "ledger.sqlite3")  # another process's connection
    try:

        def approve(calls: LedgerCalls) -> set[str]:
            calls.apply("hukou", "app", "hukou", "app.hukou", BORN)
            return calls.citizen_ids("hukou", "43102220261120")

        assert await ledger.run(approve) == {BORN["citizen_id"]}
        assert await other.citizen_ids("hukou", "43102220261120") == {BORN["citizen_id"]}
    finally:
        other.close()
        ledger.close()
