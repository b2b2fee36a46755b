"""Check digits and formats of the identifiers a one-window application carries.

Pure functions over ``str``: no pydantic, no I/O. Each validator returns the value in its
normal form or raises ``ValueError`` saying what is wrong and what is expected. Messages
never repeat the input: ID numbers and names are personal data and error texts end up in
logs and problem+json bodies.

    citizen_id            GB 11643-1999 citizen identity number (18 chars, MOD 11-2)
    uscc                  GB 32100-2015 unified social credit code (18 chars, MOD 31)
    division_code         GB/T 2260 division code, 6 digits (+ 6 township/village digits)
    birth_certificate_no  birth medical certificate number, ``^[A-Z][0-9]{9}$``
    elicence_id           electronic licence identifier, ISO 7064 MOD 37,36 check char
"""

from __future__ import annotations

import re
import time
from collections.abc import Container
from datetime import date, datetime, timedelta, timezone
from operator import mul

__all__ = [
    "birth_certificate_no",
    "birth_date_from_citizen_id",
    "china_date",
    "citizen_id",
    "citizen_id_check_char",
    "division_code",
    "elicence_id",
    "mod37_36_check_char",
    "sex_from_citizen_id",
    "today_in_china",
    "uscc",
    "uscc_check_char",
]

# China Standard Time has had no daylight saving since 1991: a fixed offset needs no tzdata.
_CHINA = timezone(timedelta(hours=8), "CST")

# --- GB 11643-1999 -----------------------------------------------------------------------
CITIZEN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CITIZEN_ID_CHECK_CHARS = "10X98765432"
# The weighted sum over the digits' code points, less what the code point of "0" adds.
_CITIZEN_ID_ZERO = ord("0") * sum(CITIZEN_ID_WEIGHTS)
# A plausibility floor; the published vector 440524188001010014 (born 1880-01-01) passes.
EARLIEST_BIRTH_YEAR = 1880
_DIGITS17 = re.compile(r"[0-9]{17}")

# --- GB 32100-2015 -----------------------------------------------------------------------
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_USCC_VALUES = {c: i for i, c in enumerate(USCC_CHARSET)}
_USCC_CHARS = re.compile(r"[0-9A-HJ-NPQRTUWXY]*")  # USCC_CHARSET as a class

# --- ISO 7064 MOD 37,36 ------------------------------------------------------------------
MOD37_36_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MOD37_36_VALUES = {c: i for i, c in enumerate(MOD37_36_ALPHABET)}

_DIVISION6 = re.compile(r"[0-9]{6}")
_DIVISION12 = re.compile(r"[0-9]{12}")
_BIRTH_CERTIFICATE = re.compile(r"[A-Z][0-9]{9}")
ELICENCE_PREFIX = "1.2.156.3005.2."
_ELICENCE = re.compile(
    r"1\.2\.156\.3005\.2\."
    r"(?P<type>[0-9A-Z]{21})\.(?P<issuer>[0-9A-Z]{18})\.(?P<serial>[0-9A-Z]{1,32})\."
    r"(?P<version>[0-9]{3})\.(?P<check>[0-9A-Z])"
)


_CHINA_OFFSET_SECONDS = 8 * 3600
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def today_in_china() -> date:
    """Today's date in China Standard Time (UTC+8), the calendar ID numbers are issued on."""
    # What ``china_date(datetime.now(UTC))`` says, by arithmetic on the same clock: it is
    # asked several times per envelope.
    days = int((time.time() + _CHINA_OFFSET_SECONDS) // 86400)
    return date.fromordinal(_EPOCH_ORDINAL + days)


def china_date(moment: datetime) -> date:
    """The calendar date of an aware moment in China Standard Time (UTC+8)."""
    return moment.astimezone(_CHINA).date()


# --- citizen ID ----------------------------------------------------------------------------


def citizen_id_check_char(body17: str) -> str:
    """Check character for the first 17 digits of a citizen ID number (GB 11643, MOD 11-2)."""
    if not _DIGITS17.fullmatch(body17):
        raise ValueError("citizen ID body must be 17 ASCII digits")
    return _mod11_2(body17)


def _mod11_2(body17: str) -> str:
    """The check character of 17 ASCII digits (the caller has checked them)."""
    total = sum(map(mul, body17.encode("ascii"), CITIZEN_ID_WEIGHTS)) - _CITIZEN_ID_ZERO
    return CITIZEN_ID_CHECK_CHARS[total % 11]


def _birth_date(value: str) -> date:
    try:
        return date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise ValueError("birth date (characters 7-14) is not a real date") from None


def citizen_id(value: str, *, today: date | None = None) -> str:
    """Validate a GB 11643-1999 citizen ID number and return it with an upper-case ``X``.

    Checks the length, the 17 digits, the birth date (a real date, not in the future, not
    before 1880) and the check character. The address code (characters 1-6) is *not*
    looked up: division codes retire, ID numbers never change.
    """
    if len(value) != 18:
        raise ValueError(f"citizen ID number must be 18 characters, got {len(value)}")
    if not _DIGITS17.fullmatch(value[:17]):
        raise ValueError("citizen ID number: the first 17 characters must be digits")
    if value[17] == "x":
        value = value[:17] + "X"
    if value[17] not in CITIZEN_ID_CHECK_CHARS:
        raise ValueError("citizen ID number: the last character must be a digit or X")
    born = _birth_date(value)
    if born > (today or today_in_china()):
        raise ValueError("citizen ID number: birth date is in the future")
    if born.year < EARLIEST_BIRTH_YEAR:
        raise ValueError(f"citizen ID number: birth date is before {EARLIEST_BIRTH_YEAR}")
    if _mod11_2(value[:17]) != value[17]:
        raise ValueError("citizen ID number: check digit does not match (GB 11643)")
    return value


def sex_from_citizen_id(value: str) -> int:
    """GB/T 2261.1 sex code from the 17th digit: odd = 1 (male), even = 2 (female)."""
    if len(value) != 18 or not value[16].isascii() or not value[16].isdigit():
        raise ValueError("citizen ID number must be 18 characters with a digit at position 17")
    return 1 if int(value[16]) % 2 else 2


def birth_date_from_citizen_id(value: str) -> date:
    """Birth date encoded in characters 7-14 (YYYYMMDD) of a citizen ID number."""
    if len(value) != 18 or not _DIGITS17.fullmatch(value[:17]):
        raise ValueError("citizen ID number must be 18 characters, the first 17 digits")
    return _birth_date(value)


# --- unified social credit code ------------------------------------------------------------


def uscc_check_char(body17: str) -> str:
    """Check character for the first 17 characters of a unified social credit code."""
    if len(body17) != 17 or not _USCC_CHARS.fullmatch(body17):
        raise ValueError(f"USCC body must be 17 characters from {USCC_CHARSET}")
    return _mod31(body17)


def _mod31(body17: str) -> str:
    """The check character of 17 characters of ``USCC_CHARSET`` (the caller has checked)."""
    total = sum(map(mul, map(_USCC_VALUES.__getitem__, body17), USCC_WEIGHTS))
    return USCC_CHARSET[(31 - total % 31) % 31]


def uscc(value: str) -> str:
    """Validate a GB 32100-2015 unified social credit code (an organisation's, not personal).

    Checks the length, the character set (upper case, no I, O, S, V, Z) and the check
    character. The embedded organisation code's own check digit is not verified.
    """
    if len(value) != 18:
        raise ValueError(f"unified social credit code must be 18 characters, got {len(value)}")
    if not _USCC_CHARS.fullmatch(value):
        raise ValueError(f"unified social credit code may only use {USCC_CHARSET}")
    expected = _mod31(value[:17])
    if value[17] != expected:
        raise ValueError(
            f"unified social credit code: check character is {value[17]}, expected {expected}"
        )
    return value


# --- GB/T 2260 division code ---------------------------------------------------------------


def division_code(value: str, table: Container[str]) -> str:
    """Validate a GB/T 2260 division code against ``table`` (6-digit county-level codes).

    A 6-digit code must be in the table. A 12-digit code (county + township 3 + village 3,
    as platforms use) must start with a code in the table; its last 6 digits are checked
    for format only, because we ship no township or village table. Anything else fails.
    """
    if _DIVISION12.fullmatch(value):
        county = value[:6]
    elif _DIVISION6.fullmatch(value):
        county = value
    else:
        raise ValueError("division code must be 6 or 12 digits (GB/T 2260)")
    if county not in table:
        raise ValueError("division code is not in the GB/T 2260 table")
    return value


# --- birth medical certificate -------------------------------------------------------------


def birth_certificate_no(value: str) -> str:
    """Birth medical certificate number: one upper-case letter and 9 digits (no check digit)."""
    if not _BIRTH_CERTIFICATE.fullmatch(value):
        raise ValueError("birth certificate number must be one letter A-Z and 9 digits")
    return value


# --- electronic licence identifier ---------------------------------------------------------


def _mod37_36_steps() -> dict[str, tuple[int, ...]]:
    """For each character, the next ``product`` of ISO 7064 MOD 37,36 for every current one
    (``product`` is 1..36): the loop below then does one look-up per character."""
    m = len(MOD37_36_ALPHABET)
    return {
        c: tuple(((((p + digit) % m) or m) * 2) % (m + 1) for p in range(m + 1))
        for c, digit in _MOD37_36_VALUES.items()
    }


_MOD37_36_STEPS = _mod37_36_steps()


def mod37_36_check_char(s: str) -> str:
    """ISO 7064 MOD 37,36 (hybrid system, alphabet 0-9A-Z) check character for ``s``."""
    m = len(MOD37_36_ALPHABET)
    product = m
    steps = _MOD37_36_STEPS
    for c in s:
        step = steps.get(c)
        if step is None:
            raise ValueError("MOD 37,36 input may only use 0-9 and A-Z")
        product = step[product]
    return MOD37_36_ALPHABET[(m + 1 - product) % m]


def elicence_id(value: str) -> str:
    """Validate an electronic licence identifier.

    ``1.2.156.3005.2.<type 21>.<issuer USCC 18>.<serial 1-32>.<version 3 digits>.<check>``;
    the issuer must be a valid USCC and the check character is ISO 7064 MOD 37,36 over
    type + issuer + serial + version with the dots removed.
    """
    if not value.startswith(ELICENCE_PREFIX):
        raise ValueError(f"e-licence identifier must start with {ELICENCE_PREFIX}")
    match = _ELICENCE.fullmatch(value)
    if match is None:
        raise ValueError(
            "e-licence identifier must be <prefix><type: 21 of 0-9A-Z>.<issuer USCC: 18>"
            ".<serial: 1-32 of 0-9A-Z>.<version: 3 digits>.<check: 1 of 0-9A-Z>"
        )
    try:
        uscc(match["issuer"])
    except ValueError as exc:
        raise ValueError(f"e-licence issuer: {exc}") from None
    expected = mod37_36_check_char(
        match["type"] + match["issuer"] + match["serial"] + match["version"]
    )
    if match["check"] != expected:
        # No "expected X": a licence identifier points at a person's certificate.
        raise ValueError("e-licence identifier: check character does not match (MOD 37,36)")
    return value
