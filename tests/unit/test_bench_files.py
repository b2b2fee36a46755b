"""The bench's files: the last runs' logs kept, a killed push's scratch folder cleaned, a
folder in use (its lock held) or just made left alone."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from gateway.bench.run import prune_logs
from gateway.bench.scratch import GRACE_SECONDS, LOCK_NAME, clean_stale, scratch_folder


def _run(folder: Path, stamp: str) -> None:
    (folder / f"bench-{stamp}.log").write_text("x")
    (folder / f"bench-{stamp}.simulators-postgresql.log").write_text("x")


def test_only_the_newest_runs_logs_are_kept(tmp_path: Path) -> None:
    for stamp in ("20261101-120000", "20261102-090000", "20261102-100000"):
        _run(tmp_path, stamp)
    (tmp_path / "bench.json").write_text("{}")
    (tmp_path / "bench-notes.log").write_text("not a run's")
    gone = prune_logs(tmp_path, keep=2)
    assert sorted(p.name for p in gone) == [
        "bench-20261101-120000.log",
        "bench-20261101-120000.simulators-postgresql.log",
    ]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert "bench-20261102-090000.log" in left
    assert {"bench.json", "bench-notes.log"} <= set(left)
    assert len(left) == 6
    assert prune_logs(tmp_path, keep=2) == []


def _folder(root: Path, name: str, *, age: float, lock: bool = True) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if lock:
        (folder / LOCK_NAME).touch()
    past = time.time() - age
    os.utime(folder, (past, past))
    return folder


def test_stale_folders_go_and_locked_or_young_ones_stay(tmp_path: Path) -> None:
    old = GRACE_SECONDS + 10
    stale = _folder(tmp_path, "push-killed", age=old)
    unlocked = _folder(tmp_path, "push-crashed-early", age=old, lock=False)
    young = _folder(tmp_path, "push-just-made", age=1, lock=False)
    running = _folder(tmp_path, "push-running", age=old)
    other = _folder(tmp_path, "not-a-push", age=old)
    fd = os.open(running / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert sorted(clean_stale(tmp_path)) == [unlocked, stale]
    finally:
        os.close(fd)
    assert not stale.exists() and not unlocked.exists()
    assert young.is_dir() and running.is_dir() and other.is_dir()


def test_a_scratch_folder_is_locked_while_in_use_and_deleted_after(tmp_path: Path) -> None:
    with scratch_folder(tmp_path / "root") as folder:
        (folder / "gateway.sqlite3").write_text("x")
        past = time.time() - GRACE_SECONDS - 10
        os.utime(folder, (past, past))
        assert clean_stale(tmp_path / "root") == []  # its lock is held
        assert folder.is_dir()
    assert not folder.exists()


def test_free_ports_are_taken_below_the_ephemeral_range() -> None:
    """Outgoing connections take ephemeral ports; a port chosen there could be taken before
    the simulator binds it."""
    from gateway.simulators.fleet import _ephemeral_low, free_port

    low = _ephemeral_low()
    assert low > 10_000  # Linux: /proc/sys/net/ipv4/ip_local_port_range is read
    ports = [free_port() for _ in range(20)]
    assert all(10_000 <= port < low for port in ports)
