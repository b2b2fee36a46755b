"""``gateway bench`` through its command line, on the smoke plan (every part for a second or
two, a burst of 10 newborns) against real RabbitMQ in a fresh vhost: the table and the JSON
hold their rows with sane values, old logs and a killed run's scratch folder are cleaned and a
folder in use is not. No speed is asserted: that is the bench's own business."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.bench.raw import RAW_BODY_BYTES
from gateway.bench.run import KEEP_LOGS, SMOKE
from gateway.bench.scratch import GRACE_SECONDS, LOCK_NAME
from gateway.bench.stats import REFERENCE_HOPS
from tests.conftest import BASE_AMQP_URL
from tests.support.rabbit import create_vhost, rabbitmqctl

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[2]
CLI = "import sys; from gateway.cli import main; sys.exit(main(sys.argv[1:]))"
PUSH = "internal push (newborn; every gateway role in one process, the simulators in another)"


@pytest.fixture
def fresh_vhost_url() -> Iterator[str]:
    vhost, url = create_vhost(BASE_AMQP_URL)
    try:
        yield url
    finally:
        rabbitmqctl("delete_vhost", vhost)


def _old_run(var: Path, stamp: str) -> None:
    (var / f"bench-{stamp}.log").write_text("old\n")
    (var / f"bench-{stamp}.simulators-sqlite.log").write_text("old\n")


def _scratch(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / LOCK_NAME).touch()
    (folder / "gateway.sqlite3").write_text("left behind\n")
    past = time.time() - GRACE_SECONDS - 60
    os.utime(folder, (past, past))
    return folder


def _row(document: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    rows = [r for r in document["figures"] if r["section"] == section and r["name"] == name]
    assert len(rows) == 1, (section, name, [r["name"] for r in document["figures"]])
    return rows[0]


def test_the_bench_cli_runs_every_part_and_writes_its_table_and_json(
    fresh_vhost_url: str, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    var.mkdir()
    for day in range(1, KEEP_LOGS + 2):  # six earlier runs: the oldest two go
        _old_run(var, f"202001{day:02d}-000000")
    (var / "bench.json").write_text("{}\n")  # not a log: kept
    stale = _scratch(var / "bench-push", "push-killed")
    in_use = _scratch(var / "bench-push", "push-running")
    holder = os.open(in_use / LOCK_NAME, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a push of another bench, running
    env = os.environ | {
        "GATEWAY_AMQP_URL": fresh_vhost_url,
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        "PYTHONPATH": str(REPO),
    }
    out = tmp_path / "bench.json"
    try:
        done = subprocess.run(
            [sys.executable, "-c", CLI, "bench", "--plan", "smoke", "--store", "sqlite",
             "--json", str(out)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert in_use.is_dir()  # locked: another bench's, left alone
    finally:
        os.close(holder)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert not stale.exists()
    assert list((var / "bench-push").iterdir()) == [in_use]  # this run's own folder is gone

    logs = sorted(p.name for p in var.glob("bench-*.log"))
    runs = sorted({name.split(".")[0] for name in logs})
    assert len(runs) == KEEP_LOGS, logs
    assert runs[:4] == [f"bench-202001{day:02d}-000000" for day in (3, 4, 5, 6)]
    assert "bench-20200102-000000.simulators-sqlite.log" not in logs
    assert (var / "bench.json").exists()

    table = done.stdout
    for name in ("burst of 10: completed", "gateway publishes per application",
                 "department-side publishes per application", "gateway message body, mean",
                 "broker: messages received per application", "hop efficiency (sqlite)",
                 f"persistent {RAW_BODY_BYTES:,} B bodies"):  # fmt: skip
        assert name in table, name
    assert "FAILED" not in table

    document = json.loads(out.read_text(encoding="utf-8"))
    meta, detail = document["meta"], document["detail"]
    assert meta["command"] == "gateway bench --plan smoke --store sqlite"
    assert meta["failures"] == []
    assert meta["plan"]["push_burst"] == SMOKE.push_burst == 10
    push = detail["push_sqlite"]
    assert (push["burst"]["submitted"], push["burst"]["completed"]) == (10, 10)
    assert push["burst"]["complete"] is True
    assert push["applications"] == 10
    assert detail["raw"]["body_bytes"] == RAW_BODY_BYTES

    burst = _row(document, f"{PUSH}, sqlite", "burst of 10: completed")["value"]
    hop = detail["raw"]["hop_per_second"]
    assert burst == pytest.approx(push["burst_rate_middle_80"]) and burst > 0
    assert hop > 0
    efficiency = _row(document, "ratios", "hop efficiency (sqlite)")["value"]
    assert efficiency == pytest.approx(burst * REFERENCE_HOPS / hop)

    gateway = _row(document, f"{PUSH}, sqlite", "gateway publishes per application")["value"]
    assert gateway == pytest.approx(sum(push["published_by_exchange"].values()) / 10)
    assert push["published_by_exchange"]["gw.accepted"] == 10  # one per application
    assert push["department_published_by_queue"]["dept.cdc.replies"] >= 10  # a reply each
    department = sum(push["department_published_by_queue"].values()) / 10
    both = "all publishes per application (gateway + department side)"
    assert _row(document, f"{PUSH}, sqlite", both)["value"] == pytest.approx(gateway + department)
    if push["broker_received"] is not None:  # rabbitmqctl on this host: every client's
        assert push["broker_received"] >= (gateway + department) * 10
    assert 0 < push["mean_body_bytes"] < 64 * 1024
