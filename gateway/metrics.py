"""Prometheus metrics, one registry per running gateway (tests build their own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The gateway's metrics. Labels never carry personal data."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.intake = Counter(
            "gateway_intake_total",
            "Envelopes presented to intake, by channel and outcome",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.intake_seconds = Histogram(
            "gateway_intake_seconds",
            "Time from request to answer at intake (store, publish, confirm)",
            ["channel"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.published = Counter(
            "gateway_published_total",
            "Messages published and confirmed, by exchange",
            ["exchange"],
            registry=self.registry,
        )
        self.relayed = Counter(
            "gateway_relay_republished_total",
            "Applications left 'received' by a crash and republished by the relay",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "gateway_dead_letters_total",
            "Dead letters stored, by error kind",
            ["kind"],
            registry=self.registry,
        )
        self.broker_connected = Gauge(
            "gateway_broker_connected",
            "1 while the broker connection is up",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
