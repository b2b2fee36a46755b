"""A file drop's result folder is scanned at most every second, sooner when its
``poll_seconds`` says so (the bench's push sets it short; the default stays one second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.filedrop import FileDropResultSource
from connectors.registry import build
from gateway.settings import SystemConfig


def _config(root: Path, **extra: object) -> SystemConfig:
    folders = {k: root / k for k in ("outbox", "inbox", "archive", "error")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return SystemConfig.model_validate({"kind": "filedrop", **folders, **extra})


@pytest.mark.parametrize(("extra", "scan"), [({}, 1.0), ({"poll_seconds": 0.02}, 0.02)])
def test_the_result_scan_follows_a_short_poll_interval(
    tmp_path: Path, extra: dict[str, object], scan: float
) -> None:
    parts = build("hospital", _config(tmp_path, **extra), broker=None, public_base_url=None)
    assert isinstance(parts.source, FileDropResultSource)
    assert parts.source._scan_seconds == scan
