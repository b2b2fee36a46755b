"""Personal data masking: by field name, by pattern, and by the exact values in play.

Citizen ID numbers become ``4310**********1234``, phone numbers ``138****5678``, names keep
their first character (``张*``). Three nets, because each alone leaks:

* **field name**: a value under a key such as ``id_number`` or ``mother_name`` is masked
  whatever it looks like;
* **pattern**: anything shaped like a citizen ID or a mobile number is masked wherever it
  appears, tracebacks and error messages included;
* **known values**: while a request or message is handled, the names, ID numbers and phones
  of its envelope are registered with :func:`personal_data` and masked wherever they show
  up, even inside free text a library produced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# 18-digit GB 11643 numbers and the 15-digit numbers issued before 1999.
_CITIZEN_ID = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[0-9Xx]|\d{15})(?![0-9A-Za-z])")
# Mobile numbers, with or without +86 and with spaces or dashes between the groups.
_PHONE = re.compile(r"(?<![\d+])(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)")

_ID_KEYS = ("id_number", "citizen_id", "head_id_number", "aae135")
_PHONE_KEYS = ("phone", "mobile", "telephone")
_NAME_KEYS = ("name", "aac003")
_NOT_PERSONAL_NAMES = frozenset(
    {"event", "logger", "logger_name", "system", "queue", "exchange", "hostname", "filename"}
)

_known: ContextVar[frozenset[str]] = ContextVar("gateway_personal_values", default=frozenset())


def mask_id(value: str) -> str:
    """``431022200001011234`` → ``4310**********1234`` (keeps 4 + 4 characters)."""
    if len(value) <= 8:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def mask_phone(value: str) -> str:
    if len(value) <= 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_name(value: str) -> str:
    if not value:
        return value
    return value[0] + "*" * max(len(value) - 1, 1)


def _mask_for_key(key: str, value: str) -> str | None:
    k = key.lower()
    if k in _NOT_PERSONAL_NAMES:
        return None
    if any(k == p or k.endswith("_" + p) for p in _ID_KEYS):
        return mask_id(value)
    if any(k == p or k.endswith("_" + p) for p in _PHONE_KEYS):
        return mask_phone(value)
    if any(k == p or k.endswith("_" + p) for p in _NAME_KEYS):
        return mask_name(value)
    return None


def mask_text(text: str, known: Iterable[str] | None = None) -> str:
    """Mask every known personal value (default: this context's), then IDs and phones."""
    values = _known.get() if known is None else known
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 2 and value in text:
            text = text.replace(value, _mask_known(value))
    text = _CITIZEN_ID.sub(lambda m: mask_id(m.group(0)), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def _mask_known(value: str) -> str:
    if _CITIZEN_ID.fullmatch(value):
        return mask_id(value)
    if _PHONE.fullmatch(value):
        return mask_phone(value)
    if any(ch.isdigit() for ch in value):
        return mask_id(value)  # a document or account number
    return mask_name(value)


def mask_value(value: Any, key: str | None = None, known: Iterable[str] | None = None) -> Any:
    """Mask a JSON-like value recursively (dicts, lists, strings)."""
    known = tuple(_known.get() if known is None else known)
    if isinstance(value, str):
        if key is not None and (masked := _mask_for_key(key, value)) is not None:
            return masked
        return mask_text(value, known)
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)  # a phone or ID number logged as a number
        masked = mask_value(text, key, known)
        return value if masked == text else masked
    if isinstance(value, Mapping):
        return {k: mask_value(v, str(k), known) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v, key, known) for v in value]
    return value


def current_personal_values() -> frozenset[str]:
    return _known.get()


@contextmanager
def personal_data(values: Iterable[str]) -> Iterator[None]:
    """Register the personal values of the message being handled, for this context."""
    token = _known.set(_known.get() | frozenset(v for v in values if v))
    try:
        yield
    finally:
        _known.reset(token)


def register_personal_data(values: Iterable[str]) -> None:
    """Add values to the current context (an aiohttp handler's task) without a ``with``."""
    _known.set(_known.get() | frozenset(v for v in values if v))


def structlog_processor(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> dict[str, Any]:
    """structlog processor: masks every field of the event, the rendered traceback included."""
    known = _known.get()
    return {k: mask_value(v, k, known) for k, v in event_dict.items()}
