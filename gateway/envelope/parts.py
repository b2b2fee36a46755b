"""Parts every envelope shares: the strict base, channel, persons, organisations, materials.

``StrictModel`` is the base of every envelope model: strict types (no coercion), unknown
fields rejected, immutable. ``raise_at`` reports a cross-field rule at the field it concerns.
"""

from __future__ import annotations

from typing import Annotated, Literal, NoReturn, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from gateway.envelope import validators
from gateway.envelope.fields import (
    CITIZEN_ID_PATTERN,
    MAX_DOCUMENT_BYTES,
    OTHER_ID_PATTERN,
    RESIDENT_ID_CARD,
    ConsentPurpose,
    DivisionCode,
    ELicenceId,
    IdNumber,
    IdType,
    Instant,
    LocalCode,
    MediaType,
    PersonName,
    Phone,
    RelationCode,
    Sha256Hex,
    Text100,
    Text200,
    Uscc,
)

Loc = tuple[str | int, ...]


def raise_at(title: str, *problems: tuple[Loc, str]) -> NoReturn:
    """Report cross-field problems at the fields they concern, not at the model."""
    raise ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=PydanticCustomError("value_error", msg), loc=loc, input=None)
            for loc, msg in problems
        ],
    )


class StrictModel(BaseModel):
    """Base of every envelope model: strict, closed (unknown fields rejected), immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --- parts shared by every matter ----------------------------------------------------------
class Channel(StrictModel):
    """Where the application came in; a window application names its window and clerk."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "window"}}, "required": ["kind"]},
            "then": {
                "required": ["window_id", "clerk_id"],
                "properties": {"window_id": {"type": "string"}, "clerk_id": {"type": "string"}},
            },
        }
    )

    kind: Literal["window", "online", "mobile"]
    window_id: LocalCode | None = Field(default=None, validate_default=True)
    clerk_id: LocalCode | None = Field(default=None, validate_default=True)

    @field_validator("window_id", "clerk_id")
    @classmethod
    def _required_at_window(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("kind") == "window":
            raise ValueError(f"{info.field_name} is required when kind is window")
        return value


class Identified(StrictModel):
    """A person named by an ID document; a resident ID card number must pass GB 11643."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"id_type": {"const": RESIDENT_ID_CARD}}, "required": ["id_type"]},
            "then": {"properties": {"id_number": {"pattern": CITIZEN_ID_PATTERN}}},
            "else": {"properties": {"id_number": {"pattern": OTHER_ID_PATTERN}}},
        }
    )

    name: PersonName
    id_type: IdType
    id_number: IdNumber

    @field_validator("id_number")
    @classmethod
    def _check_id_number(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("id_type") == RESIDENT_ID_CARD:
            return validators.citizen_id(value)
        if value.endswith("x"):
            raise ValueError("ID number must use upper-case letters")
        return value

    @property
    def citizen_id(self) -> str | None:
        """The GB 11643 number when the document is a resident ID card."""
        return self.id_number if self.id_type == RESIDENT_ID_CARD else None


class Applicant(Identified):
    """The person who applies; ``relation`` is theirs to the subject (GB/T 4761, 01 = self)."""

    phone: Phone
    relation: RelationCode


class Organisation(StrictModel):
    """An organisation named by its unified social credit code."""

    name: Text100
    uscc: Uscc


class Address(StrictModel):
    """A GB/T 2260 division code (6 or 12 digits) and the street-level detail."""

    division: DivisionCode
    detail: Text200


class ELicenceMaterial(StrictModel):
    """A material the departments fetch from the e-licence library by identifier."""

    kind: Literal["elicence"]
    identifier: ELicenceId
    title: Text100


class DocumentMaterial(StrictModel):
    """A document the portal stored; referenced by SHA-256 and size, never inlined."""

    kind: Literal["document"]
    sha256: Sha256Hex
    size_bytes: Annotated[int, Field(ge=1, le=MAX_DOCUMENT_BYTES)]
    media_type: MediaType
    title: Text100


Material = Annotated[ELicenceMaterial | DocumentMaterial, Field(discriminator="kind")]


class Consent(StrictModel):
    """The applicant's consent to process and share their data for the listed purposes."""

    granted: Literal[True]
    scope: list[ConsentPurpose] = Field(
        min_length=1,
        max_length=len(get_args(ConsentPurpose)),
        json_schema_extra={"uniqueItems": True},
    )
    granted_at: Instant

    @field_validator("scope")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each purpose may appear once")
        return value
