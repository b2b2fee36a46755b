"""``gateway report ledger`` and ``gateway apps show`` as an operator runs them: a real
process over a real SQLite file, seeded by the planner on a controlled clock (the same
two applications as ``tests/store/test_reports.py``)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from gateway.store import open_store
from tests.store.test_reports import seeded


def gateway(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env={"GATEWAY_DATABASE_URL": f"sqlite:///{db}", "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


async def test_report_ledger_and_apps_show(tmp_path: Path) -> None:
    db = tmp_path / "gw.sqlite3"
    store = await open_store(f"sqlite:///{db}")
    try:
        await seeded(store)
    finally:
        await store.close()

    table = gateway(db, "report", "ledger", "--month", "2026-11")
    assert table.returncode == 0, table.stderr
    police = next(ln for ln in table.stdout.splitlines() if ln.startswith("public_security"))
    # received 1, on time 0, late 1, cancelled 0, open 0, overdue 1, 2.5 h, p90 2.5, 1 correction
    assert police.split()[-10:] == ["1", "0", "1", "0", "0", "1", "2.50", "2.50", "1", "0"]

    out = tmp_path / "ledger.csv"
    written = gateway(
        db, "report", "ledger", "--month", "2026-11", "--format", "csv", "--out", str(out)
    )
    assert written.returncode == 0 and f"wrote {out}" in written.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    total = rows[-1]
    assert (total["department"], total["received"], total["open_overdue"]) == ("*", "5", "3")

    october = gateway(db, "report", "ledger", "--month", "2026-10", "--format", "json")
    data = json.loads(october.stdout)
    assert data["month"] == "2026-10" and data["total"]["received"] == 3  # app2's three

    bad = gateway(db, "report", "ledger", "--month", "2026-13")
    assert bad.returncode == 2 and "expected YYYY-MM" in bad.stderr and bad.stdout == ""

    shown = gateway(db, "apps", "show", "app1")
    view = json.loads(shown.stdout)
    # accepted_at is the wall clock of the seeding (the store sets it); the path is fixed
    assert view["critical_path"] == ["birth_certificate", "hukou", "medical_insurance"]
    assert view["due_at"] and view["promise"]["unit"] == "WORKDAY"


def test_read_only_commands_refuse_a_database_that_is_not_there(tmp_path: Path) -> None:
    # a mistyped relative path: the commands name the file they looked for, resolved
    # against the working directory, and create nothing
    for args in (("report", "ledger", "--month", "2026-11"), ("tasks", "overdue")):
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            capture_output=True,
            text=True,
            env={
                "GATEWAY_DATABASE_URL": "sqlite:///var/gw-typo.sqlite3",
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(Path(__file__).parents[2]),  # the gateway under test
            },
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and done.stdout == "", done.stdout
        assert (
            f"no database at var/gw-typo.sqlite3 (resolved to {tmp_path.resolve()}" in done.stderr
        )
        assert not (tmp_path / "var" / "gw-typo.sqlite3").exists()
