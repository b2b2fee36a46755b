"""Folder scanners woken by inotify, in real folders: the gateway's result source and the
hospital simulator's in-tray scan run at once when a file arrives, not at the next interval
(3600 s here: a scan within a few seconds can only have been woken); without inotify they still
scan at their interval. These are correctness checks, not speed measurements."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import struct
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from connectors import folderwatch
from connectors.base import Decision
from connectors.filedrop import FileDropConnector, FileDropResultSource
from connectors.folderwatch import (
    IN_CREATE,
    IN_IGNORED,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    FolderWatch,
    InotifyUnavailable,
    worth_a_scan,
)
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour
from gateway.simulators.hospital import HospitalSimulator
from gateway.simulators.ledger import EffectLedger
from tests.integration.test_hospital import request_for
from tests.support.waiting import eventually, true

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")
ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Acknowledgement xmlns="urn:one-window:hospital:v1" '
    'version="1.0"><TaskId>{task}</TaskId><CaseNo>H1</CaseNo>'
    "<AcceptedAt>2026-11-27T10:00:00+08:00</AcceptedAt></Acknowledgement>\n"
)
LONG = 3600.0  # an interval no test waits for: a scan in seconds was woken by the watch


def _config(root: Path) -> SystemConfig:
    folders = {k: root / k for k in ("outbox", "inbox", "archive", "error")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return SystemConfig.model_validate({"kind": "filedrop", **folders})


def _move_in(folder: Path, name: str, data: bytes) -> None:
    """As a careful writer does: a dot-file written, then renamed into place."""
    temp = folder / f".{name}.tmp"
    temp.write_bytes(data)
    os.replace(temp, folder / name)


def _answer(inbox: Path, task: str) -> None:
    data = ACK.format(task=task).encode()
    _move_in(inbox, f"{task}.ack.xml", data)
    sidecar = f"{hashlib.sha256(data).hexdigest()}  {task}.ack.xml\n".encode()
    _move_in(inbox, f"{task}.ack.xml.sha256", sidecar)


def _inotify_fds() -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd) == "anon_inode:inotify"
        except OSError:
            continue
    return count


def _event(mask: int, name: bytes) -> bytes:
    padded = name + b"\0" * (16 - len(name) % 16) if name else b""
    return struct.pack("iIII", 1, mask, 0, len(padded)) + padded


def test_only_events_a_scanner_would_read_wake_it() -> None:
    assert worth_a_scan(_event(IN_MOVED_TO, b"x.ack.xml")) == (True, False)
    assert worth_a_scan(_event(IN_CREATE, b".x.ack.xml.1a2b.tmp")) == (False, False)
    burst = _event(IN_CREATE, b".t.tmp") + _event(IN_MOVED_TO, b"t.result.xml.sha256")
    assert worth_a_scan(burst) == (True, False)
    assert worth_a_scan(_event(IN_Q_OVERFLOW, b"")) == (True, False)
    assert worth_a_scan(_event(IN_IGNORED, b"")) == (True, True)


@linux_only
async def test_a_file_moved_in_ends_the_wait_at_once_and_a_burst_wakes_once(
    tmp_path: Path,
) -> None:
    watch = FolderWatch(tmp_path, name="test")
    watch.start()
    try:
        assert watch.watching
        waiting = asyncio.create_task(watch.wait(LONG))
        await asyncio.sleep(0)
        _move_in(tmp_path, "a.req.xml", b"<a/>")
        assert await asyncio.wait_for(waiting, 5) is True
        for n in range(5):  # a burst while "scanning": one more wake-up, not five
            _move_in(tmp_path, f"b{n}.req.xml", b"<b/>")
        await asyncio.sleep(0.05)  # let the loop read the events (no assertion on time)
        assert await asyncio.wait_for(watch.wait(LONG), 5) is True
        assert await watch.wait(0.05) is False
        assert watch.wakeups == 2
    finally:
        watch.close()
    assert not watch.watching


@linux_only
async def test_a_folder_made_after_the_start_is_watched_once_it_exists(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    watch = FolderWatch(folder, name="test")
    watch.start()
    try:
        assert not watch.watching
        assert await watch.wait(0.01) is False
        folder.mkdir()
        assert await watch.wait(LONG) is True  # watched now: files may have come, scan
        assert watch.watching
        waiting = asyncio.create_task(watch.wait(LONG))
        await asyncio.sleep(0)
        _move_in(folder, "a.req.xml", b"<a/>")
        assert await asyncio.wait_for(waiting, 5) is True
    finally:
        watch.close()


class _Counted:
    """The result source's real scans, counted: the test knows when the first has passed."""

    def __init__(self, source: FileDropResultSource) -> None:
        self.scans = 0
        self.decisions: list[Decision] = []
        real = source.scan

        async def scan(report: object) -> object:
            counts = await real(self.report)
            self.scans += 1
            return counts

        source.scan = scan  # type: ignore[method-assign,assignment]

    async def report(self, decision: Decision) -> None:
        self.decisions.append(decision)


async def _until(probe: Callable[[], object], within: float = 5.0) -> None:
    """Wait for ``probe`` within a few seconds (far below the 3600 s interval) or fail."""
    assert await eventually(lambda: true(bool(probe())), within), "not within the time allowed"


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[FileDropResultSource, _Counted, Path]]:
    config = _config(tmp_path)
    source = FileDropResultSource("hospital", config, scan_seconds=LONG, grace_seconds=60)
    counted = _Counted(source)
    task = asyncio.create_task(source.run(counted.report))
    await _until(lambda: counted.scans >= 1)  # the first scan, at the start, is over
    yield source, counted, Path(str(config.inbox))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@linux_only
async def test_an_answer_is_reported_long_before_the_scan_interval(
    running: tuple[FileDropResultSource, _Counted, Path],
) -> None:
    source, counted, inbox = running
    task = "0190a0b0-0000-7000-8000-000000000001.birth_certificate"
    _answer(inbox, task)
    await _until(lambda: [d.task_id for d in counted.decisions] == [task])
    assert counted.decisions[0].outcome == "in_progress"
    assert source.watch is not None and source.watch.wakeups >= 1


@linux_only
async def test_the_watch_and_the_threads_end_with_the_source(tmp_path: Path) -> None:
    config = _config(tmp_path)
    source = FileDropResultSource("hospital", config, scan_seconds=LONG)
    before = _inotify_fds()
    counted = _Counted(source)
    task = asyncio.create_task(source.run(counted.report))
    await _until(lambda: counted.scans >= 1)
    assert _inotify_fds() == before + 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert _inotify_fds() == before
    await _until(lambda: not _threads("filedrop-hospital-scan"))


def _threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


async def test_the_connector_s_threads_end_with_close(tmp_path: Path) -> None:
    connector = FileDropConnector("hospital", _config(tmp_path))
    await connector.send(request_for())
    assert _threads("filedrop-hospital_")
    await connector.close()
    await _until(lambda: not _threads("filedrop-hospital_"))


async def test_without_inotify_the_source_scans_at_its_interval_and_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable() -> int:
        raise InotifyUnavailable(errno.ENOSYS, "no inotify here")

    monkeypatch.setattr(folderwatch, "inotify_init", unavailable)
    config = _config(tmp_path)
    source = FileDropResultSource("hospital", config, scan_seconds=0.05, grace_seconds=60)
    counted = _Counted(source)
    with capture_logs() as logs:
        task = asyncio.create_task(source.run(counted.report))
        try:
            await _until(lambda: counted.scans >= 1)
            _answer(
                Path(str(config.inbox)), "0190a0b0-0000-7000-8000-000000000002.birth_certificate"
            )
            await _until(lambda: len(counted.decisions) == 1)
            first = counted.scans
            await _until(lambda: counted.scans >= first + 3)  # it keeps scanning
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert source.watch is not None and not source.watch.watching
    assert source.watch.wakeups == 0
    warned = [e for e in logs if e["event"] == "folder_watch_unavailable"]
    assert len(warned) == 1 and warned[0]["reason"] == "no inotify here"


@linux_only
async def test_the_hospital_takes_a_request_long_before_its_scan_interval(tmp_path: Path) -> None:
    config = _config(tmp_path)
    ledger = EffectLedger()
    sim = HospitalSimulator(config, Behaviour(seed=7), ledger, scan_seconds=LONG)
    connector = FileDropConnector("hospital", config)
    await sim.start()
    try:
        await _until(lambda: sim.scans >= 1)
        request = request_for()
        await connector.send(request)
        ack = Path(str(config.inbox)) / f"{request.task_id}.ack.xml.sha256"
        await _until(ack.exists)
        assert sim.watch is not None and sim.watch.wakeups >= 1
    finally:
        await sim.stop()
        await connector.close()
        ledger.close()
    await _until(lambda: not _threads("hospital-simulator"))
