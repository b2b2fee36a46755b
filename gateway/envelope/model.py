"""The canonical application envelope: one portal request, typed per matter.

``Envelope`` is a union discriminated on ``matter`` (one class per matter); materials are a
union discriminated on ``kind``. ``parse_envelope`` turns JSON bytes into an ``Envelope`` or
raises ``InvalidEnvelope`` listing every field error at once, never with the offending value.

    fields      value types (identifiers, codes, dates) and the PERSONAL marker
    parts       the strict base, channel, applicant, organisation, materials, consent
    subjects    per-matter subjects and their cross-field rules (newborn, retirement,
                after death); subjects_services (school entry, medical care, disability)
                and subjects_household (housing, veteran, marriage & birth)
    model       envelopes, the union, ``parse_envelope``  (this module)
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from gateway.envelope import validators
from gateway.envelope.fields import TEXT_PATTERN, Instant, unprintable_message
from gateway.envelope.fields import personal_values as personal_values  # re-exported
from gateway.envelope.parts import (
    Applicant,
    Channel,
    Consent,
    Identified,
    Loc,
    Material,
    StrictModel,
    raise_at,
)
from gateway.envelope.subjects import AfterDeathSubjects, NewbornSubjects, RetirementSubjects
from gateway.envelope.subjects_household import (
    HousingSubjects,
    MarriageBirthSubjects,
    VeteranSubjects,
)
from gateway.envelope.subjects_services import (
    DisabilitySubjects,
    MedicalCareSubjects,
    SchoolEntrySubjects,
)
from gateway.errors import FieldError, InvalidEnvelope
from gateway.matters import MATTERS

SCHEMA_VERSION: Final = "1.0"
"""The current envelope version. A minor step (1.1) carries additive changes only; a change
that would break a portal (``gateway contracts check``) needs a new major version."""


def accepted_versions(current: str) -> tuple[str, ...]:
    """What intake accepts: the current version and the previous minor of the same major.

    ``1.0`` → ``("1.0",)``; ``1.1`` → ``("1.1", "1.0")``; ``2.0`` → ``("2.0",)``.
    """
    major, minor = (int(part) for part in current.split("."))
    return (current,) if minor == 0 else (current, f"{major}.{minor - 1}")


ACCEPTED_VERSIONS: Final = accepted_versions(SCHEMA_VERSION)
SchemaVersion = Literal["1.0"]
"""``ACCEPTED_VERSIONS`` as a type (a test holds the two equal): when SCHEMA_VERSION moves to
1.1, this becomes ``Literal["1.1", "1.0"]`` and the exported schema's const an enum."""


class _EnvelopeBase(StrictModel):
    schema_version: SchemaVersion
    matter: str  # narrowed to one Literal per matter
    channel: Channel
    applicant: Applicant
    subjects: StrictModel  # narrowed to the matter's subjects
    materials: list[Material] = Field(default_factory=list, max_length=50)
    consent: Consent
    submitted_at: Instant


class NewbornEnvelope(_EnvelopeBase):
    """新生儿出生: birth certificate, vaccination, hukou, medical insurance, SSC."""

    matter: Literal["newborn"]
    subjects: NewbornSubjects

    @model_validator(mode="after")
    def _born_before_submission(self) -> Self:
        if self.subjects.child.birth_datetime > self.submitted_at:
            loc = ("subjects", "child", "birth_datetime")
            raise_at(type(self).__name__, (loc, "must not be after submitted_at"))
        return self


class RetirementEnvelope(_EnvelopeBase):
    """企业职工退休: enterprise employee retirement."""

    matter: Literal["retirement"]
    subjects: RetirementSubjects


class AfterDeathEnvelope(_EnvelopeBase):
    """身后一件事: the matters after a death."""

    matter: Literal["after_death"]
    subjects: AfterDeathSubjects


class SchoolEntryEnvelope(_EnvelopeBase):
    """入学一件事: school enrolment and the verifications it rests on."""

    matter: Literal["school_entry"]
    subjects: SchoolEntrySubjects


class MedicalCareEnvelope(_EnvelopeBase):
    """就医一件事: insurance, out-of-area filing, chronic-disease entitlement, reimbursement."""

    matter: Literal["medical_care"]
    subjects: MedicalCareSubjects


class HousingEnvelope(_EnvelopeBase):
    """建房购房一件事: buying a second-hand home, from contract filing to hukou move-in."""

    matter: Literal["housing"]
    subjects: HousingSubjects


class VeteranEnvelope(_EnvelopeBase):
    """退役军人一件事: report-in and what follows from it."""

    matter: Literal["veteran"]
    subjects: VeteranSubjects


# Civil Code art. 1047: the man at least 22, the woman at least 20 (GB/T 2261.1 sex code).
MARRIAGE_AGE: Final = {1: 22, 2: 20}


def _age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


class MarriageBirthEnvelope(_EnvelopeBase):
    """婚育一件事: marriage registration, birth plan, hukou marital status, maternity."""

    matter: Literal["marriage_birth"]
    subjects: MarriageBirthSubjects

    @model_validator(mode="after")
    def _of_marriageable_age(self) -> Self:
        day = validators.china_date(self.submitted_at)
        problems: list[tuple[Loc, str]] = []
        for party in ("person", "spouse"):
            who: Identified = getattr(self.subjects, party)
            number = who.citizen_id
            if number is None:
                continue  # other documents carry no birth date the gateway can read
            minimum = MARRIAGE_AGE[validators.sex_from_citizen_id(number)]
            if _age_on(validators.birth_date_from_citizen_id(number), day) < minimum:
                loc = ("subjects", party, "id_number")
                problems.append((loc, f"is under the legal marriage age ({minimum})"))
        if problems:
            raise_at(type(self).__name__, *problems)
        return self


class DisabilityEnvelope(_EnvelopeBase):
    """残疾人服务一件事: disability card and the support it opens."""

    matter: Literal["disability"]
    subjects: DisabilitySubjects


# --- the union and its parser --------------------------------------------------------------
Envelope = Annotated[
    NewbornEnvelope
    | SchoolEntryEnvelope
    | MedicalCareEnvelope
    | HousingEnvelope
    | VeteranEnvelope
    | RetirementEnvelope
    | AfterDeathEnvelope
    | MarriageBirthEnvelope
    | DisabilityEnvelope,
    Field(discriminator="matter"),
]
ENVELOPE_ADAPTER: Final[TypeAdapter[Envelope]] = TypeAdapter(Envelope)
TYPED_MATTERS: Final = MATTERS  # every matter of DESIGN now has its typed envelope
_MATERIAL_KINDS: Final = ("elicence", "document")
_TAG_ERRORS: Final = ("union_tag_invalid", "union_tag_not_found")


def _dotted(error: Any) -> str:
    """``('newborn', 'materials', 0, 'document', 'title')`` → ``materials.0.title``."""
    loc = list(error["loc"])
    if loc and loc[0] in TYPED_MATTERS:
        del loc[0]  # the union tag pydantic puts in front of the envelope's fields
    if len(loc) >= 3 and loc[0] == "materials" and loc[2] in _MATERIAL_KINDS:
        del loc[2]
    if error["type"] in _TAG_ERRORS:
        loc.append(str(error["ctx"]["discriminator"]).strip("'"))
    return ".".join(str(part) for part in loc)


def _unprintable(error: Any) -> bool:
    """A free text refused by ``TEXT_PATTERN`` (pydantic-core checks it, not a validator)."""
    return bool(
        error["type"] == "string_pattern_mismatch" and error["ctx"]["pattern"] == TEXT_PATTERN
    )


def _message(error: Any) -> str:
    if _unprintable(error):  # says which character, where; never the text itself
        return unprintable_message(error["input"]) or str(error["msg"])
    if error["type"] == "literal_error" and tuple(error["loc"])[-1:] == ("schema_version",):
        return f"unsupported schema version; this gateway accepts {', '.join(ACCEPTED_VERSIONS)}"
    if error["type"] == "union_tag_invalid":  # pydantic's text quotes the input tag
        return f"must be one of {error['ctx']['expected_tags']}"
    if error["type"] == "union_tag_not_found":
        return "Field required"
    return str(error["msg"]).removeprefix("Value error, ")


def _type(error: Any) -> str:
    if _unprintable(error):
        return "value_error"  # as when a Python validator said it
    return "missing" if error["type"] == "union_tag_not_found" else str(error["type"])


def dump_envelope(envelope: Envelope) -> str:
    """The envelope's normal JSON text, as intake stores and publishes it: what
    ``ENVELOPE_ADAPTER.dump_json`` writes, by the matter's own serializer (no union to
    dispatch through)."""
    return type(envelope).__pydantic_serializer__.to_json(envelope).decode()


def parse_envelope(body: bytes) -> Envelope:
    """Validate JSON bytes; raise ``InvalidEnvelope`` listing every error (values left out:
    the inputs are read only to say where a text holds a control character)."""
    try:
        return ENVELOPE_ADAPTER.validate_json(body, strict=True)
    except ValidationError as exc:
        errors = [
            FieldError(loc=_dotted(e), msg=_message(e), type=_type(e))
            for e in exc.errors(include_url=False, include_input=True)
        ]
    # Raised outside the except block so that no traceback carries pydantic's own message,
    # which quotes the input values.
    raise InvalidEnvelope(detail=f"the envelope has {len(errors)} invalid field(s)", errors=errors)
