"""CPU seconds and memory per process: this one, the load generator's, and RabbitMQ's.

The bench process runs the gateway (and, in the push, the simulators); ``getrusage`` gives
its CPU and its peak resident set. The load generator reports its own. RabbitMQ is read
from ``/proc`` when it runs on this host (its Erlang VM is the process named ``beam.smp``);
elsewhere its figures are None. Parsing is pure and tested; reading is a thin layer.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
BROKER_COMMAND = "beam.smp"


@dataclass(frozen=True, slots=True)
class Usage:
    """One process at one moment: CPU seconds so far, resident and peak resident kB."""

    cpu_seconds: float
    rss_kb: int | None
    peak_rss_kb: int | None


def stat_cpu_seconds(stat: str, ticks_per_second: int) -> float:
    """utime + stime from the text of ``/proc/<pid>/stat`` (fields 14 and 15)."""
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_second


def status_kb(status: str, key: str) -> int | None:
    """A ``kB`` line of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), None when absent."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    return None


def self_usage() -> Usage:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = _read_status(PROC / "self" / "status", "VmRSS")
    return Usage(usage.ru_utime + usage.ru_stime, rss, usage.ru_maxrss)


def peak_rss_kb() -> int:
    """This process's peak resident set: ``VmHWM``, not ``ru_maxrss``, which a child started
    by fork and exec inherits from its parent (a small child would report the bench's peak).
    """
    hwm = _read_status(PROC / "self" / "status", "VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss(path: Path = PROC / "self" / "clear_refs") -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (``5`` to ``clear_refs``, Linux
    4.0+), so that a later ``peak_rss_kb`` is the peak since now; False where it cannot be
    written (not Linux, or not allowed): the peak then runs from the process's start."""
    try:
        path.write_text("5")
    except OSError:
        return False
    return True


def broker_pid() -> int | None:
    """The local RabbitMQ's process id, or None (not on this host, or /proc unreadable)."""
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return None
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == BROKER_COMMAND:
                return int(entry.name)
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return None


def process_usage(pid: int) -> Usage | None:
    base = PROC / str(pid)
    try:
        stat = (base / "stat").read_text()
        status = (base / "status").read_text()
    except OSError:
        return None
    cpu = stat_cpu_seconds(stat, os.sysconf("SC_CLK_TCK"))
    return Usage(cpu, status_kb(status, "VmRSS"), status_kb(status, "VmHWM"))


def _read_status(path: Path, key: str) -> int | None:
    try:
        return status_kb(path.read_text(), key)
    except OSError:
        return None
