"""The canonical application envelope: one portal request, typed per matter.

``Envelope`` is a union discriminated on ``matter`` (one class per matter); materials are a
union discriminated on ``kind``. ``parse_envelope`` turns JSON bytes into an ``Envelope`` or
raises ``InvalidEnvelope`` listing every field error at once, never with the offending value.

    fields      value types (identifiers, codes, dates) and the PERSONAL marker
    parts       the strict base, channel, applicant, organisation, materials, consent
    subjects    per-matter subjects and their cross-field rules
    model       envelopes, the union, ``parse_envelope``  (this module)
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from gateway.envelope.fields import Instant
from gateway.envelope.fields import personal_values as personal_values  # re-exported
from gateway.envelope.parts import Applicant, Channel, Consent, Material, StrictModel, raise_at
from gateway.envelope.subjects import AfterDeathSubjects, NewbornSubjects, RetirementSubjects
from gateway.errors import FieldError, InvalidEnvelope

SCHEMA_VERSION: Final = "1.0"


class _EnvelopeBase(StrictModel):
    schema_version: Literal["1.0"]
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


# --- the union and its parser --------------------------------------------------------------
Envelope = Annotated[
    NewbornEnvelope | RetirementEnvelope | AfterDeathEnvelope, Field(discriminator="matter")
]
ENVELOPE_ADAPTER: Final[TypeAdapter[Envelope]] = TypeAdapter(Envelope)
TYPED_MATTERS: Final = ("newborn", "retirement", "after_death")
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


def _message(error: Any) -> str:
    if error["type"] == "union_tag_invalid":  # pydantic's text quotes the input tag
        return f"must be one of {error['ctx']['expected_tags']}"
    if error["type"] == "union_tag_not_found":
        return "Field required"
    return str(error["msg"]).removeprefix("Value error, ")


def _type(error: Any) -> str:
    return "missing" if error["type"] == "union_tag_not_found" else str(error["type"])


def parse_envelope(body: bytes) -> Envelope:
    """Validate JSON bytes; raise ``InvalidEnvelope`` listing every error (values left out)."""
    try:
        return ENVELOPE_ADAPTER.validate_json(body, strict=True)
    except ValidationError as exc:
        errors = [
            FieldError(loc=_dotted(e), msg=_message(e), type=_type(e))
            for e in exc.errors(include_url=False, include_input=False)
        ]
    # Raised outside the except block so that no traceback carries pydantic's own message,
    # which quotes the input values.
    raise InvalidEnvelope(detail=f"the envelope has {len(errors)} invalid field(s)", errors=errors)
