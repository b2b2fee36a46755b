"""Hostile names and files in real drop folders: nothing is read outside the inbox, nothing
but a regular file is ever opened, the scan never stops, and the good answer in the same
scan is still reported.

Names cannot hold ``/`` or NUL on a POSIX file system, so ``../x.xml``, absolute paths and NUL
can only reach the gateway as task ids (the request side); the inbox side gets newlines,
undecodable bytes, names longer than the error folder can extend, symbolic links, FIFOs,
sockets, folders named like answers and a 1 GB sparse file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from connectors.base import Decision, DepartmentRequest, Unreadable
from connectors.filedrop import FileDropConnector, FileDropResultSource
from gateway.errors import Permanent
from gateway.settings import SystemConfig
from mappings.hospital import NS
from tests.hostile.kit import MEMORY_BOUND, peak_growth

GOOD_TASK = "0190a0b0-0000-7000-8000-000000000001.birth_certificate"


class Reports:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    async def __call__(self, decision: Decision) -> None:
        self.decisions.append(decision)


@pytest.fixture
def folders(tmp_path: Path) -> SystemConfig:
    base = tmp_path / "hospital"
    for name in ("outbox", "inbox", "archive", "error"):
        (base / name).mkdir(parents=True)
    return SystemConfig(kind="filedrop", outbox=base / "outbox", inbox=base / "inbox",
                        archive=base / "archive", error=base / "error")  # fmt: skip


def path(config: SystemConfig, key: str) -> Path:
    return Path(str(getattr(config, key)))


def result_xml(task: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><CertificateResult xmlns="{NS}" version="1.0">'
        f"<TaskId>{task}</TaskId><Kind>BIRTH</Kind><CaseNo>H1</CaseNo><Status>ISSUED</Status>"
        "<DecidedAt>2026-11-27T10:02:00+08:00</DecidedAt>"
        "<CertificateNo>R431022007</CertificateNo></CertificateResult>"
    ).encode()


def sidecar(folder: Path | bytes, name: str | bytes, data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    raw_name = os.fsencode(name)
    target = os.path.join(os.fsencode(folder), raw_name + b".sha256")
    with open(target, "wb") as f:
        f.write(digest.encode() + b"  " + raw_name + b"\n")


def drop_good(inbox: Path) -> None:
    data = result_xml(GOOD_TASK)
    (inbox / f"{GOOD_TASK}.result.xml").write_bytes(data)
    sidecar(inbox, f"{GOOD_TASK}.result.xml", data)


def age(folder: Path) -> None:
    """Make every entry older than the grace period (symbolic links themselves, not targets)."""
    then = time.time() - 3600
    for raw in os.listdir(os.fsencode(folder)):
        os.utime(os.path.join(os.fsencode(folder), raw), (then, then), follow_symlinks=False)


def tree(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*"))


def write_raw(folder: Path, raw_name: bytes, data: bytes, size: int | None = None) -> None:
    with open(os.path.join(os.fsencode(folder), raw_name), "wb") as f:
        f.write(data)
        if size is not None:
            f.truncate(size)  # sparse: the file claims ``size`` bytes without the disk


def bind_unix_socket(folder: Path, name: str) -> socket.socket:
    """A socket file in ``folder`` (bound through the folder's descriptor: paths are long)."""
    fd = os.open(folder, os.O_RDONLY)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(f"/proc/self/fd/{fd}/{name}")
    finally:
        os.close(fd)
    return sock


def release_a_blocked_reader(fifo: Path) -> None:
    """If a reader did block on the FIFO (the bug this guards against), give it EOF so the
    test fails instead of hanging the worker thread for ever."""
    with contextlib.suppress(OSError):  # ENXIO: nobody is reading, as it should be
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def listing(folder: Path) -> list[bytes]:
    return sorted(os.listdir(os.fsencode(folder)))


def scan(source: FileDropResultSource, reports: Reports) -> object:
    # A guard, not a timed assertion: a scan that opened a FIFO would block for ever.
    return asyncio.wait_for(source.scan(reports), timeout=60)


# --- the request side: task ids are never paths ---------------------------------------------------
@pytest.mark.parametrize(
    "task_id",
    ["../x", "../../etc/cron.d/x", "/etc/passwd", "a/b", "..", ".hidden", "", "nul\x00x",
     "new\nline", "x" * 300, "tab\tx", "é"],
)  # fmt: skip
async def test_a_task_id_that_could_name_a_path_is_permanent_and_writes_nothing(
    task_id: str, folders: SystemConfig, tmp_path: Path
) -> None:
    before = tree(tmp_path)
    connector = FileDropConnector("hospital", folders)
    request = DepartmentRequest(task_id, "app", "newborn", "birth_certificate", "hospital",
                                "birth_certificate", 1, {})  # fmt: skip
    with pytest.raises(Permanent) as info:
        await connector.send(request)
    assert info.value.code == "unsafe_name"
    assert tree(tmp_path) == before


# --- the answer side: one scan full of hostile entries and one good answer ------------------------
async def test_hostile_entries_never_stop_the_scan_and_the_good_answer_is_reported(
    folders: SystemConfig, tmp_path: Path
) -> None:
    inbox, error = path(folders, "inbox"), path(folders, "error")
    outside = tmp_path / "outside"
    outside.mkdir()
    elsewhere = "0190a0b0-0000-7000-8000-00000000000e.birth_certificate.result.xml"
    (outside / elsewhere).write_bytes(result_xml(elsewhere.removesuffix(".result.xml")))

    # a symbolic link to a valid answer outside the inbox, with a matching sidecar
    (inbox / elsewhere).symlink_to(outside / elsewhere)
    sidecar(inbox, elsewhere, (outside / elsewhere).read_bytes())
    # a link to a secret
    (inbox / "x.birth_certificate.result.xml").symlink_to("/etc/passwd")
    # a FIFO and a socket named like answers, with sidecars
    fifo = "0190a0b0-0000-7000-8000-00000000000f.birth_certificate.result.xml"
    os.mkfifo(inbox / fifo)
    sidecar(inbox, fifo, b"")
    sock_name = "0190a0b0-0000-7000-8000-00000000000a.birth_certificate.result.xml"
    sock = bind_unix_socket(inbox, sock_name)
    sidecar(inbox, sock_name, b"")
    # a folder named like an answer, with a good answer inside it
    folder = inbox / "0190a0b0-0000-7000-8000-00000000000d.birth_certificate.result.xml"
    folder.mkdir()
    (folder / "inner.result.xml").write_bytes(result_xml("inner"))
    # names: a newline forging a reason line, undecodable bytes, longer than the error
    # folder can extend with ".reason.txt", and a long name the scanner's pattern refuses
    forged = "a\nreason: accepted, all good.result.xml"
    (inbox / forged).write_bytes(b"junk")
    undecodable = b"bad-\xff\xfe.result.xml"
    write_raw(inbox, undecodable, b"junk")
    longest = "L" * (255 - len(".result.xml")) + ".result.xml"
    (inbox / longest).write_bytes(b"junk")
    long_match = "0190a0b0." + "n" * 220 + ".result.xml"  # 240 bytes
    (inbox / long_match).write_bytes(result_xml("x"))
    drop_good(inbox)
    age(inbox)

    source = FileDropResultSource("hospital", folders, scan_seconds=0.01)
    reports = Reports()
    try:
        counts = await scan(source, reports)
    finally:
        sock.close()
    assert [d.task_id for d in reports.decisions] == [GOOD_TASK]
    assert counts.reported == 1  # type: ignore[attr-defined]

    left = set(listing(inbox))
    for name in (elsewhere, "x.birth_certificate.result.xml", fifo, sock_name, folder.name):
        assert os.fsencode(name) in left, name  # never opened, never moved: left alone
    assert (inbox / elsewhere).is_symlink() and stat.S_ISFIFO(os.lstat(inbox / fifo).st_mode)
    assert (folder / "inner.result.xml").exists()
    # every badly named regular file went to the error folder with an honest reason
    parked = set(listing(error))
    for name in (forged.encode(), undecodable, longest.encode(), long_match.encode()):
        assert name not in left
    why: list[str] = []
    for name in sorted(n for n in parked if n.endswith(b".reason.txt")):
        text = (error / os.fsdecode(name)).read_text(encoding="utf-8")
        lines = text.splitlines()
        assert [line.split(":")[0] for line in lines] == ["file", "reason"], text
        why.append(lines[1])
    # the four odd names, and the sidecars of the link, the FIFO and the socket (their data
    # "file" is not a file)
    assert (
        sorted(why)
        == ["reason: checksum file without its data file"] * 3
        + ["reason: unexpected file name"] * 4
    ), why
    assert b"file: a\\nreason: accepted" in b"".join(
        (error / os.fsdecode(n)).read_bytes() for n in parked if n.endswith(b".reason.txt")
    )
    assert all(len(n) <= 255 for n in parked)

    # the next scan is quiet: what was left alone stays, nothing is reported twice
    before_again = set(listing(error))
    again = await scan(source, reports)
    assert set(listing(error)) == before_again, set(listing(error)) - before_again
    assert again.reported == 0 and again.parked == 0  # type: ignore[attr-defined]
    assert len(reports.decisions) == 1


async def test_a_1_gb_sparse_answer_is_parked_after_reading_one_mib(
    folders: SystemConfig,
) -> None:
    inbox, error = path(folders, "inbox"), path(folders, "error")
    name = "0190a0b0-0000-7000-8000-0000000000bb.birth_certificate.result.xml"
    write_raw(inbox, name.encode(), result_xml(name.removesuffix(".result.xml"))[:-20], 1 << 30)
    sidecar(inbox, name, b"whatever it claims")
    drop_good(inbox)
    source = FileDropResultSource("hospital", folders, scan_seconds=0.01)
    reports = Reports()
    with peak_growth() as peak:
        counts = await scan(source, reports)
    assert [d.task_id for d in reports.decisions] == [GOOD_TASK]
    assert counts.parked == 1  # type: ignore[attr-defined]
    reason = (error / f"{name}.reason.txt").read_text(encoding="utf-8")
    assert "larger than 1048576 bytes" in reason
    assert (error / name).stat().st_size == 1 << 30  # moved, not copied
    assert peak.growth < MEMORY_BOUND, peak


async def test_a_file_swapped_for_a_fifo_between_listing_and_reading_is_not_opened(
    folders: SystemConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a listing cannot close: the entry is a regular file when listed and a FIFO
    when opened. Opening must not block, and the scan goes on."""
    inbox = path(folders, "inbox")
    name = "0190a0b0-0000-7000-8000-0000000000cc.birth_certificate.result.xml"
    (inbox / name).write_bytes(result_xml(name.removesuffix(".result.xml")))
    sidecar(inbox, name, (inbox / name).read_bytes())
    drop_good(inbox)
    source = FileDropResultSource("hospital", folders, scan_seconds=0.01)
    real_look = source._look_at

    def look(name_: str, *args: object) -> object:
        if name_ == name:
            os.unlink(inbox / name)
            os.mkfifo(inbox / name)
        return real_look(name_, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(source, "_look_at", look)
    reports = Reports()
    try:
        await scan(source, reports)
    finally:
        release_a_blocked_reader(inbox / name)
    assert [d.task_id for d in reports.decisions] == [GOOD_TASK]
    assert stat.S_ISFIFO(os.lstat(inbox / name).st_mode)


class Killed(BaseException):
    """The process dies between moving a file to error/ and telling the gateway of it."""


async def test_a_file_set_aside_is_told_after_a_kill_between_the_move_and_the_telling(
    folders: SystemConfig,
) -> None:
    inbox, error = path(folders, "inbox"), path(folders, "error")
    hostile = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'
    name = f"{GOOD_TASK}.result.xml"
    (inbox / name).write_bytes(hostile)
    sidecar(inbox, name, hostile)

    async def dies(item: Unreadable) -> None:
        raise Killed

    first = FileDropResultSource("hospital", folders)
    first.on_unreadable = dies
    with pytest.raises(Killed):
        await scan(first, Reports())
    assert (error / name).exists() and not (inbox / name).exists()  # moved, never told

    told: list[Unreadable] = []

    async def tell(item: Unreadable) -> None:
        told.append(item)

    restarted = FileDropResultSource("hospital", folders)
    restarted.on_unreadable = tell
    await scan(restarted, Reports())
    assert [(t.request_id, t.name) for t in told] == [(GOOD_TASK, name)]
    assert "DOCTYPE" in told[0].reason.upper()
    assert not list(error.glob(".untold-*"))  # told: the notice is gone

    again = FileDropResultSource("hospital", folders)
    again.on_unreadable = tell
    await scan(again, Reports())
    assert len(told) == 1  # told once, not at every start
