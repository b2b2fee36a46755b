"""Gateway processes as an operator runs them: ``gateway run --role …``, killable for real.

Each process writes its JSON log lines to a file of its own under the test's tmp dir; a start
waits for the ``gateway_started`` line (or fails with the log's tail when the process dies
first). ``kill_now`` is synchronous so a department simulator's hook can SIGKILL the caller
at the worst moment and be sure it is dead before the department answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STARTED = '"gateway_started"'


@dataclass
class GatewayProcess:
    name: str
    config: Path
    roles: tuple[str, ...]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    kills: int = 0
    _offset: int = 0
    _supervisor: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, within: float = 90.0) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        args = ["--config", str(self.config), "run"]
        for role in self.roles:
            args += ["--role", role]
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", *args, stdout=log, stderr=log
            )
        self.starts += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if STARTED in self._log_since_start():
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        pytest.fail(
            f"{self.name} ({' '.join(self.roles)}) did not start "
            f"(exit {self.proc.returncode}):\n{self.tail()}"
        )

    def _log_since_start(self) -> str:
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            return f.read().decode("utf-8", "replace")

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])

    def kill_now(self) -> None:
        """SIGKILL, and return only once the kernel has ended the process (a zombie)."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        self.kills += 1
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.001)

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.kill_now()
        await self.proc.wait()

    async def terminate(self, within: float) -> tuple[int | None, float]:
        """SIGTERM; (exit code or None when still running after ``within`` s, seconds)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await self.exit_within(within)

    async def exit_within(self, within: float) -> tuple[int | None, float]:
        """(exit code or None when still running after ``within`` s, seconds waited)."""
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            code: int | None = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            code = None
        return code, loop.time() - began

    async def stop(self) -> None:
        await self.unsupervise()
        if self.running:
            code, _ = await self.terminate(30)
            if code is None:
                await self.kill()

    def supervise(self) -> None:
        """Start the process again whenever it dies, as systemd or Kubernetes would."""

        async def loop() -> None:
            while True:
                assert self.proc is not None
                await self.proc.wait()
                await self.start()

        self._supervisor = asyncio.create_task(loop(), name=f"supervise-{self.name}")

    async def unsupervise(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None

    def events(self, event: str) -> Iterator[dict[str, object]]:
        """The JSON log lines of this process (every start) whose event is ``event``."""
        for line in self.log_path.read_text("utf-8", "replace").splitlines():
            if f'"{event}"' not in line:
                continue
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict) and data.get("event") == event:
                    yield data


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):  # reaped meanwhile
        return False
    return state not in ("Z", "X")
