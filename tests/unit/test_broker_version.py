"""The gateway refuses a broker older than RabbitMQ 3.10, and says what to do."""

from __future__ import annotations

import pytest

from gateway.broker.version import check_server, parse_version
from gateway.errors import BrokerTooOld


@pytest.mark.parametrize("version", ["3.10.0", "3.10.8", "3.13.7", "4.0.5", "3.12.0-rc.1"])
def test_accepts_rabbitmq_3_10_and_newer(version: str) -> None:
    assert check_server({"product": "RabbitMQ", "version": version.encode()}) == version


@pytest.mark.parametrize("version", ["3.9.29", "3.8.0", "2.8.7", ""])
def test_refuses_older_rabbitmq_with_advice(version: str) -> None:
    with pytest.raises(BrokerTooOld, match=r"needs RabbitMQ 3\.10 or newer.*docker compose"):
        check_server({"product": "RabbitMQ", "version": version})


def test_refuses_another_broker() -> None:
    with pytest.raises(BrokerTooOld, match="the broker is LavinMQ"):
        check_server({"product": "LavinMQ", "version": "3.10.0"})
    with pytest.raises(BrokerTooOld):
        check_server(None)


def test_parse_version() -> None:
    assert parse_version("3.10.8") == (3, 10, 8)
    assert parse_version("3.12.0-rc.1") == (3, 12, 0)
    assert parse_version("3.9") < (3, 10) <= parse_version("3.10")
