"""`gateway run` as an operator starts it: a real process, real signals."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.simulators.fleet import free_port
from tests.support.rabbit import Rabbit

pytestmark = pytest.mark.broker


def config(tmp_path: Path, rabbit: Rabbit, port: int) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'amqp_url = "{rabbit.url}"\n'
        f'database_url = "sqlite:///{tmp_path / "gw.sqlite3"}"\n'
        f"http_port = {port}\n"
        'log_format = "json"\n'
        '[portals.window]\nsecret = "window-secret-0123456789"\n',
        encoding="utf-8",
    )
    return path


async def test_run_a_subset_of_roles_then_drain_on_sigterm(tmp_path: Path, rabbit: Rabbit) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "--config",
        str(config(tmp_path, rabbit, port)),
        "run",
        "--role",
        "intake",
        "--role",
        "relay",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the gateway never answered /readyz")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
    assert code == 0, stderr[-2000:]
    assert '"roles": ["intake", "relay"]' in stderr
    assert "gateway_draining" in stderr and "gateway_stopped" in stderr


def test_an_unknown_role_is_refused_with_the_known_ones(tmp_path: Path, rabbit: Rabbit) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "--config",
            str(config(tmp_path, rabbit, free_port())),
            "run",
            "--role",
            "conector:hukou",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown role(s) conector:hukou" in done.stderr
    assert "intake, orchestrator, relay, deadletters" in done.stderr


async def test_simulate_serves_a_configured_department_until_sigterm(
    tmp_path: Path, rabbit: Rabbit
) -> None:
    port, sim_port = free_port(), free_port()
    cfg = config(tmp_path, rabbit, port)
    cfg.write_text(
        cfg.read_text() + f'[systems.hukou]\nkind = "soap"\n'
        f'url = "http://127.0.0.1:{sim_port}/hukou"\n',
        encoding="utf-8",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "--config",
        str(cfg),
        "simulate",
        "--system",
        "hukou",
        "--ledger",
        str(tmp_path / "ledger.sqlite3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{sim_port}/hukou?wsdl") as resp:
                        text = await resp.text()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the simulator never answered")
        assert "SubmitBirthRegistration" in text
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
    assert (tmp_path / "ledger.sqlite3").exists()


def test_simulate_names_a_system_it_has_no_table_for(tmp_path: Path, rabbit: Rabbit) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "--config",
            str(config(tmp_path, rabbit, 1)),
            "simulate",
            "--system",
            "hospital",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "no [systems.*] table for hospital" in done.stderr


async def test_tasks_overdue_lists_late_tasks_by_department(tmp_path: Path, rabbit: Rabbit) -> None:
    import time
    import zoneinfo

    from gateway.catalogue.model import load
    from gateway.orchestration import planner
    from gateway.store import NewApplication, open_store
    from tests.support.portal import example

    cfg = config(tmp_path, rabbit, free_port())
    store = await open_store(f"sqlite:///{tmp_path / 'gw.sqlite3'}")
    try:
        long_ago = time.time() - 30 * 86400  # dispatched a month ago: long overdue
        await store.claim_idempotency("window", "late-1", "f", long_ago, 30)
        await store.create_application(
            NewApplication(
                id="01a22190-0000-7000-8000-00000000late",
                portal_id="window",
                idempotency_key="late-1",
                channel="http",
                matter="newborn",
                schema_version="1.0",
                envelope_json=example("newborn-yizhang-window").decode(),
                fingerprint="f",
                created_at=long_ago,
            )
        )
        ctx = planner.Context(load(), long_ago, zoneinfo.ZoneInfo("Asia/Shanghai"), {})
        await store.cases.transition(
            "01a22190-0000-7000-8000-00000000late", lambda s: planner.start(s, ctx), long_ago
        )
    finally:
        await store.close()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.cli", "--config", str(cfg), "tasks", "overdue"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "health_commission (hospital): 1\n" in done.stdout  # the one department with a clock
    assert "birth_certificate" in done.stdout and "01a22190" in done.stdout
    assert "vaccination" not in done.stdout  # still waiting on its dependency: no clock yet
