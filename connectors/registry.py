"""The one explicit list of connectors: which class serves which kind of system.

The core asks this module for a system's connector (and its result source, and any HTTP
callback route); it never imports zeep, lxml or an HTTP client itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from connectors.base import Connector, Report, ResultSource
from gateway.broker.client import BrokerClient
from gateway.errors import ConfigurationError
from gateway.settings import SystemConfig


@dataclass(frozen=True, slots=True)
class Parts:
    connector: Connector
    source: ResultSource | None = None  # decisions that arrive on their own


def build(
    system: str, config: SystemConfig, *, broker: BrokerClient, public_base_url: str | None = None
) -> Parts:
    if config.kind == "soap":
        from connectors.soap import SoapConnector

        return Parts(SoapConnector(system, config))
    if config.kind == "rest":
        from connectors.rest import RestConnector

        callback = (
            f"{public_base_url.rstrip('/')}/v1/callbacks/{system}" if public_base_url else None
        )
        return Parts(RestConnector(system, config, callback_url=callback))
    if config.kind == "filedrop":
        from connectors.filedrop import FileDropConnector, FileDropResultSource

        # Scanning the result folder is this kind's way of asking: at most every second,
        # sooner when the system's poll_seconds says so.
        scan = min(config.poll_seconds, 1.0)
        return Parts(
            FileDropConnector(system, config),
            FileDropResultSource(system, config, scan_seconds=scan),
        )
    if config.kind == "amqp":
        from connectors.amqp import QueueConnector, QueueResultSource

        return Parts(
            QueueConnector(system, config, broker), QueueResultSource(system, config, broker)
        )
    raise ConfigurationError(f"[systems.{system}] kind {config.kind!r} has no connector")


@dataclass(frozen=True, slots=True)
class CallbackRoute:
    """``POST /v1/callbacks/<system>`` for systems that call back (REST)."""

    system: str
    handler: object

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(f"/v1/callbacks/{self.system}", self.handler)  # type: ignore[arg-type]


def callback_routes(system: str, config: SystemConfig, report: Report) -> list[CallbackRoute]:
    if config.kind != "rest":
        return []
    from connectors.rest import CallbackReceiver

    receiver = CallbackReceiver(config, report, system=system)
    return [CallbackRoute(system, receiver.handle)]
