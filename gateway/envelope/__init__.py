"""The canonical envelope: identifiers, division table, models and their JSON Schema.

Import from here: ``from gateway.envelope import parse_envelope, Envelope``.
"""

from gateway.envelope.divisions import DivisionTable, current_table, load_table
from gateway.envelope.fields import (
    PERSONAL,
    BirthCertificateNo,
    CitizenId,
    DivisionCode,
    ELicenceId,
    Phone,
    Uscc,
    personal_values,
)
from gateway.envelope.model import (
    ENVELOPE_ADAPTER,
    SCHEMA_VERSION,
    TYPED_MATTERS,
    AfterDeathEnvelope,
    DisabilityEnvelope,
    Envelope,
    HousingEnvelope,
    MarriageBirthEnvelope,
    MedicalCareEnvelope,
    NewbornEnvelope,
    RetirementEnvelope,
    SchoolEntryEnvelope,
    VeteranEnvelope,
    dump_envelope,
    parse_envelope,
)
from gateway.envelope.parts import (
    Applicant,
    Channel,
    Consent,
    DocumentMaterial,
    ELicenceMaterial,
    Material,
    Organisation,
)
from gateway.envelope.schema import envelope_json_schema, render_schema, write_schema
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

__all__ = [
    "ENVELOPE_ADAPTER",
    "PERSONAL",
    "SCHEMA_VERSION",
    "TYPED_MATTERS",
    "AfterDeathEnvelope",
    "AfterDeathSubjects",
    "Applicant",
    "BirthCertificateNo",
    "Channel",
    "CitizenId",
    "Consent",
    "DisabilityEnvelope",
    "DisabilitySubjects",
    "DivisionCode",
    "DivisionTable",
    "DocumentMaterial",
    "ELicenceId",
    "ELicenceMaterial",
    "Envelope",
    "HousingEnvelope",
    "HousingSubjects",
    "MarriageBirthEnvelope",
    "MarriageBirthSubjects",
    "Material",
    "MedicalCareEnvelope",
    "MedicalCareSubjects",
    "NewbornEnvelope",
    "NewbornSubjects",
    "Organisation",
    "Phone",
    "RetirementEnvelope",
    "RetirementSubjects",
    "SchoolEntryEnvelope",
    "SchoolEntrySubjects",
    "Uscc",
    "VeteranEnvelope",
    "VeteranSubjects",
    "current_table",
    "dump_envelope",
    "envelope_json_schema",
    "load_table",
    "parse_envelope",
    "personal_values",
    "render_schema",
    "write_schema",
]
