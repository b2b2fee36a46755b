"""Subjects of the matters that ask for a service: school entry, medical care, disability.

DOMAIN.md §3 "The others". Each matter's subjects hold what its departments need and no
more; a rule that spans fields of one subject lives here, reported at the field it concerns.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from gateway.envelope.fields import (
    BankAccount,
    Day,
    DisabilityCategory,
    DivisionCode,
    IcdCode,
    PastDay,
    PersonalDocumentNo,
    Phone,
    RelationCode,
    Text50,
    Text100,
)
from gateway.envelope.parts import Address, Identified, Loc, Organisation, StrictModel, raise_at


def _one_of(*names: str) -> JsonDict:
    """JSON Schema: at least one of the optional string properties is given."""
    return {
        "anyOf": [
            {"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in names
        ]
    }


class Guardian(Identified):
    """The child's or the disabled person's guardian; ``relation`` is theirs to that person."""

    relation: RelationCode
    phone: Phone


class Person(Identified):
    """The person a medical-care or disability matter is about."""

    phone: Phone


# --- school entry -----------------------------------------------------------------------
class Pupil(Identified):
    """The child who starts school."""


class SchoolEntrySubjects(StrictModel):
    """Enrolment, and the verifications it rests on: hukou, home (property or residence
    permit), the guardian's social-insurance months where the family lives."""

    model_config = ConfigDict(
        json_schema_extra=_one_of("property_certificate_no", "residence_permit_no")
    )

    child: Pupil
    guardian: Guardian
    stage: Literal["primary", "junior_secondary"]  # 小学一年级 / 初中一年级
    school_year: Annotated[int, Field(ge=2020, le=2100)]  # the year school starts (September)
    residence: Address  # where the family lives: it decides the school district
    property_certificate_no: Text100 | None = None  # 不动产权证书号 of the home the family owns
    residence_permit_no: PersonalDocumentNo | None = None  # 居住证, for a family that rents

    @model_validator(mode="after")
    def _home_proved(self) -> Self:
        if self.property_certificate_no is None and self.residence_permit_no is None:
            raise_at(
                type(self).__name__,
                (("property_certificate_no",), "give property_certificate_no or "
                 "residence_permit_no: the school district rests on one of them"),
            )  # fmt: skip
        return self


# --- medical care -----------------------------------------------------------------------
class InsuranceRegistration(StrictModel):
    """参保登记或变更: the scheme and the county that insures the person; an employee scheme
    names the employer that pays the contributions."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"scheme": {"const": "employee"}}, "required": ["scheme"]},
            "then": {"required": ["employer"], "properties": {"employer": {"type": "object"}}},
        }
    )

    kind: Literal["enrolment", "change"]
    scheme: Literal["employee", "resident"]  # 职工医保 / 城乡居民医保
    division: DivisionCode
    employer: Organisation | None = None

    @model_validator(mode="after")
    def _employer_for_employees(self) -> Self:
        if self.scheme == "employee" and self.employer is None:
            raise_at(type(self).__name__, (("employer",), "is required for the employee scheme"))
        return self


class OutOfAreaFiling(StrictModel):
    """异地就医备案: where the person will be treated, why, and from when."""

    reason: Literal["resident_elsewhere", "referral", "temporary"]  # 长期居住 / 转诊 / 临时外出
    destination: DivisionCode
    from_date: Day
    until: Day | None = None

    @model_validator(mode="after")
    def _period(self) -> Self:
        if self.until is not None and self.until < self.from_date:
            raise_at(type(self).__name__, (("until",), "must not be before from_date"))
        return self


class ChronicDisease(StrictModel):
    """门诊慢特病待遇认定: the diagnosis and the hospital that made it."""

    icd10: IcdCode
    diagnosed_on: PastDay
    hospital: Organisation


class Reimbursement(StrictModel):
    """零星报销: a hospital stay paid in full by the person, to be reimbursed."""

    hospital: Organisation
    admitted_on: PastDay
    discharged_on: PastDay
    total_fen: Annotated[int, Field(ge=1, le=10_000_000_000)]  # the bills' total, in fen
    invoice_nos: list[Text50] = Field(min_length=1, max_length=20)
    bank_account: BankAccount

    @model_validator(mode="after")
    def _stay(self) -> Self:
        if self.discharged_on < self.admitted_on:
            raise_at(type(self).__name__, (("discharged_on",), "must not be before admitted_on"))
        return self


class MedicalCareSubjects(StrictModel):
    """Insurance enrolment or change; out-of-area filing, chronic-disease entitlement and
    reimbursement when the application asks for them."""

    person: Person
    insurance: InsuranceRegistration
    out_of_area: OutOfAreaFiling | None = None
    chronic_disease: ChronicDisease | None = None
    reimbursement: Reimbursement | None = None

    @model_validator(mode="after")
    def _elsewhere(self) -> Self:
        filing = self.out_of_area
        if filing is not None and filing.destination[:6] == self.insurance.division[:6]:
            loc: Loc = ("out_of_area", "destination")
            raise_at(type(self).__name__, (loc, "must be outside the insuring county"))
        return self


# --- disability -------------------------------------------------------------------------
class CareRequest(StrictModel):
    """重度残疾人护理补贴: where the person is cared for."""

    setting: Literal["home", "institution"]


RehabilitationService = Literal["assistive_device", "rehabilitation_training", "surgery"]


class DisabilitySubjects(StrictModel):
    """Disability card (with the medical assessment); then living subsidy and paid pension
    contributions for a low-income household, care subsidy, aids and rehabilitation."""

    person: Person
    guardian: Guardian | None = None
    category: DisabilityCategory  # the category applied for; the assessment sets the grade
    assessment_hospital: Organisation
    residence: Address
    bank_account: BankAccount  # where the subsidies are paid
    low_income_certificate_no: PersonalDocumentNo | None = None  # 低保证
    care: CareRequest | None = None
    rehabilitation: list[RehabilitationService] = Field(
        default_factory=list, max_length=3, json_schema_extra={"uniqueItems": True}
    )

    @model_validator(mode="after")
    def _each_service_once(self) -> Self:
        if len(set(self.rehabilitation)) != len(self.rehabilitation):
            raise_at(type(self).__name__, (("rehabilitation",), "each service may appear once"))
        return self
