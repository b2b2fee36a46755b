"""The GB/T 2260 administrative division table, versioned, shipped as package data.

``data/gb2260-<version>.csv`` holds ``code,name`` rows (6-digit county-level codes; lines
starting with ``#`` are comments). Each version is read once per process.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Final

from gateway.errors import ConfigurationError

__all__ = ["CURRENT_VERSION", "DivisionTable", "current_table", "load_table"]

CURRENT_VERSION: Final = "2013"


@dataclass(frozen=True)
class DivisionTable:
    """One revision of GB/T 2260: 6-digit code → name."""

    version: str
    names: MappingProxyType[str, str]

    def __contains__(self, code: object) -> bool:
        return code in self.names

    def __len__(self) -> int:
        return len(self.names)

    def name(self, code: str) -> str:
        """The division's name, e.g. ``宜章县`` for ``431022``; ``KeyError`` if unknown."""
        try:
            return self.names[code]
        except KeyError:
            raise KeyError(f"division code not in GB/T 2260 ({self.version})") from None


def _parse(text: str, source: str) -> dict[str, str]:
    rows = (line for line in io.StringIO(text) if line.strip() and not line.startswith("#"))
    names: dict[str, str] = {}
    for lineno, row in enumerate(csv.reader(rows), start=1):
        if len(row) != 2 or len(row[0]) != 6 or not row[0].isascii() or not row[0].isdigit():
            raise ConfigurationError(detail=f"{source}: data row {lineno} is not 'code,name'")
        names[row[0]] = row[1].strip()
    return names


@cache
def load_table(version: str = CURRENT_VERSION) -> DivisionTable:
    """Load (once) the division table of the given GB/T 2260 revision."""
    filename = f"gb2260-{version}.csv"
    resource = files("gateway.envelope").joinpath("data", filename)
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            detail=f"no GB/T 2260 table for version {version!r} (gateway/envelope/data)"
        ) from None
    return DivisionTable(version=version, names=MappingProxyType(_parse(text, filename)))


def current_table() -> DivisionTable:
    """The table the envelope validates against."""
    return load_table(CURRENT_VERSION)
