"""The push's department simulators in a process of their own.

Run beside the gateway they shared its event loop, its default thread pool and its GIL
(zeep parsing, the effect ledger's SQLite, the hospital's file writes), and its CPU figure
mixed the two. Here they run as ``python -m gateway.bench.simulators``, as in production,
where the departments are other machines.

    parent                                    child
    spawn, write a ``FleetSpec`` (JSON)  →    read stdin to the end of the first line
                                              start every simulator (deciding at once)
    wait for the ready line (timeout)    ←    {"ready": true, "pid": …}
    … the push …
    close stdin (or SIGTERM, SIGINT)     →    stop the simulators, close the ledger
    read the usage line                  ←    {"cpu_seconds": …, "peak_rss_kb": …}
    wait; SIGTERM, then SIGKILL when it does not exit in time

The child also stops when its stdin reaches end of file, so it dies with the bench even
when the bench is killed outright. The spec carries the systems' signing secrets, hence
stdin rather than the command line. The child's logs (warnings and worse) go to
``FleetSpec.log_path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.bench.processes import Usage, peak_rss_kb, process_usage

__all__ = ["FleetSpec", "SimulatorProcess", "SimulatorsFailed", "running_simulators"]

READY_SECONDS = 30.0  # imports, WSDL, four servers: a second or two on an idle machine
STOP_SECONDS = 10.0  # closing stdin → exit, then again after SIGTERM
CHILD_COMMAND = (sys.executable, "-m", "gateway.bench.simulators")


class SimulatorsFailed(RuntimeError):
    """The simulators' process did not start (or not in time); the message holds its log."""


@dataclass(frozen=True, slots=True)
class FleetSpec:
    amqp_url: str
    systems: dict[str, dict[str, Any]]  # name → SystemConfig fields, secrets in clear
    callback_base_url: str  # where the gateway takes callbacks
    ledger_path: str
    log_path: str
    hospital_scan_seconds: float | None = None  # None: the simulator's default

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FleetSpec:
        return cls(**json.loads(text))


def system_fields(config: Any) -> dict[str, Any]:
    """A ``SystemConfig`` as JSON fields the child can rebuild it from (the secret in clear:
    the JSON form of a ``SecretStr`` is asterisks)."""
    fields: dict[str, Any] = config.model_dump(mode="json", exclude={"secret"})
    if config.secret is not None:
        fields["secret"] = config.secret.get_secret_value()
    return fields


@dataclass(frozen=True, slots=True)
class ChildUsage:
    """What the child says of itself as it exits."""

    cpu_seconds: float  # from just before the simulators started to after they stopped
    peak_rss_kb: int | None


@dataclass
class SimulatorProcess:
    """One running child; ``start`` returns once it said it is ready."""

    spec: FleetSpec
    command: Sequence[str] = CHILD_COMMAND
    ready_seconds: float = READY_SECONDS
    stop_seconds: float = STOP_SECONDS
    child: asyncio.subprocess.Process | None = None
    exit_usage: ChildUsage | None = None
    returncode: int | None = None
    _log: int | None = field(default=None, repr=False)  # the log's file descriptor

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    async def start(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._log = os.open(self.spec.log_path, flags, 0o644)  # closed in stop()
        self.child = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
        )
        assert self.child.stdin is not None
        assert self.child.stdout is not None
        self.child.stdin.write(self.spec.to_json().encode() + b"\n")
        with contextlib.suppress(ConnectionError):  # it died at once: its stdout says so
            await self.child.stdin.drain()
        try:
            line = await asyncio.wait_for(self.child.stdout.readline(), self.ready_seconds)
        except TimeoutError:
            raise SimulatorsFailed(
                f"the simulators did not say they were ready within {self.ready_seconds:g} s; "
                f"their log: {self._tail()}"
            ) from None
        if not _is_ready(line):
            raise SimulatorsFailed(
                f"the simulators' process exited before it was ready; its log: {self._tail()}"
            )

    def usage(self) -> Usage | None:
        """The child's CPU and memory now, from ``/proc`` (None when not readable)."""
        return process_usage(self.child.pid) if self.child is not None else None

    async def stop(self) -> None:
        """End the child whatever state it is in: EOF on stdin, then SIGTERM, then SIGKILL."""
        child = self.child
        try:
            if child is not None and child.returncode is None:
                await self._ask_to_exit(child)
        finally:
            if child is not None and child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
            self.returncode = child.returncode if child is not None else None
            if self._log is not None:
                os.close(self._log)
                self._log = None

    async def _ask_to_exit(self, child: asyncio.subprocess.Process) -> None:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.close()
        with contextlib.suppress(TimeoutError):
            line = await asyncio.wait_for(child.stdout.readline(), self.stop_seconds)
            self.exit_usage = _exit_usage(line)
            await asyncio.wait_for(child.wait(), self.stop_seconds)
            return
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.wait(), self.stop_seconds)

    def _tail(self, lines: int = 20) -> str:
        try:
            text = Path(self.spec.log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(unreadable)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"


@contextlib.asynccontextmanager
async def running_simulators(
    spec: FleetSpec, process: SimulatorProcess | None = None
) -> AsyncIterator[SimulatorProcess]:
    """The simulators' process (``process``, by default the real one), ready; ended on the
    way out whatever happened: an error, a cancellation, Ctrl-C, a child that never got
    ready."""
    process = process or SimulatorProcess(spec)
    try:
        await process.start()
        yield process
    finally:
        await asyncio.shield(process.stop())


def _is_ready(line: bytes) -> bool:
    try:
        return bool(json.loads(line).get("ready"))
    except (ValueError, AttributeError):
        return False  # end of file, or something else than the ready line


def _exit_usage(line: bytes) -> ChildUsage | None:
    try:
        data = json.loads(line)
        return ChildUsage(float(data["cpu_seconds"]), data["peak_rss_kb"])
    except (ValueError, KeyError, TypeError):
        return None  # exited without a word, or said something else


# --- the child -------------------------------------------------------------------------


async def serve(spec: FleetSpec, stdin: asyncio.StreamReader) -> ChildUsage:
    """Start the fleet, say so on stdout, run until stdin ends or a signal, stop it."""
    from gateway.settings import Settings, SystemConfig
    from gateway.simulators.fleet import Fleet
    from gateway.simulators.hospital import HospitalSimulator
    from gateway.simulators.ledger import EffectLedger

    cpu0 = _cpu()
    systems = {name: SystemConfig(**fields) for name, fields in spec.systems.items()}
    settings = Settings(amqp_url=spec.amqp_url, systems=systems)
    ledger = EffectLedger(Path(spec.ledger_path))
    fleet = Fleet(settings, ledger, callback_base_url=spec.callback_base_url, own_process=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await fleet.start()
        for sim in fleet.running.values():
            if isinstance(sim, HospitalSimulator) and spec.hospital_scan_seconds is not None:
                sim.scan_seconds = spec.hospital_scan_seconds
        _say({"ready": True, "pid": os.getpid()})
        eof = asyncio.create_task(stdin.read())  # the parent closes it, or dies
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({eof, stopped}, return_when=asyncio.FIRST_COMPLETED)
        eof.cancel()
        stopped.cancel()
    finally:
        await fleet.stop()
        ledger.close()
    return ChildUsage(_cpu() - cpu0, peak_rss_kb())


async def _child_main() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    spec = FleetSpec.from_json((await stdin.readline()).decode())
    from gateway.logs import configure_logging

    configure_logging("json", stream=sys.stderr, level=logging.WARNING)
    usage = await serve(spec, stdin)
    _say(asdict(usage))


def _say(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    asyncio.run(_child_main())


if __name__ == "__main__":
    main()
