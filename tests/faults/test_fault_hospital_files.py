"""The hospital's file drop under faults: a result file half-written by a writer that was
SIGKILLed, and a result file delivered twice.

Both read the hospital's out-tray the way the gateway does (``[systems.hospital] inbox``);
the writer is a real OS process writing a real file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.faults.harness import CONNECTORS, CORE, World
from tests.faults.ledger_check import read_store
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

FAKE_NO = "R999999999"  # what the dead writer meant to write; must never be read
SLOW_WRITER = r"""
import hashlib, os, sys, time
folder, name, data = sys.argv[1], sys.argv[2], sys.argv[3].encode()
# the worst writer: the checksum of the whole file first, then the data, slowly
with open(os.path.join(folder, name + ".sha256"), "w") as f:
    f.write(hashlib.sha256(data).hexdigest() + "  " + name + "\n")
with open(os.path.join(folder, name), "wb") as f:
    f.write(data[: len(data) // 2])
    f.flush()
    os.fsync(f.fileno())
    print("half", flush=True)
    time.sleep(3600)
    f.write(data[len(data) // 2 :])
"""


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _result_xml(task_id: str, case_no: str) -> str:
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        '<CertificateResult xmlns="urn:one-window:hospital:v1" version="1.0">'
        f"<TaskId>{task_id}</TaskId><Kind>BIRTH</Kind><CaseNo>{case_no}</CaseNo>"
        "<Status>ISSUED</Status><DecidedAt>2026-11-28T10:00:00+08:00</DecidedAt>"
        f"<CertificateNo>{FAKE_NO}</CertificateNo></CertificateResult>"
    )


async def _birth_task(w: World, app: str) -> tuple[str, str | None, str | None]:
    rows = await asyncio.to_thread(
        read_store,
        w.database_url,
        "SELECT status, case_number, certificate FROM tasks "  # noqa: S608  # a uuid of ours
        f"WHERE application_id = '{app}' AND step = 'birth_certificate'",
    )
    if not rows:
        return "not planned yet", None, None
    status, case_no, certificate = rows[0]
    return str(status), case_no, certificate


async def _in_progress(w: World, app: str) -> bool:
    return (await _birth_task(w, app))[0] == "in_progress"


async def test_half_written_result_from_a_killed_writer_is_never_read(world: World) -> None:
    w = world
    hospital = w.fleet.behaviour("hospital")
    hospital.decision_delay_seconds = 3600.0  # it acknowledges, and decides when told
    gw = w.process("gw", (*CORE, *CONNECTORS))
    await gw.start()
    await w.start_departments()
    victim = (await w.submit(1))[0]
    assert await eventually(lambda: _in_progress(w, victim), within=60)
    _, case_no, _ = await _birth_task(w, victim)
    assert case_no is not None
    out_tray = Path(str(w.systems["hospital"].inbox))
    name = f"{victim}.birth_certificate.result.xml"
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SLOW_WRITER,
        str(out_tray),
        name,
        _result_xml(f"{victim}.birth_certificate", case_no),
        stdout=asyncio.subprocess.PIPE,
    )
    assert writer.stdout is not None
    assert await asyncio.wait_for(writer.stdout.readline(), 30) == b"half\n"
    writer.send_signal(signal.SIGKILL)  # killed mid-write: half a file, a whole checksum
    await writer.wait()
    partial = (out_tray / name).read_bytes()

    # a later application's acknowledgement is read: the gateway has scanned the tray with
    # the half file in it, and left it alone
    sentinel = (await w.submit(1))[0]
    assert await eventually(lambda: _in_progress(w, sentinel), within=60)
    assert await _in_progress(w, victim)
    assert (out_tray / name).read_bytes() == partial
    assert hashlib.sha256(partial).hexdigest() not in (out_tray / (name + ".sha256")).read_text()

    hospital.decision_delay_seconds = 0.0  # the hospital writes its results, whole
    report = await w.check("half-written result file, writer killed mid-write")
    report.assert_sound(completed=2)
    _, _, certificate = await _birth_task(w, victim)
    issued = [e for e in await w.ledger.effects(victim) if e.system == "hospital"]
    assert len(issued) == 1
    assert certificate == issued[0].result["certificate_no"] != FAKE_NO
    parked = await asyncio.to_thread(_names, Path(str(w.systems["hospital"].error)))
    assert parked == []  # nothing was taken for a result, nothing parked as broken


async def test_result_file_delivered_twice_counts_once(world: World) -> None:
    w = world
    gw = w.process("gw", (*CORE, *CONNECTORS))
    await gw.start()
    await w.start_departments()
    apps = await w.submit(3)
    first = await w.check("result file delivered twice (first delivery)")
    first.assert_sound(completed=3)

    archive = Path(str(w.systems["hospital"].archive))
    out_tray = Path(str(w.systems["hospital"].inbox))
    for app in apps:  # the hospital delivers each result again, byte for byte
        name = f"{app}.birth_certificate.result.xml"
        for suffix in (".sha256", ""):  # checksum first: the gateway may take it at once
            shutil.copy(archive / (name + suffix), out_tray / f".{name}{suffix}.tmp")
        for suffix in ("", ".sha256"):
            (out_tray / f".{name}{suffix}.tmp").rename(out_tray / (name + suffix))

    async def taken_again() -> bool:
        waiting = await asyncio.to_thread(_names, out_tray)
        return not [n for n in waiting if n.endswith(".result.xml")]

    assert await eventually(taken_again, within=60)
    report = await w.check("result file delivered twice")
    report.assert_sound(completed=3)
    duplicates = [n for n in await asyncio.to_thread(_names, archive) if ".duplicate-" in n]
    assert len([n for n in duplicates if not n.endswith(".sha256")]) == 3
    assert report.effects == first.effects  # no new effect, no new transition


def _drop(folder: Path, name: str, data: bytes) -> None:
    """A whole file with a matching checksum, as a careful writer leaves it."""
    (folder / f".{name}.tmp").write_bytes(data)
    (folder / f".{name}.sha256.tmp").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    (folder / f".{name}.tmp").rename(folder / name)
    (folder / f".{name}.sha256.tmp").rename(folder / (name + ".sha256"))


async def test_a_hostile_result_file_blocks_its_application_with_the_reason(world: World) -> None:
    w = world
    w.fleet.behaviour("hospital").decision_delay_seconds = 3600.0  # only our file answers
    gw = w.process("gw", (*CORE, *CONNECTORS))
    await gw.start()
    await w.start_departments()
    (victim,) = await w.submit(1)
    assert await eventually(lambda: _in_progress(w, victim), within=60)
    out_tray = Path(str(w.systems["hospital"].inbox))
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><CertificateResult>&b;</CertificateResult>'
    )
    _drop(out_tray, f"{victim}.birth_certificate.result.xml", laughs)  # names a task
    stray = out_tray / "no-such-task~.result.xml"  # names none: a letter alone
    stray.write_bytes(b"<x/>")
    os.utime(stray, (1.0, 1.0))  # left there long ago: past the writers' grace period

    async def both_letters() -> list[tuple[object, ...]]:
        rows = await asyncio.to_thread(
            read_store, w.database_url,
            "SELECT application_id, reason FROM dead_letters ORDER BY id",
        )  # fmt: skip
        return rows if len(rows) >= 2 else []

    letters = await eventually(both_letters, within=60)
    report = await w.check("hostile hospital result file")
    report.assert_sound(completed=0, blocked={victim})
    assert "DOCTYPE" in report.blocked[victim], report.blocked
    assert any(app is None and "unexpected file name" in str(r) for app, r in letters), letters
    status, _, _ = await _birth_task(w, victim)
    assert status == "dead_lettered"
    parked = await asyncio.to_thread(_names, Path(str(w.systems["hospital"].error)))
    assert f"{victim}.birth_certificate.result.xml.reason.txt" in parked
