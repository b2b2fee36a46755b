"""Moving an answer and its checksum sidecar together, in a real folder."""

from __future__ import annotations

from pathlib import Path

from connectors.dropfolder import move_with_sidecar


def _pair(inbox: Path, name: str) -> tuple[Path, Path]:
    inbox.mkdir(exist_ok=True)
    (inbox / name).write_bytes(b"<a/>")
    (inbox / f"{name}.sha256").write_bytes(b"digest\n")
    return inbox / name, inbox / f"{name}.sha256"


def test_both_land_under_the_name_the_file_got(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "t.ack.xml").write_bytes(b"older")  # the name is taken: the pair goes to .1
    src, side = _pair(tmp_path / "inbox", "t.ack.xml")
    assert move_with_sidecar(src, side, archive, "t.ack.xml") == "t.ack.xml.1"
    assert not src.exists() and not side.exists()
    assert (archive / "t.ack.xml.1").read_bytes() == b"<a/>"
    assert (archive / "t.ack.xml.1.sha256").read_bytes() == b"digest\n"
    assert (archive / "t.ack.xml").read_bytes() == b"older"


def test_a_stray_sidecar_in_the_way_is_kept_and_the_pair_s_goes_beside_it(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "t.result.xml.sha256").write_bytes(b"stray\n")
    src, side = _pair(tmp_path / "inbox", "t.result.xml")
    assert move_with_sidecar(src, side, archive, "t.result.xml", label=None) == "t.result.xml"
    assert not side.exists()
    assert (archive / "t.result.xml.sha256").read_bytes() == b"stray\n"
    assert (archive / "t.result.xml.sha256.1").read_bytes() == b"digest\n"


def test_a_file_another_reader_took_is_none_and_nothing_moves(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    src, side = _pair(tmp_path / "inbox", "t.ack.xml")
    src.unlink()
    assert move_with_sidecar(src, side, archive, "t.ack.xml", label="duplicate") is None
    assert side.exists() and list(archive.iterdir()) == []
