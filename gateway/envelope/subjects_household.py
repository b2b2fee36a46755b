"""Subjects of the matters that end in a household change: housing, veteran, marriage & birth.

DOMAIN.md §3 "The others". Each of them sends the police ``household_change`` (move-in,
reinstatement, marital status), whose mapping reads ``subjects.person``,
``subjects.household``, ``subjects.previous_address`` and ``subjects.marital_status``: so
the person the change is about is ``person`` in all three.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from gateway.envelope.fields import (
    AccountNo,
    BankAccount,
    Day,
    DivisionCode,
    Ethnicity,
    MarriedStatus,
    Nationality,
    PastDay,
    PersonalDocumentNo,
    Phone,
    Text50,
    Text100,
)
from gateway.envelope.parts import Address, Identified, Loc, Organisation, StrictModel, raise_at
from gateway.envelope.subjects import Household


def _same_person(a: Identified, b: Identified) -> bool:
    return a.id_type == b.id_type and a.id_number == b.id_number


# --- housing ----------------------------------------------------------------------------
class Buyer(Identified):
    """The buyer: files the contract, pays the deed tax, becomes the owner and may move
    their hukou into the home."""

    phone: Phone


class Seller(Identified):
    """The owner who sells."""


class Property(StrictModel):
    """The home sold, named by the seller's title certificate."""

    certificate_no: Text100  # 不动产权证书号, e.g. 湘(2018)宜章县不动产权第0003127号
    address: Address
    area_m2: Annotated[float, Field(gt=0, le=10_000)]  # floor area (建筑面积)


class UtilityAccount(StrictModel):
    """A utility account to move to the buyer's name."""

    kind: Literal["water", "power", "gas", "network"]
    account_no: AccountNo


class ProvidentFundDraw(StrictModel):
    """购房提取: the buyer's provident-fund account and where the money is paid."""

    account_no: AccountNo
    bank_account: BankAccount


class HousingSubjects(StrictModel):
    """Second-hand purchase: contract filing → deed tax → title registration → utility
    transfer, provident-fund withdrawal and hukou move-in, the last three when asked for."""

    person: Buyer
    seller: Seller
    property: Property
    contract_no: Text50  # the filed sale contract (网签合同编号)
    signed_on: PastDay
    price_yuan: Annotated[int, Field(ge=1, le=10_000_000_000)]
    first_home: bool  # the deed-tax rate depends on it
    utilities: list[UtilityAccount] = Field(default_factory=list, max_length=4)
    provident_fund: ProvidentFundDraw | None = None
    household: Household | None = None  # the household the buyer moves into (hukou move-in)
    previous_address: Address | None = None  # where the buyer's hukou is now

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        if _same_person(self.person, self.seller):
            problems.append((("seller", "id_number"), "the seller must not be the buyer"))
        kinds = [u.kind for u in self.utilities]
        if len(set(kinds)) != len(kinds):
            problems.append((("utilities",), "each kind of utility may appear once"))
        if self.previous_address is not None and self.household is None:
            problems.append((("household",), "is required with previous_address (a move-in)"))
        if problems:
            raise_at(type(self).__name__, *problems)
        return self


# --- veteran ----------------------------------------------------------------------------
class Veteran(Identified):
    """The service member who has left the forces."""

    phone: Phone


class Discharge(StrictModel):
    """The discharge: certificate, service period and how the veteran is resettled
    (自主就业 self-employment, 安排工作 job placement, 退休 retirement, 供养 support)."""

    certificate_no: PersonalDocumentNo  # 退出现役证
    enlisted_on: PastDay
    discharged_on: PastDay
    resettlement: Literal["self_employment", "job_placement", "retirement", "support"]

    @model_validator(mode="after")
    def _served(self) -> Self:
        if self.discharged_on <= self.enlisted_on:
            raise_at(type(self).__name__, (("discharged_on",), "must be after enlisted_on"))
        return self


class VeteranSubjects(StrictModel):
    """Report-in → preferential card, file transfer, hukou reinstatement, insurance
    transfer, lump-sum grant (self-employment), social-security card."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {
                "properties": {
                    "discharge": {
                        "properties": {"resettlement": {"const": "self_employment"}},
                        "required": ["resettlement"],
                    }
                },
                "required": ["discharge"],
            },
            "then": {
                "required": ["grant_account"],
                "properties": {"grant_account": {"type": "string"}},
            },
        }
    )

    person: Veteran
    discharge: Discharge
    household: Household  # the household the veteran's hukou is reinstated into
    insured_division: DivisionCode  # where the military insurance relations are transferred
    delivery_address: Address  # where the preferential and social-security cards are sent
    grant_account: BankAccount | None = None  # the lump-sum grant (self-employment only)

    @model_validator(mode="after")
    def _grant_needs_an_account(self) -> Self:
        if self.discharge.resettlement == "self_employment" and self.grant_account is None:
            raise_at(
                type(self).__name__,
                (("grant_account",), "is required when the resettlement is self_employment"),
            )
        return self


# --- marriage and birth -----------------------------------------------------------------
class Spouse(Identified):
    """One party to the marriage."""

    ethnicity: Ethnicity
    nationality: Nationality


class BirthPlan(StrictModel):
    """生育登记: which child of the couple, and when it is expected if already on the way."""

    child_order: Annotated[int, Field(ge=1, le=10)]
    expected_on: Day | None = None


class Maternity(StrictModel):
    """生育保险: the employer that insures ``person`` and where the allowance is paid."""

    employer: Organisation
    bank_account: BankAccount
    expected_on: Day


class MarriageBirthSubjects(StrictModel):
    """Marriage registration → birth-plan registration, hukou marital-status change of
    ``person`` (the applying spouse), maternity insurance of ``person``."""

    person: Spouse
    spouse: Spouse
    marital_status: MarriedStatus  # ``person``'s status once married, for the hukou record
    registration_division: DivisionCode  # the civil-affairs registry where they marry
    birth_plan: BirthPlan | None = None
    maternity: Maternity | None = None

    @model_validator(mode="after")
    def _two_people(self) -> Self:
        if _same_person(self.person, self.spouse):
            loc: Loc = ("spouse", "id_number")
            raise_at(type(self).__name__, (loc, "the spouses must be two different people"))
        return self
