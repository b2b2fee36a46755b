"""Which decided cases a simulator keeps in memory: the newest ``limit``, the others on disk.

A simulator holds its open cases in memory (it must decide them) and writes each decided case
to the ``EffectLedger`` (``keep_case``). ``Retention`` remembers the order cases were decided
in and names the ones to drop from memory once more than ``limit`` are held; the simulator
answers those from the ledger when asked again. A case that opens again (a correction sent
after a CORRECTION verdict) leaves the count until it is decided again.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_RETAIN = 1000  # decided cases per simulator kept in memory


class Retention:
    def __init__(self, limit: int = DEFAULT_RETAIN) -> None:
        if limit < 0:
            raise ValueError("a retention limit is zero or more cases")
        self.limit = limit
        self._decided: OrderedDict[str, None] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._decided)

    def decided(self, key: str) -> list[str]:
        """``key`` is decided (again): the keys to drop from memory now, oldest first."""
        self._decided[key] = None
        self._decided.move_to_end(key)
        dropped: list[str] = []
        while len(self._decided) > self.limit:
            dropped.append(self._decided.popitem(last=False)[0])
        return dropped

    def reopened(self, key: str) -> None:
        """``key`` is open again: it stays in memory until decided."""
        self._decided.pop(key, None)
