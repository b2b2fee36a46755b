"""The file-drop result source does not hold an answer back while a scan still reports:
a file that arrives meanwhile is taken by the next scan at once, each file is reported once,
and a task's acknowledgement is still reported before its result."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.base import Decision
from connectors.filedrop import FileDropResultSource
from gateway.settings import SystemConfig
from tests.support.waiting import eventually, true

ROOT = Path(__file__).parents[2]
NS = "urn:one-window:hospital:v1"
FIXTURE_TASK = b"0190a0b0-0000-7000-8000-000000000001.birth_certificate"


def _task(n: int) -> str:
    return f"0190a0b0-0000-7000-8000-{n:012d}.birth_certificate"


def _drop(inbox: Path, name: str, data: bytes) -> None:
    """As the hospital writes an answer: the data, then its checksum sidecar."""
    (inbox / name).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (inbox / f"{name}.sha256").write_text(f"{digest}  {name}\n")


def _result(inbox: Path, task: str) -> None:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<CertificateResult xmlns="{NS}" version="1.0">'
        f"<TaskId>{task}</TaskId><Kind>BIRTH</Kind><CaseNo>H1</CaseNo><Status>ISSUED</Status>"
        "<DecidedAt>2026-11-27T10:02:00+08:00</DecidedAt>"
        "<CertificateNo>R431022007</CertificateNo></CertificateResult>\n"
    )
    _drop(inbox, f"{task}.result.xml", body.encode())


def _ack(inbox: Path, task: str) -> None:
    data = (ROOT / "tests" / "fixtures" / "hospital" / "ack.xml").read_bytes()
    _drop(inbox, f"{task}.ack.xml", data.replace(FIXTURE_TASK, task.encode()))


class HeldReports:
    """Reports into a list; a report of a task in ``held`` waits until the task is let go."""

    def __init__(self, *held: str) -> None:
        self.decisions: list[Decision] = []
        self.started: list[Decision] = []
        self._gates = {task: asyncio.Event() for task in held}

    async def __call__(self, decision: Decision) -> None:
        self.started.append(decision)
        gate = self._gates.get(decision.task_id)
        if gate is not None:
            await gate.wait()
        self.decisions.append(decision)

    def let_go(self, task: str) -> None:
        self._gates[task].set()

    def of(self, task: str) -> list[str]:
        return [d.outcome for d in self.decisions if d.task_id == task]


@pytest.fixture
def config(tmp_path: Path) -> SystemConfig:
    for name in ("outbox", "inbox", "archive", "error"):
        (tmp_path / name).mkdir()
    return SystemConfig(
        kind="filedrop",
        outbox=tmp_path / "outbox",
        inbox=tmp_path / "inbox",
        archive=tmp_path / "archive",
        error=tmp_path / "error",
    )


@pytest.fixture
def inbox(config: SystemConfig) -> Path:
    return Path(str(config.inbox))


async def _running(source: FileDropResultSource, reports: HeldReports) -> asyncio.Task[None]:
    return asyncio.create_task(source.run(reports))


@pytest.fixture
async def source(config: SystemConfig) -> AsyncIterator[FileDropResultSource]:
    # a long fallback interval: only a file's arrival starts a scan here
    made = FileDropResultSource("hospital", config, scan_seconds=30.0, grace_seconds=60)
    yield made
    made.close()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_an_answer_arriving_while_a_report_waits_is_reported_without_waiting_for_it(
    source: FileDropResultSource, inbox: Path
) -> None:
    slow, quick = _task(1), _task(2)
    reports = HeldReports(slow)
    task = await _running(source, reports)
    try:
        _result(inbox, slow)
        assert await eventually(lambda: true(any(d.task_id == slow for d in reports.started)))
        _result(inbox, quick)
        assert await eventually(lambda: true(reports.of(quick) == ["completed"]))
        assert reports.of(slow) == []  # still in its report: the quick one did not wait
        reports.let_go(slow)
        assert await eventually(lambda: true(reports.of(slow) == ["completed"]))
        assert await eventually(lambda: true(os.listdir(inbox) == []))
    finally:
        await _stop(task)
    assert sorted(d.task_id for d in reports.decisions) == [slow, quick]  # each once
    archive = Path(str(source._archive))
    assert sorted(os.listdir(archive)) == sorted(
        f"{t}.result.xml{s}" for t in (slow, quick) for s in ("", ".sha256")
    )


async def test_a_result_waits_for_its_own_ack_reported_by_an_earlier_scan(
    source: FileDropResultSource, inbox: Path
) -> None:
    held, other = _task(3), _task(4)
    reports = HeldReports(held)
    task = await _running(source, reports)
    try:
        _ack(inbox, held)
        assert await eventually(lambda: true(any(d.task_id == held for d in reports.started)))
        _result(inbox, held)  # taken by a later scan while the ack is still being reported
        _result(inbox, other)
        assert await eventually(lambda: true(reports.of(other) == ["completed"]))
        assert [d.outcome for d in reports.started if d.task_id == held] == ["in_progress"]
        reports.let_go(held)
        assert await eventually(lambda: true(reports.of(held) == ["in_progress", "completed"]))
        assert await eventually(lambda: true(os.listdir(inbox) == []))
    finally:
        await _stop(task)
    assert len(reports.decisions) == 3  # nothing reported twice


async def test_a_result_whose_ack_failed_to_report_is_left_for_a_later_scan(
    source: FileDropResultSource, inbox: Path
) -> None:
    task_id = _task(5)
    fail = asyncio.Event()
    reports: list[str] = []

    async def report(decision: Decision) -> None:
        if decision.outcome == "in_progress" and not fail.is_set():
            fail.set()
            await asyncio.sleep(0.2)  # the result arrives meanwhile, taken by the next scan
            raise RuntimeError("store unavailable")
        reports.append(decision.outcome)

    _ack(inbox, task_id)
    first = asyncio.create_task(source.scan(report))
    await fail.wait()
    _result(inbox, task_id)
    second = await source.scan(report)  # overlaps the first: the result waits for its ack
    assert second.reported == 0 and reports == []
    with pytest.raises(RuntimeError):
        await first
    assert sorted(os.listdir(inbox)) == sorted(
        f"{task_id}.{k}.xml{s}" for k in ("ack", "result") for s in ("", ".sha256")
    )
    await source.scan(report)  # both again, in turn
    assert reports == ["in_progress", "completed"]


async def test_two_scans_started_at_once_report_each_answer_once(
    source: FileDropResultSource, inbox: Path
) -> None:
    # both surveys run before either scan has taken its files: the later one must still
    # leave to the first what the first took (else each reports it, the archive aside)
    tasks = [_task(n) for n in range(10, 16)]
    for task_id in tasks:
        _ack(inbox, task_id)
        _result(inbox, task_id)
    reports = HeldReports()
    first, second = await asyncio.gather(source.scan(reports), source.scan(reports))
    assert first.reported + second.reported == 12
    for task_id in tasks:
        assert reports.of(task_id) == ["in_progress", "completed"]
    assert os.listdir(inbox) == []


async def test_old_files_one_scan_holds_are_not_judged_incomplete_by_another(
    source: FileDropResultSource, inbox: Path
) -> None:
    # the gateway back after an outage: every file in the inbox is older than the grace
    held = _task(20)
    _result(inbox, held)
    past = os.stat(inbox).st_mtime - 3600
    for name in os.listdir(inbox):
        os.utime(inbox / name, (past, past))
    reports = HeldReports(held)
    first = asyncio.create_task(source.scan(reports))
    assert await eventually(lambda: true(any(d.task_id == held for d in reports.started)))
    second = await source.scan(reports)  # the file and its sidecar are the first scan's
    assert (second.parked, second.waiting, second.reported) == (0, 0, 0)
    reports.let_go(held)
    assert (await first).reported == 1
    assert os.listdir(Path(str(source._error))) == []
    assert sorted(os.listdir(Path(str(source._archive)))) == [
        f"{held}.result.xml",
        f"{held}.result.xml.sha256",
    ]
