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

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# 18-digit GB 11643 numbers and the 15-digit numbers issued before 1999.
_CITIZEN_ID = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[0-9Xx]|\d{15})(?![0-9A-Za-z])")
# Mobile numbers, with or without +86 and with spaces or dashes between the groups, or dots
# (``138.1234.5678``): a dot only as both separators, never one alone (a decimal number).
_PHONE = re.compile(
    r"(?<![\d+])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}[ -]?|[ .-]\d{4}[ .-])\d{4}(?!\d)"
)
# Either of the two: one scan tells whether a text needs the two substitutions at all.
_EITHER = re.compile(f"{_CITIZEN_ID.pattern}|{_PHONE.pattern}")
# What every match of either contains (three digits, at most a space, dash or dot, four
# digits, at most one again, four digits: a phone's groups, or 11 of an ID's digits in a row),
# without look-arounds: re skips to each digit, ten times faster than ``_EITHER`` on a log
# line. A text without it cannot hold an ID or a phone, so the full scan is skipped. (Three
# and four digits alone were not enough to tell: one UUID in ten or so has them.)
_MAYBE = re.compile(r"\d{3}[ .-]?\d{4}[ .-]?\d{4}")
# The same question for an ASCII text, four times faster again: each digit becomes ``0``,
# a space, dash or dot ``-``, anything else ``a``; ``_MAYBE`` matches where one of ``_SHAPES``
# is found (only ASCII digits are digits in an ASCII text).
_DIGIT_SHAPES = bytes(
    ord("0") if chr(b).isdigit() else ord("-") if chr(b) in " .-" else ord("a") for b in range(256)
)
_SHAPES = (b"00000000000", b"000-00000000", b"0000000-0000", b"000-0000-0000")


def could_hold_id_or_phone(text: str) -> bool:
    """False when no citizen ID or phone number can be in ``text`` (``_MAYBE`` finds nothing)."""
    if text.isascii():
        shapes = text.encode("ascii").translate(_DIGIT_SHAPES)
        return any(shape in shapes for shape in _SHAPES)
    return _MAYBE.search(text) is not None


_ID_KEYS = ("id_number", "citizen_id", "head_id_number", "aae135")
_PHONE_KEYS = ("phone", "mobile", "telephone")
_NAME_KEYS = ("name", "aac003")
_NOT_PERSONAL_NAMES = frozenset(
    {"event", "logger", "logger_name", "system", "queue", "exchange", "hostname", "filename"}
)


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


Known = tuple[str, ...]
"""Known personal values of two characters or more, longest first (replaced in that order)."""

_KEY_MASKS: dict[str, Callable[[str], str] | None] = {}
_KEY_MASKS_MAX = 4096  # field names come from code and envelopes: a bounded set in practice
_PLAIN_KEYS: set[str] = set()  # the names among them that call for no mask


def _key_mask(key: str) -> Callable[[str], str] | None:
    """The mask a field name calls for, if any; decided once per name."""
    try:
        return _KEY_MASKS[key]
    except KeyError:
        pass
    k = key.lower()
    mask: Callable[[str], str] | None = None
    if k in _NOT_PERSONAL_NAMES:
        mask = None
    elif any(k == p or k.endswith("_" + p) for p in _ID_KEYS):
        mask = mask_id
    elif any(k == p or k.endswith("_" + p) for p in _PHONE_KEYS):
        mask = mask_phone
    elif any(k == p or k.endswith("_" + p) for p in _NAME_KEYS):
        mask = mask_name
    if len(_KEY_MASKS) < _KEY_MASKS_MAX:
        _KEY_MASKS[key] = mask
        if mask is None:
            _PLAIN_KEYS.add(key)
    return mask


def prepare_known(values: Iterable[str]) -> Known:
    return tuple(sorted({v for v in values if len(v) >= 2}, key=len, reverse=True))


class _InPlay:
    """The personal values in play and, prepared once rather than per log line, the order
    they are replaced in."""

    __slots__ = ("ordered", "values")

    def __init__(self, values: frozenset[str]) -> None:
        self.values = values
        self.ordered = prepare_known(values)

    def adding(self, values: Iterable[str]) -> _InPlay:
        return _InPlay(self.values | frozenset(v for v in values if v))


_NONE_IN_PLAY = _InPlay(frozenset())  # never changed: ``adding`` makes a new one
_known: ContextVar[_InPlay] = ContextVar("gateway_personal_values", default=_NONE_IN_PLAY)


def mask_text(text: str, known: Iterable[str] | None = None) -> str:
    """Mask every known personal value (default: this context's), then IDs and phones."""
    return _mask_text(text, _known.get().ordered if known is None else prepare_known(known))


def _mask_text(text: str, known: Known) -> str:
    for value in known:
        if value in text:
            text = text.replace(value, _mask_known(value))
    if not could_hold_id_or_phone(text):  # the usual case: neither substitution would change it
        return text
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
    return _mask_value(value, key, _known.get().ordered if known is None else prepare_known(known))


def _mask_value(value: Any, key: str | None, known: Known) -> Any:
    if isinstance(value, str):
        if key is not None and (mask := _key_mask(key)) is not None:
            return mask(value)
        return _mask_text(value, known)
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)  # a phone or ID number logged as a number
        masked = _mask_value(text, key, known)
        return value if masked == text else masked
    if isinstance(value, Mapping):
        return {
            _mask_text(k, known) if isinstance(k, str) else k: _mask_value(v, str(k), known)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_mask_value(v, key, known) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, set | frozenset):  # written as its repr: masked as a list if need be
        items = [_mask_value(v, key, known) for v in value]
        return value if items == list(value) else items
    return _mask_written(value, key, known)


# Written with fewer than 11 digits in a row (a UUID's groups are separated; a date's too).
_NO_ROOM = (uuid.UUID, dt.date, dt.time)


def _mask_written(value: Any, key: str | None, known: Known) -> Any:
    """A value the renderers write as text (bytes decoded, a float, an exception or any
    other object as its ``repr``): that text masked in its place when it holds something to
    mask, else the value as it is."""
    if isinstance(value, float) and -1e10 < value < 1e10:
        return value  # too few digits for a phone or an ID
    if isinstance(value, _NO_ROOM):
        return value
    try:
        if isinstance(value, bytes | bytearray):
            text = bytes(value).decode("utf-8", "backslashreplace")
        else:
            text = str(value) if isinstance(value, float) else repr(value)
    except Exception:  # a broken __repr__: the renderer will fail on it as well
        return value
    masked = _mask_value(text, key, known)
    return value if masked == text else masked


def current_personal_values() -> frozenset[str]:
    return _known.get().values


@contextmanager
def personal_data(values: Iterable[str]) -> Iterator[None]:
    """Register the personal values of the message being handled, for this context."""
    token = _known.set(_known.get().adding(values))
    try:
        yield
    finally:
        _known.reset(token)


def register_personal_data(values: Iterable[str]) -> None:
    """Add values to the current context (an aiohttp handler's task) without a ``with``."""
    _known.set(_known.get().adding(values))


# Set by the gateway's own processors before masking, never from a caller's or a library's
# text: a level name, a logger name (a module's) and an ISO time cannot hold personal data.
_STAMPED = frozenset({"level", "logger", "timestamp"})


def structlog_processor(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: masks every field of the event, the rendered traceback included.

    The usual line holds nothing personal, and one look at all its texts at once tells so
    (joined with NUL, which neither a pattern's match nor its look-around can span): then
    only values masked by their field's name, and values that are neither texts nor
    ``None``/booleans, go through ``mask_value``. Masks in place (structlog hands each
    processor a dict of its own)."""
    known = _known.get().ordered
    texts = "\x00".join(
        [v for k, v in event_dict.items() if isinstance(v, str) and k not in _STAMPED]
    )
    if could_hold_id_or_phone(texts) or (known and any(value in texts for value in known)):
        for key, value in event_dict.items():
            if key not in _STAMPED:
                event_dict[key] = _mask_value(value, key, known)
        return event_dict
    plain = _PLAIN_KEYS
    for key, value in event_dict.items():
        if value is None or value is True or value is False:
            continue
        if isinstance(value, str):
            if key not in plain and (mask := _key_mask(key)) is not None:
                event_dict[key] = mask(value)
        else:  # a number logged as such, or a structure whose texts were not looked at
            event_dict[key] = _mask_value(value, key, known)
    return event_dict
