"""What the push sends and to whom: newborn bodies over many birth dates, and the four
departments tuned for the bench while they keep production's polling.

The hukou simulator numbers a child's citizen ID by county, birth date and sex: 500 a day
per sex. One newborn sent over and over runs out after about 500 (the rest never complete),
so the push spreads its newborns over ``BIRTH_DAYS`` birth dates (45,000 IDs: a full push
sends about 20,000). Two departments have no callback; their intervals are production-like
so that any polling left on the critical path shows in p99: hukou is polled every
``HUKOU_POLL_SECONDS`` (its decisions arrive with the receipt, ``poll_on_receipt``), the
hospital's result folder and the hospital simulator's in-tray are scanned every
``FOLDER_SCAN_SECONDS`` (a file's arrival wakes them at once, ``connectors/folderwatch.py``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from gateway.settings import SystemConfig

__all__ = [
    "BIRTH_DAYS",
    "CONCURRENCY",
    "FOLDER_SCAN_SECONDS",
    "HUKOU_POLL_SECONDS",
    "UNTHROTTLED",
    "newborn_bodies",
    "tuned",
]

HUKOU_POLL_SECONDS = 30.0  # production-like: decisions come by poll_on_receipt, not by polling
FOLDER_SCAN_SECONDS = 1.0  # production-like fallback scan: inotify wakes the folder watchers
CONCURRENCY = 16  # requests in flight per department system (the default is 4)
UNTHROTTLED = 100_000.0  # requests/s per department system (the default is 20)
BIRTH_DAYS = 90


def newborn_bodies(body: str, days: int) -> list[str]:
    """``body`` (a newborn envelope) and its copies with the child born 1 … ``days`` − 1 days
    earlier (vaccinations moved with the birth): the hukou simulator has 500 citizen IDs per
    county, birth date and sex, so the push must not send one child thousands of times."""
    doc = json.loads(body)
    child, shots = doc["subjects"]["child"], doc["subjects"].get("vaccination", {})
    out = []
    for day in range(days):
        copy = json.loads(body)
        copy["subjects"]["child"]["birth_datetime"] = _earlier(child["birth_datetime"], day)
        for name, at in shots.items():
            if name.endswith("_at") and isinstance(at, str):
                copy["subjects"]["vaccination"][name] = _earlier(at, day)
        out.append(json.dumps(copy, ensure_ascii=False))
    return out


def tuned(config: SystemConfig) -> dict[str, Any]:
    """More requests in flight and no department throttle (the default ``rate_per_second``,
    20, would cap the provincial platform's two newborn tasks at 10 applications a second: the
    bench measures the gateway, not a department's rate limit); polling left production-like:
    a file drop's result folder scanned every ``FOLDER_SCAN_SECONDS`` (inotify wakes it
    sooner), a SOAP system polled every ``HUKOU_POLL_SECONDS`` with ``poll_on_receipt``."""
    update: dict[str, Any] = {"concurrency": CONCURRENCY, "rate_per_second": UNTHROTTLED}
    if config.kind == "filedrop":
        update["poll_seconds"] = FOLDER_SCAN_SECONDS
    if config.kind == "soap":
        update["poll_seconds"] = HUKOU_POLL_SECONDS
        update["poll_on_receipt"] = True
    return update


def _earlier(iso: str, days: int) -> str:
    return (datetime.fromisoformat(iso) - timedelta(days=days)).isoformat()
