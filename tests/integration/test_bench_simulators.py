"""The bench's simulators run in a process of their own, which never outlives the push.

Real child processes (no broker needed: the real fleet here is the hospital alone, a file
drop; the misbehaving children are small Python scripts).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from gateway.bench.simulators import (
    FleetSpec,
    SimulatorProcess,
    SimulatorsFailed,
    running_simulators,
    system_fields,
)
from gateway.settings import SystemConfig
from gateway.simulators.fleet import local_systems


class Boom(Exception):
    pass


def _spec(tmp_path: Path, systems: dict[str, SystemConfig] | None = None) -> FleetSpec:
    chosen = systems if systems is not None else {"hospital": local_systems(tmp_path)["hospital"]}
    return FleetSpec(
        amqp_url="amqp://guest:guest@127.0.0.1:1/",  # never used: no AMQP department here
        systems={name: system_fields(config) for name, config in chosen.items()},
        callback_base_url="http://127.0.0.1:1",
        ledger_path=str(tmp_path / "ledger.sqlite3"),
        log_path=str(tmp_path / "simulators.log"),
        hospital_scan_seconds=0.02,
    )


def _gone(pid: int | None) -> bool:
    assert pid is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_the_real_fleet_starts_apart_and_stops_on_an_error_with_its_own_account(
    tmp_path: Path,
) -> None:
    sims = SimulatorProcess(_spec(tmp_path))

    async def push() -> None:
        async with running_simulators(sims.spec, sims):
            assert sims.pid != os.getpid()
            usage = sims.usage()
            assert usage is not None
            assert usage.rss_kb  # a live process of its own
            raise Boom

    with pytest.raises(Boom):
        await push()
    assert _gone(sims.pid)
    assert sims.returncode == 0  # it left on its own when its stdin closed
    assert sims.exit_usage is not None
    assert sims.exit_usage.cpu_seconds > 0
    assert sims.exit_usage.peak_rss_kb is not None


async def test_a_cancelled_push_ends_the_simulators(tmp_path: Path) -> None:
    ready = asyncio.Event()
    pids: list[int | None] = []

    async def push() -> None:
        async with running_simulators(_spec(tmp_path)) as sims:
            pids.append(sims.pid)
            ready.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(push())
    await asyncio.wait_for(ready.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _gone(pids[0])


async def test_a_child_that_never_gets_ready_is_killed_and_the_error_says_so(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    sims = SimulatorProcess(spec, (sys.executable, "-c", code), ready_seconds=1.0, stop_seconds=1.0)
    with pytest.raises(SimulatorsFailed, match="did not say they were ready within 1 s"):
        async with running_simulators(spec, sims):
            pytest.fail("the body must not run")
    assert _gone(int(pid_file.read_text()))
    assert sims.returncode is not None


async def test_a_child_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    code = "import sys; sys.stderr.write('no such folder: /x\\n'); sys.exit(3)"
    sims = SimulatorProcess(spec, (sys.executable, "-c", code))
    with pytest.raises(SimulatorsFailed, match=r"exited before it was ready.*no such folder"):
        async with running_simulators(spec, sims):
            pytest.fail("the body must not run")
    assert sims.returncode == 3


async def test_a_child_deaf_to_eof_and_sigterm_is_killed(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('{\"ready\": true}', flush=True)\n"
        "time.sleep(60)\n"
    )
    sims = SimulatorProcess(spec, (sys.executable, "-c", code), stop_seconds=0.5)
    with pytest.raises(Boom):
        async with running_simulators(spec, sims):
            raise Boom
    assert _gone(sims.pid)
    assert sims.returncode == -9  # SIGKILL, after EOF and SIGTERM went unheard
    assert sims.exit_usage is None
