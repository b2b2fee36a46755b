"""The file-drop connector and result source against the hospital simulator, in real folders."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import re
import subprocess
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from connectors.base import Decision, DepartmentRequest
from connectors.filedrop import FileDropConnector, FileDropResultSource
from gateway.catalogue.fields import select
from gateway.errors import ConfigurationError, Permanent, Retryable
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour, Verdict
from gateway.simulators.hospital import HospitalSimulator
from gateway.simulators.ledger import EffectLedger
from tests.support.waiting import eventually

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "contracts" / "envelope" / "examples" / "valid"
CATALOGUE = ROOT / "gateway" / "catalogue" / "data" / "catalogue-2026.1.toml"
NS = "urn:one-window:hospital:v1"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
BIRTH_NO = re.compile(r"^[A-Z]\d{9}$")
_counter = iter(range(1, 1_000_000))


def schema(name: str) -> etree.XMLSchema:
    """The contract's XSD, loaded here: independent of the connector and the simulator."""
    return etree.XMLSchema(etree.parse(str(ROOT / "contracts" / "hospital" / name), PARSER))


def new_app() -> str:
    return f"0190a0b0-0000-7000-8000-{next(_counter):012d}"


def request_for(
    example: str = "newborn-yizhang-window", key: str = "birth_certificate", app: str | None = None
) -> DepartmentRequest:
    envelope = json.loads((EXAMPLES / f"{example}.json").read_text("utf-8"))
    matter = envelope["matter"]
    steps = tomllib.loads(CATALOGUE.read_text("utf-8"))["matters"][matter]["steps"]
    step = next(s for s in steps if s["key"] == key)
    app = app or new_app()
    fields = select(envelope, step["needs"], {})
    return DepartmentRequest(
        f"{app}.{key}", app, matter, key, "hospital", step["operation"], 1, fields
    )


def changed(request: DepartmentRequest, weight: int) -> DepartmentRequest:
    fields = json.loads(json.dumps(request.fields))
    fields["subjects"]["child"]["weight_g"] = weight
    return DepartmentRequest(
        request.task_id, request.application_id, request.matter, request.task,
        request.system, request.operation, request.attempt + 1, fields,
    )  # fmt: skip


def result_xml(task_id: str, status: str = "ISSUED", extra: str = "") -> bytes:
    body = {
        "ISSUED": "<CertificateNo>R431022007</CertificateNo>",
        "REFUSED": "<Reason>无分娩记录</Reason>",
    }.get(status, "")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<CertificateResult xmlns="{NS}" version="1.0">'
        f"<TaskId>{task_id}</TaskId><Kind>BIRTH</Kind><CaseNo>H1</CaseNo>"
        f"<Status>{status}</Status><DecidedAt>2026-11-27T10:02:00+08:00</DecidedAt>"
        f"{body}{extra}</CertificateResult>\n"
    ).encode()


def drop(folder: Path, name: str, data: bytes, checksum: str | None = "good") -> Path:
    """Write an answer file as the hospital would (data, then the sidecar)."""
    (folder / name).write_bytes(data)
    if checksum == "good":
        digest = hashlib.sha256(data).hexdigest()
        (folder / f"{name}.sha256").write_text(f"{digest}  {name}\n")
    elif checksum == "wrong":
        (folder / f"{name}.sha256").write_text(f"{'0' * 64}  {name}\n")
    return folder / name


def age(*paths: Path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    for path in paths:
        os.utime(path, (then, then))


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


class Reports:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    async def __call__(self, decision: Decision) -> None:
        self.decisions.append(decision)

    def of(self, outcome: str) -> list[Decision]:
        return [d for d in self.decisions if d.outcome == outcome]


@pytest.fixture
def config(tmp_path: Path) -> SystemConfig:
    base = tmp_path / "hospital"
    for name in ("outbox", "inbox"):
        (base / name).mkdir(parents=True)
    return SystemConfig(
        kind="filedrop",
        outbox=base / "outbox",
        inbox=base / "inbox",
        archive=base / "archive",
        error=base / "error",
    )


@pytest.fixture
def folders(config: SystemConfig) -> Any:
    class F:
        outbox, inbox = Path(str(config.outbox)), Path(str(config.inbox))
        archive, error = Path(str(config.archive)), Path(str(config.error))

    F.archive.mkdir()
    F.error.mkdir()
    return F


@pytest.fixture
def ledger() -> Iterator[EffectLedger]:
    book = EffectLedger()
    yield book
    book.close()


@pytest.fixture
def behaviour() -> Behaviour:
    return Behaviour(seed=7)


@pytest.fixture
async def simulator(
    config: SystemConfig, behaviour: Behaviour, ledger: EffectLedger
) -> AsyncIterator[HospitalSimulator]:
    sim = HospitalSimulator(config, behaviour, ledger, scan_seconds=0.02)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
def connector(config: SystemConfig) -> FileDropConnector:
    return FileDropConnector("hospital", config)


@pytest.fixture
def source(config: SystemConfig) -> FileDropResultSource:
    return FileDropResultSource("hospital", config, scan_seconds=0.02, grace_seconds=60)


@pytest.fixture
async def reports(source: FileDropResultSource, folders: Any) -> AsyncIterator[Reports]:
    """The result source running in the background, reporting into a list."""
    collected = Reports()
    task = asyncio.create_task(source.run(collected))
    yield collected
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def scans_pass(sim: HospitalSimulator, n: int = 5) -> None:
    """Let the simulator finish ``n`` more scans: 'nothing happened' without a clock."""
    target = sim.scans + n
    assert await eventually(lambda: _true(sim.scans >= target))


async def _true(value: bool) -> bool:
    return value


async def outcome(reports: Reports, task_id: str, wanted: str) -> Decision:
    async def probe() -> Decision | None:
        found = [d for d in reports.decisions if d.task_id == task_id and d.outcome == wanted]
        return found[0] if found else None

    decision = await eventually(probe)
    assert isinstance(decision, Decision), reports.decisions
    return decision


# --- sending: atomic, idempotent, errors --------------------------------------------------
async def test_atomic_write_shows_no_partial_file_under_the_final_name(
    connector: FileDropConnector, folders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = request_for()
    final = f"{request.task_id}.req.xml"
    seen_at_fsync: list[list[str]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        seen_at_fsync.append(sorted(os.listdir(folders.outbox)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    await connector.send(request)
    first = seen_at_fsync[0]  # the data file's fsync: written, not yet in place
    assert final not in first
    assert len(first) == 1 and first[0].startswith(f".{final}.")
    assert os.listdir(folders.outbox) == [final]  # in place, temp file gone
    assert schema("request.xsd").validate(etree.parse(str(folders.outbox / final), PARSER))


async def test_a_write_failing_midway_leaves_nothing_and_is_retryable(
    connector: FileDropConnector, folders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(Retryable) as caught:
        await connector.send(request_for())
    assert caught.value.code == "EIO"
    assert os.listdir(folders.outbox) == []


def _fill(fd: int) -> None:
    while True:
        os.write(fd, b"\0" * 4096)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real, full file system (a 64 KiB tmpfs); skipped where mounting is not allowed."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        with pytest.raises(OSError, match="No space left"):
            _fill(fd)
        os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


async def test_a_full_disk_is_retryable_and_the_resend_succeeds(
    full_disk: Path, config: SystemConfig
) -> None:
    connector = FileDropConnector("hospital", config.model_copy(update={"outbox": full_disk}))
    request = request_for()
    with pytest.raises(Retryable) as caught:
        await connector.send(request)
    assert caught.value.code == "ENOSPC"
    assert sorted(os.listdir(full_disk)) == ["filler"]
    (full_disk / "filler").unlink()  # space again
    await connector.send(request)
    assert os.listdir(full_disk) == [f"{request.task_id}.req.xml"]


async def test_a_missing_folder_is_retryable_a_wrong_one_permanent_naming_the_folder(
    config: SystemConfig, tmp_path: Path
) -> None:
    missing = tmp_path / "not-mounted"  # a share not mounted right now: it comes back
    connector = FileDropConnector("hospital", config.model_copy(update={"outbox": missing}))
    request = request_for()
    with pytest.raises(Retryable, match="not-mounted") as caught:
        await connector.send(request)
    assert caught.value.code == "ENOENT"
    missing.mkdir()  # mounted again: the retry drops the request
    await connector.send(request)
    assert os.listdir(missing) == [f"{request.task_id}.req.xml"]
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    connector = FileDropConnector("hospital", config.model_copy(update={"outbox": a_file}))
    with pytest.raises(Permanent, match="a-file"):
        await connector.send(request_for())
    with pytest.raises(ConfigurationError, match="inbox"):
        FileDropConnector("hospital", config.model_copy(update={"inbox": None}))


async def test_a_request_the_contract_refuses_is_permanent_and_not_written(
    connector: FileDropConnector, folders: Any
) -> None:
    with pytest.raises(Permanent, match="WeightGrams") as caught:
        await connector.send(changed(request_for(), weight=99_999))
    assert "99999" not in str(caught.value)  # the value is cut out of the message
    assert os.listdir(folders.outbox) == []


@pytest.mark.parametrize(
    "task_id", ["../x", "../../x.birth_certificate", "a/b", ".hidden", "..", "x\n"]
)
async def test_path_traversal_in_task_ids_never_escapes_the_folders(
    connector: FileDropConnector, tmp_path: Path, task_id: str
) -> None:
    before = all_files(tmp_path.parent)
    request = request_for()
    evil = DepartmentRequest(task_id, "x", request.matter, request.task, "hospital",
                             request.operation, 1, request.fields)  # fmt: skip
    with pytest.raises(Permanent, match="safe file name"):
        await connector.send(evil)
    assert all_files(tmp_path.parent) == before


async def test_resending_the_same_task_writes_once(
    connector: FileDropConnector, folders: Any
) -> None:
    request = request_for()
    first = await connector.send(request)
    redelivered = DepartmentRequest(
        request.task_id, request.application_id, request.matter, request.task,
        request.system, request.operation, request.attempt + 1, request.fields,
    )  # fmt: skip
    second = await connector.send(redelivered)
    assert first == second
    name = f"{request.task_id}.req.xml"
    assert os.listdir(folders.outbox) == [name]
    (folders.outbox / name).unlink()  # the hospital took it in
    await connector.send(redelivered)  # the copy in the archive says: sent already
    assert os.listdir(folders.outbox) == []


async def test_a_changed_request_replaces_the_unread_one(
    connector: FileDropConnector, folders: Any
) -> None:
    request = request_for()
    name = f"{request.task_id}.req.xml"
    await connector.send(request)
    await connector.send(changed(request, weight=3300))
    assert os.listdir(folders.outbox) == [name]
    assert b"<WeightGrams>3300</WeightGrams>" in (folders.outbox / name).read_bytes()
    assert (folders.archive / name).read_bytes() == (folders.outbox / name).read_bytes()


# --- reading answers: complete files only, once, safely -----------------------------------
async def test_a_result_is_taken_only_with_a_matching_checksum(
    source: FileDropResultSource, folders: Any
) -> None:
    reports, task = Reports(), f"{new_app()}.birth_certificate"
    data = result_xml(task)
    drop(folders.inbox, f"{task}.result.xml", data[: len(data) // 2], checksum=None)
    counts = await source.scan(reports)
    assert (counts.reported, counts.waiting, reports.decisions) == (0, 1, [])
    drop(folders.inbox, f"{task}.result.xml", data, checksum="wrong")
    counts = await source.scan(reports)
    assert (counts.reported, counts.waiting) == (0, 1)
    assert sorted(os.listdir(folders.inbox)) == [f"{task}.result.xml", f"{task}.result.xml.sha256"]
    drop(folders.inbox, f"{task}.result.xml", data)
    counts = await source.scan(reports)
    assert counts.reported == 1
    assert [d.provides for d in reports.decisions] == [{"birth_certificate_no": "R431022007"}]
    assert os.listdir(folders.inbox) == []
    assert sorted(os.listdir(folders.archive)) == [
        f"{task}.result.xml",
        f"{task}.result.xml.sha256",
    ]


async def test_a_writer_killed_midway_goes_to_error_after_the_grace_period(
    source: FileDropResultSource, folders: Any
) -> None:
    reports, task = Reports(), f"{new_app()}.birth_certificate"
    data = result_xml(task)
    half = drop(folders.inbox, f"{task}.result.xml", data[: len(data) // 2], checksum=None)
    assert (await source.scan(reports)).waiting == 1
    assert half.exists()
    age(half)  # the writer never came back
    counts = await source.scan(reports)
    assert (counts.parked, counts.reported, reports.decisions) == (1, 0, [])
    assert os.listdir(folders.inbox) == []
    reason = (folders.error / f"{task}.result.xml.reason.txt").read_text()
    assert "no checksum file" in reason
    assert (folders.error / f"{task}.result.xml").read_bytes() == data[: len(data) // 2]


async def test_a_wrong_checksum_goes_to_error_after_the_grace_period_with_its_sidecar(
    source: FileDropResultSource, folders: Any
) -> None:
    task = f"{new_app()}.birth_certificate"
    path = drop(folders.inbox, f"{task}.result.xml", result_xml(task), checksum="wrong")
    age(path, path.with_name(path.name + ".sha256"))
    assert (await source.scan(Reports())).parked == 1
    assert sorted(os.listdir(folders.error)) == [
        f"{task}.result.xml", f"{task}.result.xml.reason.txt", f"{task}.result.xml.sha256",
    ]  # fmt: skip
    assert (
        "checksum does not match" in (folders.error / f"{task}.result.xml.reason.txt").read_text()
    )


async def test_a_result_delivered_twice_is_reported_once(
    source: FileDropResultSource, folders: Any
) -> None:
    reports, task = Reports(), f"{new_app()}.birth_certificate"
    name = f"{task}.result.xml"
    drop(folders.inbox, name, result_xml(task, "REFUSED"))
    assert (await source.scan(reports)).reported == 1
    drop(folders.inbox, name, result_xml(task, "REFUSED"))  # the same file again
    counts = await source.scan(reports)
    assert (counts.reported, counts.duplicates) == (0, 1)
    assert len(reports.decisions) == 1
    assert (folders.archive / f"{name}.duplicate-1").exists()
    drop(folders.inbox, name, result_xml(task, "ISSUED"))  # same name, a new decision
    assert (await source.scan(reports)).reported == 1
    assert [d.outcome for d in reports.decisions] == ["denied", "completed"]
    assert (folders.archive / f"{name}.1").read_bytes() == result_xml(task, "ISSUED")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"<CertificateResult", "not well-formed"),
        ("invalid-doctype.xml", "DOCTYPE"),
        ("invalid-status.xml", "Status"),
        ("broken-issued-bad-birth-number.xml", "CertificateNo"),
        ("rejected.xml", "hospital rejected request file"),
    ],
)
async def test_a_bad_result_goes_to_error_with_a_reason(
    source: FileDropResultSource, folders: Any, content: bytes | str, reason: str
) -> None:
    task = "0190a0b0-0000-7000-8000-000000000001.birth_certificate"
    if isinstance(content, str):
        content = (ROOT / "tests" / "fixtures" / "hospital" / content).read_bytes()
    reports = Reports()
    drop(folders.inbox, f"{task}.result.xml", content)
    counts = await source.scan(reports)
    assert (counts.parked, reports.decisions) == (1, [])
    assert reason in (folders.error / f"{task}.result.xml.reason.txt").read_text()
    assert (folders.error / f"{task}.result.xml").read_bytes() == content
    assert os.listdir(folders.inbox) == []


async def test_names_from_the_inbox_are_never_trusted_as_paths(
    source: FileDropResultSource, folders: Any, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("keep out")
    os.symlink(outside, folders.inbox / "x.birth_certificate.result.xml")
    evil = drop(folders.inbox, "ok.birth_certificate.result.xml", result_xml("../../evil"))
    odd = drop(folders.inbox, "a\\..\\evil.result.xml", b"junk", checksum=None)
    dot = drop(folders.inbox, "..result.xml", b"junk", checksum=None)  # a writer's temp file
    age(evil, odd, dot)
    before = all_files(tmp_path)
    counts = await source.scan(Reports())
    assert counts.reported == 0
    assert outside.read_text() == "keep out"  # the link was neither followed nor moved
    assert (folders.inbox / "x.birth_certificate.result.xml").is_symlink()
    assert dot.read_bytes() == b"junk"  # dot-files are never touched
    assert sorted(os.listdir(folders.error)) == [
        "a\\..\\evil.result.xml", "a\\..\\evil.result.xml.reason.txt",
        "ok.birth_certificate.result.xml", "ok.birth_certificate.result.xml.reason.txt",
        "ok.birth_certificate.result.xml.sha256",
    ]  # fmt: skip
    assert (
        "unexpected file name" in (folders.error / "a\\..\\evil.result.xml.reason.txt").read_text()
    )
    moved = {
        f"hospital/inbox/{n}"
        for n in ("a\\..\\evil.result.xml", "ok.birth_certificate.result.xml",
                  "ok.birth_certificate.result.xml.sha256")
    }  # fmt: skip
    after = all_files(tmp_path)
    assert before - after == moved
    assert all(name.startswith("hospital/error/") for name in after - before)


async def test_a_report_that_fails_leaves_the_file_for_the_next_scan(
    source: FileDropResultSource, folders: Any
) -> None:
    task = f"{new_app()}.birth_certificate"
    drop(folders.inbox, f"{task}.result.xml", result_xml(task))

    async def store_down(decision: Decision) -> None:
        raise Retryable("store unavailable")

    with pytest.raises(Retryable):
        await source.scan(store_down)
    assert sorted(os.listdir(folders.inbox)) == [f"{task}.result.xml", f"{task}.result.xml.sha256"]
    reports = Reports()
    assert (await source.scan(reports)).reported == 1
    assert os.listdir(folders.inbox) == []


async def test_a_late_ack_after_the_result_is_archived_is_not_reported(
    source: FileDropResultSource, folders: Any
) -> None:
    reports, task = Reports(), f"{new_app()}.birth_certificate"
    drop(folders.inbox, f"{task}.result.xml", result_xml(task))
    await source.scan(reports)
    ack = (ROOT / "tests" / "fixtures" / "hospital" / "ack.xml").read_bytes()
    ack = ack.replace(b"0190a0b0-0000-7000-8000-000000000001.birth_certificate", task.encode())
    drop(folders.inbox, f"{task}.ack.xml", ack)
    await source.scan(reports)
    assert [d.outcome for d in reports.decisions] == ["completed"]
    assert (folders.archive / f"{task}.ack.xml").exists()


# --- end to end with the simulator ----------------------------------------------------------
async def test_send_then_the_birth_certificate_number_is_reported(
    connector: FileDropConnector,
    simulator: HospitalSimulator,
    reports: Reports,
    ledger: EffectLedger,
) -> None:
    request = request_for()
    receipt = await connector.send(request)
    assert receipt.case_number is None  # a file drop answers later: the ack brings it
    received = await outcome(reports, request.task_id, "in_progress")
    done = await outcome(reports, request.task_id, "completed")
    assert received.case_number and received.case_number == done.case_number
    assert received.decided_at is not None
    number = done.provides["birth_certificate_no"]
    assert BIRTH_NO.match(number) and done.certificate == number
    assert [d.outcome for d in reports.decisions] == ["in_progress", "completed"]
    effects = await ledger.effects(request.application_id)
    assert [(e.task, e.result["certificate_no"]) for e in effects] == [
        ("birth_certificate", number)
    ]


async def test_a_death_certificate_the_family_holds_is_confirmed(
    connector: FileDropConnector, simulator: HospitalSimulator, reports: Reports
) -> None:
    request = request_for("after-death-mobile", "death_certificate")
    await connector.send(request)
    done = await outcome(reports, request.task_id, "completed")
    assert done.provides == {"death_certificate_no": "S4310222611180007"}


async def test_every_request_file_validates_against_the_xsd(
    connector: FileDropConnector, simulator: HospitalSimulator, reports: Reports, folders: Any
) -> None:
    requests = [
        request_for(),
        request_for("newborn-minimal-online"),
        request_for("after-death-mobile", "death_certificate"),
    ]
    for request in requests:
        await connector.send(request)
    for request in requests:
        await outcome(reports, request.task_id, "completed")
    xsd = schema("request.xsd")
    taken = sorted(simulator.processed.iterdir())
    assert len(taken) == 3
    for path in taken:
        assert xsd.validate(etree.parse(str(path), PARSER)), (path.name, xsd.error_log)


async def test_idempotent_resend_applies_the_effect_once(
    connector: FileDropConnector,
    simulator: HospitalSimulator,
    reports: Reports,
    ledger: EffectLedger,
    folders: Any,
) -> None:
    request = request_for()
    await connector.send(request)
    first = await outcome(reports, request.task_id, "completed")
    await connector.send(request)  # answered already: not written again
    assert os.listdir(folders.outbox) == ["processed"]
    # The hospital gets the same file a second time anyway (an operator copied it back):
    copy = simulator.processed / f"{request.task_id}.req.xml"
    (folders.outbox / copy.name).write_bytes(copy.read_bytes())
    assert await eventually(lambda: _true(len(list(folders.archive.glob("*.duplicate-1"))) == 2))
    assert await ledger.delivery_count("hospital") == 2
    assert len(await ledger.effects(request.application_id)) == 1
    assert await ledger.double_effects() == []
    assert reports.of("completed") == [first]


REFUSAL = "本院无该新生儿分娩记录"
GAPS = [("Child/WeightGrams", "体重不符"), ("Mother/IdNumber", "证件号不符")]
GAPS_AS_PATHS = [
    ("subjects.child.weight_g", "体重不符"),
    ("subjects.mother.id_number", "证件号不符"),
]


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        (Verdict("denied", reason=REFUSAL), ("denied", REFUSAL, [])),
        (Verdict("suspended", reason="待亲子鉴定"), ("suspended", "待亲子鉴定", [])),
        (Verdict("correction_requested", gaps=GAPS), ("correction_requested", None, GAPS_AS_PATHS)),
    ],
)  # fmt: skip
async def test_verdicts_map_to_decisions(
    connector: FileDropConnector,
    simulator: HospitalSimulator,
    reports: Reports,
    behaviour: Behaviour,
    ledger: EffectLedger,
    verdict: Verdict,
    expected: tuple[str, str | None, list[tuple[str, str]]],
) -> None:
    request = request_for()
    behaviour.by_application[request.application_id] = verdict
    await connector.send(request)
    decision = await outcome(reports, request.task_id, expected[0])
    assert (decision.outcome, decision.reason) == expected[:2]
    assert [(g.field, g.message) for g in decision.gaps] == expected[2]
    assert decision.provides == {}
    assert await ledger.effects(request.application_id) == []  # nothing issued


async def test_a_verdict_scripted_by_name_is_honoured(
    connector: FileDropConnector,
    simulator: HospitalSimulator,
    reports: Reports,
    behaviour: Behaviour,
) -> None:
    behaviour.by_name["张秀英"] = Verdict("denied", reason="非本院死亡病例")
    request = request_for("after-death-mobile", "death_certificate")
    await connector.send(request)
    assert (await outcome(reports, request.task_id, "denied")).reason == "非本院死亡病例"


async def test_a_corrected_request_is_sent_again_and_decided_again(
    connector: FileDropConnector,
    simulator: HospitalSimulator,
    reports: Reports,
    behaviour: Behaviour,
    ledger: EffectLedger,
) -> None:
    request = request_for()
    behaviour.by_application[request.application_id] = Verdict(
        "correction_requested", gaps=[("Child/WeightGrams", "体重不符")]
    )
    await connector.send(request)
    await outcome(reports, request.task_id, "correction_requested")
    del behaviour.by_application[request.application_id]
    await connector.send(changed(request, weight=3300))  # same task id, corrected content
    done = await outcome(reports, request.task_id, "completed")
    assert BIRTH_NO.match(done.provides["birth_certificate_no"])
    assert len(await ledger.effects(request.application_id)) == 1


async def test_the_ack_comes_at_once_and_the_result_after_the_decision_delay(
    connector: FileDropConnector,
    simulator: HospitalSimulator,
    reports: Reports,
    behaviour: Behaviour,
    ledger: EffectLedger,
) -> None:
    behaviour.decision_delay_seconds = 3600
    request = request_for()
    await connector.send(request)
    await outcome(reports, request.task_id, "in_progress")
    await scans_pass(simulator)
    assert [d.outcome for d in reports.decisions] == ["in_progress"]
    assert await ledger.effects() == []
    behaviour.decision_delay_seconds = 0
    await outcome(reports, request.task_id, "completed")


@pytest.mark.parametrize("kind", ["outage", "failures"])
async def test_while_the_hospital_is_down_requests_wait_in_its_in_tray(
    connector: FileDropConnector,
    simulator: HospitalSimulator,
    reports: Reports,
    behaviour: Behaviour,
    ledger: EffectLedger,
    folders: Any,
    kind: str,
) -> None:
    if kind == "outage":
        behaviour.outages.append((time.time() - 1, time.time() + 3600))
    else:
        behaviour.failure_rate = 1.0
    request = request_for()
    await connector.send(request)  # the drop folder takes it: nobody reads it yet
    await scans_pass(simulator)
    assert (folders.outbox / f"{request.task_id}.req.xml").exists()
    assert await ledger.delivery_count("hospital") == 0
    assert reports.decisions == []
    behaviour.outages.clear()
    behaviour.failure_rate = 0.0
    await outcome(reports, request.task_id, "completed")
    assert await ledger.delivery_count("hospital") == 1


async def test_an_invalid_request_file_is_rejected_by_the_hospital_and_parked(
    simulator: HospitalSimulator, reports: Reports, ledger: EffectLedger, folders: Any
) -> None:
    task = f"{new_app()}.birth_certificate"
    bad = (ROOT / "tests" / "fixtures" / "hospital" / "birth.req.xml").read_bytes()
    bad = bad.replace(b"0190a0b0-0000-7000-8000-000000000001.birth_certificate", task.encode())
    bad = bad.replace(b"<WeightGrams>3350</WeightGrams>", b"<WeightGrams>99999</WeightGrams>")
    (folders.outbox / f"{task}.req.xml").write_bytes(bad)  # bypassing the connector's check
    reason = folders.error / f"{task}.result.xml.reason.txt"
    assert await eventually(lambda: _true(reason.exists()))
    text = reason.read_text()
    assert "SCHEMA_INVALID" in text and "WeightGrams" in text and "99999" not in text
    assert reports.decisions == []
    assert await ledger.delivery_count("hospital") == 1
    assert await ledger.effects() == []
