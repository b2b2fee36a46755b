"""What reports read from the store: the task timelines a month's supervision ledger needs.

One query on either database: the tasks whose clock may have run during the month (it
started, or the task was dispatched, before the as-of moment, and the task had not ended
before the month began; a receipt may move the clock's start past the month), with
their timeline entries up to the as-of moment and their application's withdrawal. The
bounds on ``tasks`` only narrow the candidates, a day wider than the month on each side;
``gateway.supervision.ledger`` decides from the timeline alone.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from gateway.catalogue.model import CURRENT_VERSION
from gateway.errors import ConfigurationError
from gateway.orchestration.records import TimelineEntry
from gateway.store.base import Store
from gateway.store.sql import Database, SqlStore
from gateway.supervision.ledger import TaskTimeline

MARGIN = 86400.0  # a receipt may restart the clock a little after the dispatch
_QUERY = """
SELECT t.id, t.application_id, t.matter, t.step, t.system, a.catalogue_version,
       l.at, l.kind, l.task_id, l.detail_json
FROM tasks t
JOIN applications a ON a.id = t.application_id
JOIN timeline l ON l.application_id = t.application_id
    AND (l.task_id = t.id OR (l.task_id IS NULL AND l.kind = 'application.withdrawn'))
WHERE t.clock_started_at IS NOT NULL AND (t.clock_started_at < ? OR t.dispatched_at < ?)
    AND (t.finished_at IS NULL OR t.finished_at >= ?)
    AND l.at < ?{systems}
ORDER BY t.id, l.seq
"""


class ReportStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def task_timelines(
        self, start: float, as_of: float, systems: Collection[str] | None = None
    ) -> list[TaskTimeline]:
        """Timelines of the tasks that may count in ``[start, as_of)``, in task id order."""
        params: list[object] = [as_of + MARGIN, as_of, start - MARGIN, as_of]
        where = ""
        if systems is not None:
            if not systems:
                return []
            where = f" AND t.system IN ({', '.join('?' * len(systems))})"
            params.extend(sorted(systems))
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(_QUERY.format(systems=where), tuple(params))
        out: list[TaskTimeline] = []
        entries: list[TimelineEntry] = []
        for i, r in enumerate(rows):
            entries.append(TimelineEntry(float(r[6]), r[7], r[8], json.loads(r[9])))
            if i + 1 == len(rows) or rows[i + 1][0] != r[0]:
                out.append(
                    TaskTimeline(
                        r[0], r[1], r[2], r[3], r[4], r[5] or CURRENT_VERSION, tuple(entries)
                    )
                )
                entries = []
        return out


def reports(store: Store) -> ReportStore:
    """The report queries of a store (both databases)."""
    if not isinstance(store, SqlStore):
        raise ConfigurationError("this store keeps no timelines to report on", system="store")
    return ReportStore(store.database)
