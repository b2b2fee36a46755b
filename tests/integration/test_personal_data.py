"""No citizen ID number, name or phone appears unmasked in any log line (DESIGN, PIPL)."""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
import pytest

from gateway.runtime import Gateway
from tests.conftest import WINDOW_SECRET
from tests.support.portal import Portal, example_json
from tests.support.rabbit import Rabbit

pytestmark = pytest.mark.broker

ENVELOPE = example_json("newborn-yizhang-window")
APPLICANT = ENVELOPE["applicant"]
MOTHER = ENVELOPE["subjects"]["mother"]
SECRETS = {
    APPLICANT["id_number"],
    APPLICANT["name"],
    APPLICANT["phone"],
    MOTHER["id_number"],
    MOTHER["name"],
    ENVELOPE["subjects"]["child"]["name"],
}


def body(**child: object) -> bytes:
    envelope = json.loads(json.dumps(ENVELOPE))
    envelope["subjects"]["child"].update(child)
    return json.dumps(envelope, ensure_ascii=False).encode()


async def test_no_personal_data_in_any_log_line(
    log_capture: io.StringIO, gateway: Gateway, rabbit: Rabbit, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gateway.store is not None
    async with aiohttp.ClientSession() as session:
        portal = Portal(f"http://127.0.0.1:{gateway.http_port}", "window", WINDOW_SECRET, session)
        assert (await portal.submit(body())).status == 202
        assert (await portal.submit(body(weight_g=1))).status == 422

        async def crash(*_args: object, new: object, **_kwargs: object) -> None:
            raise RuntimeError(f"disk on fire while storing {new!r}")

        monkeypatch.setattr(gateway.store, "admit", crash)  # intake stores through admit
        assert (await portal.submit(body(length_cm=51))).status == 500
        monkeypatch.undo()

    await rabbit.apublish(
        "gw.intake",
        "window",
        body(weight_g=2),
        message_id="dead-1",
        user_id="guest",
        content_type="application/json",
    )
    for _ in range(200):
        if "dead_letter_stored" in log_capture.getvalue():
            break
        await asyncio.sleep(0.05)

    out = log_capture.getvalue()
    # the four paths really were logged ...
    for event in ("intake_accepted", "intake_rejected", "request_failed", "dead_letter_stored"):
        assert f'"event": "{event}"' in out, event
    assert "RuntimeError: disk on fire" in out  # the traceback is there
    assert "4310**********0139" in out  # ... with the ID number masked, not dropped
    # ... and nothing personal leaked from any of them
    leaks = sorted(s for s in SECRETS if s in out)
    assert leaks == [], f"unmasked personal data in the log: {len(leaks)} value(s)"
