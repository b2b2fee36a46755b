"""Value types and code lists of the envelope, as ``Annotated`` pydantic types.

Each identifier type pairs the JSON Schema constraints portals can check themselves
(length, pattern) with the check-digit validator from ``validators``, so the exported
schema and the runtime agree on format and the runtime adds what a schema cannot say.
Types marked ``PERSONAL`` carry personal data: they export ``"x-personal": true`` and
``personal_values`` collects them for masking.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import cache
from typing import Annotated, Any, Final, Literal, get_args, get_origin

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from gateway.envelope import validators
from gateway.envelope.divisions import current_table

RESIDENT_ID_CARD: Final = "111"
MAX_DOCUMENT_BYTES: Final = 50 * 1024 * 1024
CITIZEN_ID_PATTERN: Final = r"^[0-9]{17}[0-9Xx]$"
OTHER_ID_PATTERN: Final = r"^[0-9A-Z]{1,30}$"
_DATETIME_PATTERN: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})$"
)


class SchemaExtra:
    """``Annotated`` metadata that adds keywords to the exported JSON Schema."""

    def __init__(self, **keywords: Any) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.keywords)
        return schema


PERSONAL: Final = SchemaExtra(**{"x-personal": True})


def _division(value: str) -> str:
    return validators.division_code(value, current_table().names)


def _citizen_id(value: str) -> str:
    return validators.citizen_id(value)


def _not_future_instant(value: datetime) -> datetime:
    if value > datetime.now(UTC):
        raise ValueError("must not be in the future")
    return value


def _not_future_day(value: date) -> date:
    if value > validators.today_in_china():
        raise ValueError("must not be in the future")
    return value


def _text(max_length: int) -> Any:
    return Field(min_length=1, max_length=max_length)


# Free text is printable: no control characters (C0, DEL, C1) and no bidirectional
# overrides, which would hide or reorder what a clerk reads on screen or in a department's file.
TEXT_PATTERN = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
_UNPRINTABLE = re.compile(r"[\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]")


def unprintable_message(value: str) -> str | None:
    """What is wrong with a text that ``TEXT_PATTERN`` refuses (None when it is printable).

    pydantic-core checks the pattern (no Python call per text field); ``parse_envelope``
    turns its refusal into this message."""
    found = _UNPRINTABLE.search(value)
    if found is None:
        return None
    return (
        f"must not contain control or direction-override characters "
        f"(found U+{ord(found.group()):04X} at position {found.start()})"
    )


_PRINTABLE = Field(pattern=TEXT_PATTERN)
_PRINTABLE_SCHEMA = SchemaExtra(pattern=TEXT_PATTERN)


def _pattern(pattern: str, min_length: int, max_length: int) -> Any:
    return Field(min_length=min_length, max_length=max_length, pattern=pattern)


# --- dates and times: JSON strings, offset required (naive datetimes are rejected) ---------
Instant = Annotated[AwareDatetime, SchemaExtra(pattern=_DATETIME_PATTERN, maxLength=35)]
PastInstant = Annotated[Instant, AfterValidator(_not_future_instant)]
Day = Annotated[date, SchemaExtra(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", maxLength=10)]
PastDay = Annotated[Day, AfterValidator(_not_future_day)]

# --- text and identifiers ------------------------------------------------------------------
Text50 = Annotated[str, _text(50), _PRINTABLE, _PRINTABLE_SCHEMA]
Text100 = Annotated[str, _text(100), _PRINTABLE, _PRINTABLE_SCHEMA]
Text200 = Annotated[str, _text(200), _PRINTABLE, _PRINTABLE_SCHEMA]
PersonName = Annotated[str, _text(50), _PRINTABLE, _PRINTABLE_SCHEMA, PERSONAL]
Phone = Annotated[str, _pattern(r"^1[3-9][0-9]{9}$", 11, 11), PERSONAL]
CitizenId = Annotated[
    str, _pattern(CITIZEN_ID_PATTERN, 18, 18), AfterValidator(_citizen_id), PERSONAL
]
# Any ID document number; a lower-case x is allowed last so that GB 11643 numbers normalise.
IdNumber = Annotated[str, _pattern(r"^[0-9A-Z]{0,29}[0-9A-Zx]$", 1, 30), PERSONAL]
Uscc = Annotated[
    str, _pattern(r"^[0-9A-HJ-NPQRTUWXY]{18}$", 18, 18), AfterValidator(validators.uscc)
]
DivisionCode = Annotated[str, _pattern(r"^[0-9]{6}([0-9]{6})?$", 6, 12), AfterValidator(_division)]
BirthCertificateNo = Annotated[
    str, _pattern(r"^[A-Z][0-9]{9}$", 10, 10), AfterValidator(validators.birth_certificate_no)
]
ELicenceId = Annotated[
    str,
    _pattern(
        r"^1\.2\.156\.3005\.2\.[0-9A-Z]{21}\.[0-9A-Z]{18}\.[0-9A-Z]{1,32}\.[0-9]{3}\.[0-9A-Z]$",
        63,
        94,
    ),
    AfterValidator(validators.elicence_id),
]
LocalCode = Annotated[str, _pattern(r"^[0-9A-Za-z_.-]+$", 1, 32)]
AccountNo = Annotated[str, _pattern(r"^[0-9A-Z]+$", 1, 30), PERSONAL]
BankAccount = Annotated[str, _pattern(r"^[0-9]{10,30}$", 10, 30), PERSONAL]
Sha256Hex = Annotated[str, _pattern(r"^[0-9a-f]{64}$", 64, 64)]
YearMonth = Annotated[str, _pattern(r"^[0-9]{4}-(0[1-9]|1[0-2])$", 7, 7)]
DeathCertificateNo = Annotated[str, _pattern(r"^[A-Z0-9]{6,20}$", 6, 20)]
VehicleLicenceNo = Annotated[str, _pattern(r"^[0-9A-Z]+$", 1, 30)]
# The number of a document that names one person (residence permit, discharge certificate,
# low-income certificate): personal, free format, as the issuing office prints it.
PersonalDocumentNo = Annotated[str, _text(50), _PRINTABLE, _PRINTABLE_SCHEMA, PERSONAL]
# ICD-10 (GB/T 14396) diagnosis code; a diagnosis is sensitive personal information (PIPL).
IcdCode = Annotated[str, _pattern(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$", 3, 8), PERSONAL]

# --- code lists (the envelope's contract; department-private codes live in mappings) -------
IdType = Literal["111", "414", "516"]  # GA/T 2000.156: resident ID card, passport, HK/Macau permit
SexCode = Literal["0", "1", "2", "9"]  # GB/T 2261.1: unknown, male, female, unstated
# GB/T 4761 family relation (subset): self, spouse, husband, wife, son, daughter, grandchild,
# parent, father, mother, grandparent, sibling, other relative, not related.
RelationCode = Literal[
    "01", "10", "11", "12", "20", "30", "40", "50", "51", "52", "60", "70", "80", "99"
]  # fmt: skip
Ethnicity = Annotated[str, _pattern(r"^(0[1-9]|[1-4][0-9]|5[0-6]|9[78])$", 2, 2)]  # GB/T 3304
Nationality = Annotated[str, _pattern(r"^[A-Z]{3}$", 3, 3)]  # GB/T 2659 alpha-3, format only
# GB/T 2261.2 marital status once married: married, first marriage, remarriage, remarried to
# the former spouse (the statuses before a marriage — 10, 30, 40 — are not accepted here).
MarriedStatus = Literal["20", "21", "22", "23"]
# GB/T 26341-2010 disability category: visual, hearing, speech, physical, intellectual,
# mental, multiple.
DisabilityCategory = Literal["1", "2", "3", "4", "5", "6", "7"]
MediaType = Literal["application/pdf", "application/ofd", "image/jpeg", "image/png"]
ConsentPurpose = Literal[
    "process_application", "share_with_departments", "fetch_elicences", "notify_by_sms"
]


# --- personal data -------------------------------------------------------------------------
def _marked(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        return any(m is PERSONAL for m in metadata) or _marked(base)
    return any(_marked(arg) for arg in get_args(annotation))


@cache
def _personal_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if any(m is PERSONAL for m in info.metadata) or _marked(info.annotation)
    )


# Values that hold no model and no list: a field typed only with these is not looked into.
_LEAF_TYPES: Final = (str, int, float, bool, date, datetime, AwareDatetime, type(None))


def _leaf(annotation: Any) -> bool:
    if get_origin(annotation) is Literal:
        return True
    if get_origin(annotation) is Annotated:
        return _leaf(get_args(annotation)[0])
    if isinstance(annotation, type) and get_args(annotation) == ():
        return issubclass(annotation, _LEAF_TYPES)
    args = get_args(annotation)  # a union (``X | None``): a leaf if every member is one
    return bool(args) and get_origin(annotation) is not list and all(_leaf(a) for a in args)


@cache
def _walk_plan(model: type[BaseModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The fields of ``model`` that matter to ``personal_values``, decided once per class:
    (personal fields, other fields that may hold a model or a list). The rest are skipped."""
    personal = _personal_fields(model)
    others = tuple(
        name
        for name, info in model.model_fields.items()
        if name not in personal and not _leaf(info.annotation)
    )
    return tuple(sorted(personal)), others


def _collect(value: object, found: set[str]) -> None:
    if isinstance(value, BaseModel):
        personal, others = _walk_plan(type(value))
        fields = value.__dict__  # a model's field values, without a getattr per field
        for name in personal:
            item = fields[name]
            if isinstance(item, str):
                found.add(item)
            elif isinstance(item, list):
                found.update(v for v in item if isinstance(v, str))
                _collect(item, found)
            elif item is not None:
                _collect(item, found)
        for name in others:
            item = fields[name]
            if item is not None:
                _collect(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found)


def personal_values(env: BaseModel) -> set[str]:
    """Every name, ID number, phone and account number in ``env`` (for exact-value masking)."""
    found: set[str] = set()
    _collect(env, found)
    return found
