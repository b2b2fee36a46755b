"""Intake: one door behind both the HTTP route and the AMQP queue.

The dual write, exactly as DESIGN states it: claim the portal's idempotency key; validate;
store the application as ``received`` (the outbox row); publish it to ``gw.accepted``; on
the broker's confirm mark it ``accepted``; only then answer 202. If the broker is down the
portal gets 503 and the key is released, so the same key succeeds later and finds the
application already stored (never a second one). A crash between store and confirm leaves a
``received`` row that the relay republishes.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.broker.messages import Message, new_traceparent, uuid7
from gateway.broker.topology import (
    ACCEPTED,
    HEADER_ATTEMPT,
    HEADER_PORTAL,
    HEADER_TASK_ID,
    HEADER_TRACEPARENT,
)
from gateway.envelope import dump_envelope, parse_envelope, personal_values
from gateway.errors import BrokerUnavailable, InvalidEnvelope, StoreUnavailable
from gateway.logs import get_logger
from gateway.masking import register_personal_data
from gateway.metrics import Metrics
from gateway.problems import CONTENT_TYPE as PROBLEM_JSON
from gateway.problems import Problem
from gateway.signing import body_digest
from gateway.store import (
    ApplicationRecord,
    ApplicationStatus,
    Fresh,
    InFlight,
    Mismatch,
    NewApplication,
    Replay,
    Store,
)
from gateway.store.base import Answer, Nonce

log = get_logger(__name__)

Publish = Callable[[str, str, Message], Any]  # (exchange, routing key, message) -> awaitable


@dataclass(frozen=True, slots=True)
class Outcome:
    """What intake answers; HTTP turns it into a response, AMQP into ack or dead letter."""

    status: int
    body: bytes
    content_type: str = "application/json"
    application_id: str | None = None
    replayed: bool = False
    problem: Problem | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def outcome_label(self) -> str:
        return "replayed" if self.replayed else str(self.status)


def fingerprint(body: bytes) -> str:
    """The body's idempotency fingerprint: the SHA-256 its signature covers too."""
    return body_digest(body)


def accepted_message(app: ApplicationRecord, traceparent: str | None = None) -> Message:
    """The ``gw.accepted`` message for an application: envelope plus gateway metadata.

    The envelope goes in as the JSON text stored for it (validated and normalised at
    intake), spliced in rather than parsed and dumped again."""
    # json.dumps({...}, ensure_ascii=False, separators=(",", ":")) of the six fields, by its
    # own string and float encoders (a test holds the two equal)
    meta = (
        f'{{"application_id":{_text(app.id)},"portal_id":{_text(app.portal_id)},'
        f'"matter":{_text(app.matter)},"schema_version":{_text(app.schema_version)},'
        f'"channel":{_text(app.channel)},"received_at":{float.__repr__(app.created_at)}'
    )
    body = f'{meta},"envelope":{app.envelope_json}}}'
    return Message(
        body=body.encode(),
        correlation_id=app.id,
        headers={
            HEADER_TASK_ID: "",  # application-level message: no task yet
            HEADER_ATTEMPT: 1,
            HEADER_TRACEPARENT: traceparent or new_traceparent(),
            HEADER_PORTAL: app.portal_id,
        },
    )


class IntakeService:
    def __init__(
        self,
        store: Store,
        publish: Publish,
        metrics: Metrics,
        *,
        lease_seconds: float = 30.0,
        location_prefix: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._publish = publish
        self._metrics = metrics
        self._lease = lease_seconds
        self._prefix = location_prefix.rstrip("/")
        self._clock = clock
        self._counters: dict[tuple[str, str], Any] = {}  # labelled metric children, by labels
        self._histograms: dict[str, Any] = {}
        self._published = metrics.published.labels(ACCEPTED)

    async def submit(
        self,
        portal_id: str,
        key: str,
        body: bytes,
        *,
        channel: str,
        traceparent: str | None = None,
        nonce: Nonce | None = None,
        digest: str | None = None,
    ) -> Outcome:
        """``nonce`` (HTTP) is recorded with the key's claim; ``NonceReused`` when used.
        ``digest``: ``fingerprint(body)`` when the caller has it already."""
        started = time.perf_counter()
        digest = fingerprint(body) if digest is None else digest
        outcome = await self._submit(portal_id, key, body, channel, traceparent, nonce, digest)
        self._counter(channel, outcome.outcome_label).inc()
        seconds = self._histograms.get(channel)
        if seconds is None:
            seconds = self._histograms[channel] = self._metrics.intake_seconds.labels(channel)
        seconds.observe(time.perf_counter() - started)
        return outcome

    def _counter(self, channel: str, outcome: str) -> Any:
        """The intake counter's child for (channel, outcome), looked up once."""
        counter = self._counters.get((channel, outcome))
        if counter is None:
            counter = self._metrics.intake.labels(channel, outcome)
            self._counters[channel, outcome] = counter
        return counter

    async def _submit(
        self,
        portal_id: str,
        key: str,
        body: bytes,
        channel: str,
        traceparent: str | None,
        nonce: Nonce | None,
        digest: str,
    ) -> Outcome:
        # Validated before the key is claimed, so that claiming it, creating the application
        # (or storing the 422) is one transaction; what a replay or a conflict answers does
        # not depend on it.
        now = self._clock()
        new, refusal = self._prepare(portal_id, key, body, channel, digest, now)
        try:
            claim, app = await self._store.admit(
                portal_id,
                key,
                digest,
                now,
                self._lease,
                new=new,
                refusal=None if refusal is None else _answer(refusal),
                nonce=nonce,
            )
        except StoreUnavailable as exc:
            log.warning("intake_unavailable", portal_id=portal_id, error=str(exc))
            return _unavailable(str(exc))
        if isinstance(claim, Replay):
            headers = {}
            if claim.status_code == 202 and claim.application_id:
                headers["Location"] = self._location(claim.application_id)
            return Outcome(
                claim.status_code,
                claim.body,
                claim.content_type,
                claim.application_id,
                replayed=True,
                headers=headers,
            )
        if isinstance(claim, InFlight):
            return _problem(
                Problem(
                    409,
                    "request-in-flight",
                    "Request in flight",
                    "a request with this Idempotency-Key is still being "
                    "processed; retry after it finishes",
                ),
                headers={"Retry-After": str(max(1, int(claim.lease_until - self._clock())))},
            )
        if isinstance(claim, Mismatch):
            return _problem(
                Problem(
                    422,
                    "idempotency-key-reused",
                    "Idempotency-Key reused",
                    "this Idempotency-Key was used before with a different "
                    "body; use a new key for a new application",
                )
            )
        assert isinstance(claim, Fresh)
        if app is None:  # the envelope is invalid: its 422 is stored with the claim
            assert refusal is not None
            assert refusal.problem is not None
            log.info("intake_rejected", portal_id=portal_id, errors=len(refusal.problem.errors))
            return refusal
        try:
            return await self._accept(portal_id, key, app, traceparent)
        except (BrokerUnavailable, StoreUnavailable) as exc:
            log.warning("intake_unavailable", portal_id=portal_id, error=str(exc))
            await self._release(portal_id, key)
            return _unavailable(str(exc))
        except BaseException:
            await self._release(portal_id, key)  # a crash must not hold the key for 30 s
            raise

    def _prepare(
        self, portal_id: str, key: str, body: bytes, channel: str, digest: str, now: float
    ) -> tuple[NewApplication | None, Outcome | None]:
        """The application to create, or the 422 that refuses the envelope."""
        try:
            envelope = parse_envelope(body)
        except InvalidEnvelope as exc:
            refusal = _problem(
                Problem(
                    422,
                    "invalid-envelope",
                    "Invalid application envelope",
                    f"{len(exc.errors)} field(s) are wrong; every one is listed in 'errors'",
                    errors=exc.as_dicts(),
                )
            )
            return None, refusal
        register_personal_data(personal_values(envelope))
        new = NewApplication(
            id=uuid7(),
            portal_id=portal_id,
            idempotency_key=key,
            channel=channel,
            matter=envelope.matter,
            schema_version=envelope.schema_version,
            envelope_json=dump_envelope(envelope),
            fingerprint=digest,
            created_at=now,
        )
        return new, None

    async def _release(self, portal_id: str, key: str) -> None:
        with contextlib.suppress(StoreUnavailable):  # else the lease expires by itself
            await self._store.release_idempotency(portal_id, key)

    async def _accept(
        self, portal_id: str, key: str, app: ApplicationRecord, traceparent: str | None
    ) -> Outcome:
        structlog.contextvars.bind_contextvars(application_id=app.id)
        outcome = self._accepted(app.id)
        if app.status is ApplicationStatus.RECEIVED:
            await self._publish(ACCEPTED, app.matter, accepted_message(app, traceparent))
            self._published.inc()
            await self._store.accept_and_answer(
                app.id,
                self._clock(),
                portal_id,
                key,
                outcome.status,
                outcome.body,
                outcome.content_type,
            )
        else:
            await self._store.complete_idempotency(
                portal_id, key, outcome.status, outcome.body, outcome.content_type
            )
        log.info("intake_accepted", portal_id=portal_id, application_id=app.id, matter=app.matter)
        return outcome

    def _accepted(self, application_id: str) -> Outcome:
        location = self._location(application_id)
        # json.dumps({...}, sort_keys=True) of the three fields, by its own string encoder
        body = (
            f'{{"application_id": {_quoted(application_id)}, "location": {_quoted(location)}, '
            '"status": "accepted"}'
        ).encode()
        return Outcome(202, body, application_id=application_id, headers={"Location": location})

    def _location(self, application_id: str) -> str:
        return f"{self._prefix}/v1/applications/{application_id}"


_quoted: Callable[[str], str] = json.encoder.encode_basestring_ascii  # what json.dumps quotes with
_text: Callable[[str], str] = json.encoder.encode_basestring  # … with ensure_ascii=False


def _problem(problem: Problem, headers: Mapping[str, str] | None = None) -> Outcome:
    return Outcome(
        problem.status,
        problem.to_bytes(),
        PROBLEM_JSON,
        problem=problem,
        headers=dict(headers or {}),
    )


def _answer(outcome: Outcome) -> Answer:
    return Answer(outcome.status, outcome.body, outcome.content_type)


def _unavailable(detail: str) -> Outcome:
    return _problem(
        Problem(
            503,
            "temporarily-unavailable",
            "Temporarily unavailable",
            f"{detail}. Nothing was lost: send the same request with the same "
            "Idempotency-Key again later",
        ),
        headers={"Retry-After": "5"},
    )
