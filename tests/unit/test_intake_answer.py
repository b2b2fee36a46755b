"""What intake answers for an accepted application: the 202 body and its Location."""

from __future__ import annotations

import json

import pytest

from gateway.intake.service import IntakeService, accepted_message
from gateway.metrics import Metrics
from gateway.store import ApplicationRecord, ApplicationStatus

APPLICATION_ID = "01a222a5-5e5a-7994-b2de-5f08268b72e3"


@pytest.mark.parametrize("prefix", ["", "https://gw.example.gov.cn/", 'http://x/路径"q\\'])
def test_the_202_body_is_the_sorted_json_of_id_location_and_status(prefix: str) -> None:
    service = IntakeService(store=None, publish=None, metrics=Metrics(), location_prefix=prefix)  # type: ignore[arg-type]
    outcome = service._accepted(APPLICATION_ID)
    location = f"{prefix.rstrip('/')}/v1/applications/{APPLICATION_ID}"
    expected = {"application_id": APPLICATION_ID, "status": "accepted", "location": location}
    assert outcome.status == 202
    assert outcome.body == json.dumps(expected, sort_keys=True).encode()
    assert json.loads(outcome.body) == expected
    assert outcome.headers == {"Location": location}


@pytest.mark.parametrize("portal_id", ["window", 'po"rtal\\门户', "\u2028tab\t"])
@pytest.mark.parametrize("created_at", [1764300000.123456, 1764300000.0, 0.1 + 0.2])
def test_the_accepted_message_is_json_dumps_of_its_metadata_then_the_envelope(
    portal_id: str, created_at: float
) -> None:
    envelope_json = '{"matter":"newborn","applicant":{"name":"王建军"}}'
    app = ApplicationRecord(
        id=APPLICATION_ID,
        portal_id=portal_id,
        idempotency_key="k",
        channel="http",
        matter="newborn",
        schema_version="1.0",
        status=ApplicationStatus.RECEIVED,
        envelope_json=envelope_json,
        created_at=created_at,
        updated_at=created_at,
        accepted_at=None,
        version=1,
    )
    meta = {
        "application_id": APPLICATION_ID,
        "portal_id": portal_id,
        "matter": "newborn",
        "schema_version": "1.0",
        "channel": "http",
        "received_at": created_at,
    }
    expected = json.dumps(
        {**meta, "envelope": json.loads(envelope_json)}, ensure_ascii=False, separators=(",", ":")
    )
    body = accepted_message(app, "00-" + "1" * 32 + "-" + "2" * 16 + "-01").body
    assert body.decode() == expected
    assert json.loads(body)["received_at"] == created_at
