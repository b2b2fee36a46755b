"""The subjects of each matter: what its departments need, taken from DOMAIN.md §3.

One ``*Subjects`` model per matter. Rules that span fields of one subject live here;
rules that need the envelope (``submitted_at``) live in ``model``.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.envelope import validators
from gateway.envelope.fields import (
    RESIDENT_ID_CARD,
    AccountNo,
    BankAccount,
    CitizenId,
    Day,
    DeathCertificateNo,
    DivisionCode,
    Ethnicity,
    Nationality,
    PastDay,
    PastInstant,
    PersonName,
    Phone,
    RelationCode,
    SexCode,
    Text50,
    Text100,
    Text200,
    VehicleLicenceNo,
    YearMonth,
)
from gateway.envelope.parts import Address, Identified, Loc, Organisation, StrictModel, raise_at


# --- newborn ----------------------------------------------------------------------------
class Child(StrictModel):
    """The newborn, as the birth medical certificate records it."""

    name: PersonName
    sex: SexCode
    birth_datetime: PastInstant
    birth_place: DivisionCode
    gestational_weeks: Annotated[int, Field(ge=20, le=45)]
    weight_g: Annotated[int, Field(ge=300, le=7000)]
    length_cm: Annotated[int, Field(ge=20, le=70)]


class Parent(Identified):
    """A parent: ethnicity GB/T 3304 code, nationality GB/T 2659 alpha-3."""

    ethnicity: Ethnicity
    nationality: Nationality


class Household(StrictModel):
    """The household a person is registered into (the newborn; the person who moves in or is
    reinstated); ``relation_to_head`` is that person's."""

    head_id_number: CitizenId
    relation_to_head: RelationCode
    address_division: DivisionCode
    address_detail: Text200


class FirstDoses(StrictModel):
    """First vaccine doses given in hospital (hepatitis B, BCG)."""

    hepb_at: PastInstant | None = None
    bcg_at: PastInstant | None = None


class NewbornSubjects(StrictModel):
    """Everything the newborn bundle's departments need (hospital, CDC, police, insurance)."""

    child: Child
    mother: Parent
    father: Parent | None = None
    hospital: Organisation
    household: Household
    marriage_certificate_no: Text50 | None = None
    insured_address: Address
    bank_branch: Text100 | None = None
    delivery_address: Address
    vaccination: FirstDoses | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        mother_id = self.mother.citizen_id
        if mother_id is not None and validators.sex_from_citizen_id(mother_id) != 2:
            problems.append((("mother", "id_number"), "the mother's citizen ID is not female"))
        for dose in ("hepb_at", "bcg_at"):
            given = getattr(self.vaccination, dose, None)
            if given is not None and given < self.child.birth_datetime:
                problems.append((("vaccination", dose), "must not be before the birth"))
        if problems:
            raise_at(type(self).__name__, *problems)
        return self


# --- retirement -------------------------------------------------------------------------
class Retiree(Identified):
    """The employee who retires."""

    phone: Phone


class RetirementSubjects(StrictModel):
    """Personnel-file review, pension, retiree medical insurance, provident fund, payment."""

    retiree: Retiree
    employer: Organisation
    birth_date: Day
    service_years: Annotated[int, Field(ge=0, le=60)]
    special_job_type: bool
    retirement_month: YearMonth
    bank_account: BankAccount
    insured_division: DivisionCode

    @field_validator("birth_date")
    @classmethod
    def _matches_citizen_id(cls, value: date, info: ValidationInfo) -> date:
        retiree = info.data.get("retiree")
        born = None
        if isinstance(retiree, Retiree) and retiree.citizen_id is not None:
            born = validators.birth_date_from_citizen_id(retiree.citizen_id)
        if born is not None and born != value:
            raise ValueError("does not match the birth date in the retiree's citizen ID")
        return value


# --- after death ------------------------------------------------------------------------
class Deceased(Identified):
    """The person who died."""

    date_of_death: PastDay
    place_of_death: DivisionCode
    death_certificate_no: DeathCertificateNo | None = None

    @field_validator("date_of_death")
    @classmethod
    def _not_before_birth(cls, value: date, info: ValidationInfo) -> date:
        number = info.data.get("id_number")
        born = None
        if info.data.get("id_type") == RESIDENT_ID_CARD and isinstance(number, str):
            born = validators.birth_date_from_citizen_id(number)
        if born is not None and value < born:
            raise ValueError("must not be before the birth date in the citizen ID")
        return value


class Heir(Identified):
    """An heir; ``relation`` is theirs to the deceased."""

    relation: RelationCode


class AfterDeathSubjects(StrictModel):
    """Cremation, hukou cancellation, pension and insurance stop, inheritance steps."""

    deceased: Deceased
    declarant_relation: RelationCode  # the declarant's relation to the deceased
    heirs: list[Heir] = Field(default_factory=list, max_length=20)
    hospital: Organisation | None = None
    vehicle_licence_no: VehicleLicenceNo | None = None
    provident_fund_account: AccountNo | None = None
    property_certificate_nos: list[Text100] = Field(default_factory=list, max_length=10)
