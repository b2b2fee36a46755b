"""What every hostile-input test needs: the hostile XML documents, a listener that must never
see a connection, and a measure of peak memory growth.

Memory is the process's peak resident set (``VmHWM``), reset just before the measured call by
writing ``5`` to ``/proc/self/clear_refs`` (Linux ≥ 4.0), so libxml2's C allocations count as
well as Python's. Where the reset is refused the growth is measured against the old peak,
which can only understate it; ``Peak.exact`` says which.
"""

from __future__ import annotations

import re
import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MEMORY_BOUND = 50 << 20  # generous: every refusal here should cost well under a few MiB
HUGE_TEXT = 50 << 20  # the 50 MB text node
DEPTH = 10_000


# --- memory --------------------------------------------------------------------------------
def _vm(field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    assert found, f"no {field} in /proc/self/status"
    return int(found[1]) * 1024


@dataclass
class Peak:
    growth: int = 0
    exact: bool = False


@contextmanager
def peak_growth() -> Iterator[Peak]:
    """Peak RSS growth over the ``with`` block, in bytes."""
    peak = Peak()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        peak.exact = True
    except OSError:
        peak.exact = False
    before = _vm("VmRSS") if peak.exact else _vm("VmHWM")
    try:
        yield peak
    finally:
        peak.growth = max(0, _vm("VmHWM") - before)


# --- no outbound connection ------------------------------------------------------------------
class Listener:
    """A listening socket on 127.0.0.1: anything that fetched the hostile URL would connect
    here; ``connections()`` counts what arrived (the kernel queues them without an accept)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def connections(self, wait: float = 0.2) -> int:
        count = 0
        while select.select([self.sock], [], [], wait)[0]:
            conn, _ = self.sock.accept()
            conn.close()
            count += 1
            wait = 0
        return count

    def close(self) -> None:
        self.sock.close()


# --- the documents ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Wrap:
    """Where a hostile payload goes in one path's document: ``head`` + payload + ``tail``
    after the prolog (and the DOCTYPE, when the attack has one)."""

    head: bytes
    tail: bytes


@dataclass(frozen=True)
class Hostile:
    name: str
    code: str  # the UnsafeXml code the policy must give
    words: str  # a regular expression the error's message must match
    doctype: str  # with {port} for the listener
    payload: bytes
    encoding: str = "utf-8"

    def document(self, wrap: Wrap, port: int) -> bytes:
        prolog = f'<?xml version="1.0" encoding="{self.encoding.upper()}"?>\n'
        text = prolog + self.doctype.format(port=port)
        if self.encoding == "utf-8":
            return text.encode() + wrap.head + self.payload + wrap.tail
        middle = (wrap.head + self.payload + wrap.tail).decode()
        return (text + middle).encode(self.encoding)


_LOL = "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
BILLION_LAUGHS = f'<!DOCTYPE lolz [<!ENTITY lol0 "lol">{_LOL}]>'
DOCTYPE_WORDS = r"declares a DOCTYPE or ENTITY: not allowed"
LARGE_WORDS = r"larger than \d+ bytes"

HOSTILE: tuple[Hostile, ...] = (
    Hostile(
        "xxe_file", "xml_doctype", DOCTYPE_WORDS,
        '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>', b"&x;",
    ),
    Hostile(
        "xxe_network", "xml_doctype", DOCTYPE_WORDS,
        '<!DOCTYPE d [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/xxe">]>', b"&x;",
    ),
    Hostile(
        "xxe_network_dtd", "xml_doctype", DOCTYPE_WORDS,
        '<!DOCTYPE d SYSTEM "http://127.0.0.1:{port}/evil.dtd">', b"x",
    ),
    Hostile(
        "xxe_parameter_entity", "xml_doctype", DOCTYPE_WORDS,
        '<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p.dtd"> %p;]>', b"x",
    ),
    Hostile("billion_laughs", "xml_doctype", DOCTYPE_WORDS, BILLION_LAUGHS, b"&lol9;"),
    Hostile(
        "billion_laughs_utf16", "xml_doctype", DOCTYPE_WORDS, BILLION_LAUGHS, b"&lol9;",
        encoding="utf-16",
    ),
    Hostile(
        "quadratic_blowup", "xml_doctype", DOCTYPE_WORDS,
        f'<!DOCTYPE q [<!ENTITY a "{"a" * 100_000}">]>', b"&a;" * 5_000,
    ),
    Hostile(
        "deep_nesting", "xml_too_deep", r"nests deeper than \d+ elements", "",
        b"<d>" * DEPTH + b"</d>" * DEPTH,
    ),
    Hostile("huge_text_node", "xml_too_large", LARGE_WORDS, "", b"A" * HUGE_TEXT),
)  # fmt: skip
IDS = [h.name for h in HOSTILE]
