"""``gateway bench``: how close the gateway runs to what the broker itself can do, here.

One run measures, in this order, printing progress as it goes and a table at the end:

    raw       pika + RabbitMQ alone: publish, consume, one hop (``raw``); the run is flagged
              noisy when publish, consume or one hop falls below 80 % of DESIGN's table
    costs     µs per operation: envelope validation, mappings, SOAP through zeep against
              lxml, signature checks, store transactions on SQLite and PostgreSQL
              (``components``, ``soap_build``, ``stores``, ``timing``)
    intake    accepted envelopes/s through a real gateway against a bare aiohttp handler,
              the load generator's CPU beside them (``intake``, ``loadgen``)
    push      newborn applications through every gateway role (this process) and the
              department simulators (a process of their own), on SQLite and on PostgreSQL:
              the burst rate; latency from 202 to ``application.completed`` open loop at 25,
              50 and 75 % of it; a steady run at 50 % with every process's RSS sampled; a
              backlog piled up on ``gw.accepted`` and drained; CPU per application and peak
              memory per process (``push``, ``push_figures``, ``simulators``, ``processes``)
    ratios    hop efficiency, backlog drain and intake efficiency (``stats``)

The broker is the one of ``settings.amqp_url`` (its default vhost unless the URL names
another). The raw baseline uses a quorum queue of its own, deleted afterwards; intake and
push use the gateway's fixed queue names and run only when those are idle, and intake takes
back what it published. The gateway's logs go to ``var/bench-<time>.log`` for the run, so
that the terminal shows the bench; the last five runs' logs are kept. Each push works in a
folder of its own under ``var/bench-push/`` (``scratch``). ``run`` holds the sequence,
``report`` the table.

This module stays light on purpose: the load generator runs as ``python -m
gateway.bench.loadgen`` and imports this package without the gateway behind it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = ["run_bench"]


async def run_bench(
    settings: Settings,
    *,
    quick: bool,
    json_path: Path | None,
    postgres_url: str | None = None,
    store: str = "both",
    plan: str | None = None,
) -> int:
    """Run the bench: 0 when every part ran and every phase completed; 1 when a part failed,
    was skipped or a phase did not complete (the table says which); 2 when PostgreSQL is in
    the plan but cannot be reached (checked before anything runs).

    ``quick`` keeps the run to about two minutes on a 2-core machine (the full run holds a
    10-minute steady run and drains a backlog of 10,000 newborns, 50,000 tasks, per store:
    about 40–45 minutes with both stores); ``json_path`` receives the figures.
    ``postgres_url`` is where the PostgreSQL store transactions are timed and the PostgreSQL
    push runs (each in a fresh schema, dropped afterwards); by default
    ``settings.database_url`` when that is PostgreSQL, else the test suite's default URL.
    ``store`` (``sqlite``, ``postgresql`` or ``both``) picks the stores the push runs on;
    with ``sqlite`` PostgreSQL is not touched. ``plan`` names a plan instead of ``quick``:
    ``smoke`` runs every part for a second or two (the CLI's test; its figures mean nothing).
    """
    from gateway.bench.run import bench

    return await bench(
        settings,
        quick=quick,
        json_path=json_path,
        postgres_url=postgres_url,
        store=store,
        plan_name=plan,
    )
