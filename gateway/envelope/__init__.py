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
    Envelope,
    NewbornEnvelope,
    RetirementEnvelope,
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
    "DivisionCode",
    "DivisionTable",
    "DocumentMaterial",
    "ELicenceId",
    "ELicenceMaterial",
    "Envelope",
    "Material",
    "NewbornEnvelope",
    "NewbornSubjects",
    "Organisation",
    "Phone",
    "RetirementEnvelope",
    "RetirementSubjects",
    "Uscc",
    "current_table",
    "envelope_json_schema",
    "load_table",
    "parse_envelope",
    "personal_values",
    "render_schema",
    "write_schema",
]
