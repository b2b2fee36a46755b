"""What intake answers for an accepted application: the 202 body and its Location."""

from __future__ import annotations

import json

import pytest

from gateway.intake.service import IntakeService
from gateway.metrics import Metrics

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
