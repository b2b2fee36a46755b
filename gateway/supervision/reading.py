"""Opening the store for a read-only command (``report ledger``, ``tasks overdue``).

``open_store`` creates and migrates a SQLite file that is not there, which is right for
``gateway run`` and wrong for a report: a mistyped path would print an empty ledger as if
nothing had happened. A read-only command refuses a missing SQLite file instead, naming
the path it looked at (a relative one resolved against the working directory).
"""

from __future__ import annotations

from pathlib import Path

from gateway.errors import ConfigurationError
from gateway.store import Store, open_store

_SQLITE = "sqlite:///"


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names (relative to the working directory), else None."""
    if not url.lower().startswith(_SQLITE) or len(url) == len(_SQLITE):
        return None
    return Path(url[len(_SQLITE) :])


async def open_existing(url: str) -> Store:
    """The store at ``url``, refusing a SQLite file that does not exist yet."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        where = str(path) if path.is_absolute() else f"{path} (resolved to {path.resolve()})"
        raise ConfigurationError(
            f"no database at {where}: check database_url; a report reads an existing "
            "store and does not create one",
            code="database_url",
        )
    return await open_store(url)
