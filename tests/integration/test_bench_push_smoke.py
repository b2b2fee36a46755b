"""The bench's push on a tiny plan against real RabbitMQ in a fresh vhost: every application
completes and the rows and JSON keys are there (no speed asserted: that is the bench's own
business)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bench.push import PushPlan, run_push
from gateway.bench.push_figures import GATEWAY
from gateway.bench.run import push_detail
from tests.conftest import BASE_AMQP_URL, make_settings
from tests.support.rabbit import create_vhost, rabbitmqctl

pytestmark = pytest.mark.broker


@pytest.fixture
def fresh_vhost_url() -> Iterator[str]:
    vhost, url = create_vhost(BASE_AMQP_URL)
    try:
        yield url
    finally:
        rabbitmqctl("delete_vhost", vhost)


async def test_a_tiny_push_completes_every_application_and_gives_its_rows(
    fresh_vhost_url: str, tmp_path: Path
) -> None:
    settings = make_settings(fresh_vhost_url, f"sqlite:///{tmp_path / 'unused.sqlite3'}")
    lines: list[str] = []
    result = await run_push(settings, PushPlan(burst=3, level_seconds=0.0), progress=lines.append)
    assert result.skipped is None, lines
    assert result.burst is not None
    assert (result.burst.submitted, result.burst.completed) == (3, 3), lines
    assert result.failures() == []
    assert result.applications == 3
    names = [r.name for r in result.rows()]
    assert names[:2] == ["burst of 3: completed", "burst: latency p50"]
    assert f"peak RSS: {GATEWAY}" in names
    assert "gateway publishes per application" in names
    assert "n=3, few samples" in result.rows()[1].note
    detail = push_detail(result)
    assert detail["burst"]["complete"] is True
    assert detail["burst"]["samples"] == 3
    assert {"cpu_seconds", "peak_rss_kb", "published_by_exchange", "burst_rate_middle_80"} <= set(
        detail
    )
    assert detail["cpu_seconds"]["gateway"] > 0
