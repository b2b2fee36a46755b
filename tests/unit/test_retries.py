"""The retry policy (pure, seeded) and the connector runner's use of it, with fakes."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from connectors.base import DepartmentRequest, Receipt
from gateway.broker import topology as t
from gateway.broker.messages import Delivery, Message
from gateway.errors import BrokerUnavailable, Permanent, Retryable
from gateway.orchestration.maintenance import Maintenance
from gateway.orchestration.retries import (
    GiveUp,
    TryAgainLater,
    TryAgainNow,
    backoff,
    ladder_level,
    next_step,
    quick_tries,
    tries_spent,
)
from gateway.orchestration.runner import ConnectorRunner
from gateway.settings import RetryPolicy, SystemConfig

POLICY = RetryPolicy(attempts=6, quick_attempts=3, initial_seconds=1, max_seconds=60)


# --- the policy -------------------------------------------------------------------------
def test_backoff_is_full_jitter_under_an_exponential_capped_ceiling() -> None:
    rng = random.Random(42)
    for tries, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (30, 60)]:
        pauses = [backoff(POLICY, tries, rng) for _ in range(500)]
        assert all(0 <= p <= ceiling for p in pauses), tries
        assert max(pauses) > 0.9 * ceiling and min(pauses) < 0.1 * ceiling  # spread, not fixed


def test_the_same_seed_gives_the_same_pauses() -> None:
    first = [backoff(POLICY, n, random.Random(7)) for n in range(1, 8)]
    assert first == [backoff(POLICY, n, random.Random(7)) for n in range(1, 8)]


def test_quick_tries_in_process_then_the_broker_then_a_dead_letter() -> None:
    rng = random.Random(3)
    steps = [next_step(POLICY, n, "HTTP 503", rng) for n in range(1, 7)]
    assert [type(s) for s in steps] == [
        TryAgainNow,
        TryAgainNow,
        TryAgainLater,
        TryAgainLater,
        TryAgainLater,
        GiveUp,
    ]
    later = [s for s in steps if isinstance(s, TryAgainLater)]
    assert all(s.level == ladder_level(POLICY.ladder, s.delay) for s in later)
    assert steps[-1] == GiveUp("retry budget spent after 6 attempts: HTTP 503")


def test_the_ladder_level_is_the_longest_not_above_the_pause() -> None:
    ladder = (1.0, 5.0, 30.0)
    assert ladder_level(ladder, 0.2) == 1.0  # below them all: the shortest
    assert ladder_level(ladder, 4.99) == 1.0
    assert ladder_level(ladder, 5.0) == 5.0
    assert ladder_level(ladder, 29) == 5.0
    assert ladder_level(ladder, 3600) == 30.0


def test_a_delivery_makes_the_rest_of_the_quick_tries_then_one_per_delay() -> None:
    assert [quick_tries(POLICY, spent) for spent in range(7)] == [3, 2, 1, 1, 1, 1, 1]
    assert quick_tries(RetryPolicy(attempts=2, quick_attempts=3), 0) == 2  # never past budget


def test_tries_spent_reads_the_header_against_the_task_attempt() -> None:
    assert tries_spent(1, 1) == 0  # first delivery of a first dispatch
    assert tries_spent(4, 1) == 3
    assert tries_spent(2, 2) == 0  # first delivery after a correction
    assert tries_spent(None, 1) == tries_spent("x", 1) == 0
    assert tries_spent(1, 3) == 0  # never negative


def test_policy_ladder_is_checked_and_sorted() -> None:
    assert RetryPolicy(ladder=(30, 1, 5, 5)).ladder == (1.0, 5.0, 30.0)
    for bad in [(), (0.0001,), (1.0005,), (100_000,)]:
        with pytest.raises(ValueError, match="ladder"):
            RetryPolicy(ladder=bad)


def test_delay_queues_dead_letter_back_into_the_tasks_exchange() -> None:
    topo = t.build_topology(retry_ladder=(0.25, 5))
    retry = {q.name: q.arguments for q in topo.queues if q.name.startswith("gw.retry.")}
    assert set(retry) == {"gw.retry.250ms", "gw.retry.5s"}
    assert retry["gw.retry.250ms"]["x-message-ttl"] == 250
    for args in retry.values():
        assert args["x-queue-type"] == "quorum"
        assert args["x-dead-letter-exchange"] == "gw.tasks"  # no routing key: the task's own
        assert "x-dead-letter-routing-key" not in args
        assert args["x-dead-letter-strategy"] == "at-least-once"
        assert args["x-overflow"] == "reject-publish"
    assert {(e.name, e.type) for e in topo.exchanges if e.name.startswith("gw.retry")} == {
        ("gw.retry.250ms", "fanout"),
        ("gw.retry.5s", "fanout"),
    }
    assert {(b.exchange, b.queue) for b in topo.bindings if b.exchange.startswith("gw.retry")} == {
        ("gw.retry.250ms", "gw.retry.250ms"),
        ("gw.retry.5s", "gw.retry.5s"),
    }
    default = {q.name for q in t.build_topology().queues if q.name.startswith("gw.retry.")}
    assert default == {t.retry_name(s) for s in RetryPolicy().ladder}


# --- the runner, with fakes -------------------------------------------------------------
REQUEST = DepartmentRequest(
    "app1.hukou", "app1", "newborn", "hukou", "hukou", "birth_registration", 1, {}
)


@dataclass
class FakeConnector:
    """Fails with each error of ``failures`` in turn, then gives a receipt."""

    failures: list[Exception]
    system: str = "hukou"
    polls: bool = True
    sent: int = 0

    async def send(self, request: DepartmentRequest) -> Receipt:
        self.sent += 1
        if self.failures:
            raise self.failures.pop(0)
        return Receipt(case_number="C-1", accepted_at=1.0)

    async def check(self, request: DepartmentRequest, case_number: str | None) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class FakeCases:
    claims: int = 0

    async def task(self, task_id: str) -> None:
        return None

    async def claim_timers(self, *args: Any) -> list[Any]:
        self.claims += 1
        return []


@dataclass
class Outbox:
    sent: list[tuple[str, str, Message]] = field(default_factory=list)

    async def publish(self, exchange: str, key: str, message: Message) -> None:
        self.sent.append((exchange, key, message))

    def to(self, prefix: str) -> list[Message]:
        return [m for e, _, m in self.sent if e.startswith(prefix)]


def delivery(headers: dict[str, Any], settled: list[str]) -> Delivery:
    return Delivery(
        body=json.dumps({**asdict(REQUEST), "catalogue_version": "1"}).encode(),
        exchange="gw.tasks",
        routing_key="hukou.newborn.hukou",
        message_id="m1",
        correlation_id="app1",
        user_id=None,
        headers=headers,
        content_type="application/json",
        redelivered=False,
        _settle=settled.append,
    )


def runner(
    connector: FakeConnector, out: Outbox, policy: RetryPolicy, **kw: Any
) -> ConnectorRunner:
    return ConnectorRunner(
        "hukou", connector, FakeCases(), out.publish,  # type: ignore[arg-type]
        poll_seconds=1, retry=policy, rng=random.Random(1), **kw,
    )  # fmt: skip


FAST = RetryPolicy(
    attempts=5, quick_attempts=2, initial_seconds=0.001, max_seconds=0.002, ladder=(0.2, 1)
)


async def test_a_blip_is_retried_in_process_and_acked_once() -> None:
    connector, out, settled = FakeConnector([Retryable("HTTP 503")]), Outbox(), []
    await runner(connector, out, FAST).on_task(delivery({"x-attempt": 1}, settled))
    assert connector.sent == 2 and settled == ["ack"]
    assert not out.to("gw.retry") and len(out.to("gw.results")) == 1  # the receipt


async def test_after_the_quick_tries_a_copy_waits_in_a_delay_queue_then_the_ack() -> None:
    connector, out, settled = FakeConnector([Retryable("HTTP 503")] * 9), Outbox(), []
    await runner(connector, out, FAST).on_task(delivery({"x-attempt": 1, "x-death": []}, settled))
    assert connector.sent == 2 and settled == ["ack"]
    ((exchange, key, copy),) = out.sent
    assert (exchange, key) == ("gw.retry.200ms", "hukou.newborn.hukou")
    assert copy.headers["x-attempt"] == 3  # two tries spent
    assert isinstance(copy.headers["x-first-failed-at"], int) and "x-death" not in copy.headers
    assert copy.body == delivery({}, []).body and copy.message_id != "m1"

    again, later = Outbox(), []  # the copy comes back: one try, then the next delay
    await runner(connector, again, FAST).on_task(delivery(dict(copy.headers), later))
    assert connector.sent == 3 and later == ["ack"]
    (back,) = again.to("gw.retry")
    assert back.headers["x-attempt"] == 4
    assert back.headers["x-first-failed-at"] == copy.headers["x-first-failed-at"]


async def test_the_spent_budget_dead_letters_with_tries_and_last_error() -> None:
    connector, out, settled = FakeConnector([Retryable("HTTP 503")] * 9), Outbox(), []
    first_failed = 1_700_000_000_000
    headers = {"x-attempt": 5, "x-first-failed-at": first_failed}  # four tries spent
    await runner(connector, out, FAST).on_task(delivery(headers, settled))
    assert connector.sent == 1 and settled == ["ack"]
    (parked,) = out.to("gw.dlx")
    reason = "retry budget spent after 5 attempts: HTTP 503"
    assert parked.headers["x-reason"] == reason
    assert parked.headers["x-error-kind"] == "retryable"
    assert parked.headers["x-attempt"] == 5
    assert parked.headers["x-first-failed-at"] == first_failed
    (result,) = out.to("gw.results")
    assert json.loads(result.body)["kind"] == "dead_lettered"
    assert json.loads(result.body)["reason"] == reason


async def test_a_permanent_failure_is_dead_lettered_at_once() -> None:
    connector, out, settled = FakeConnector([Permanent("HTTP 400", code="http_400")]), Outbox(), []
    await runner(connector, out, FAST).on_task(delivery({"x-attempt": 1}, settled))
    assert connector.sent == 1 and settled == ["ack"] and not out.to("gw.retry")
    (parked,) = out.to("gw.dlx")
    assert parked.headers["x-error-kind"] == "permanent"


async def test_a_maintenance_window_holds_without_calling_or_spending() -> None:
    connector, out, settled = FakeConnector([]), Outbox(), []
    now = 1_800_000_000.0  # 2027-01-15 16:00 in Shanghai, a Friday
    held = runner(
        connector, out, FAST, clock=lambda: now,
        maintenance=Maintenance.parse(["Fri 15:00-17:00"], "Asia/Shanghai"),
    )  # fmt: skip
    await held.on_task(delivery({"x-attempt": 1}, settled))
    assert connector.sent == 0 and settled == ["ack"]
    (copy,) = out.to("gw.retry.1s")  # an hour left: the longest level
    assert copy.headers["x-attempt"] == 1 and "x-first-failed-at" not in copy.headers
    cases = FakeCases()
    held._cases = cases  # type: ignore[assignment]
    assert await held.poll_once() == 0 and cases.claims == 0  # polling waits too


def test_system_config_keeps_its_retry_policy() -> None:
    config = SystemConfig(kind="soap", retry=RetryPolicy(attempts=3))
    assert config.retry.attempts == 3 and config.retry.quick_attempts == 3


async def test_a_budget_spent_in_process_dead_letters_from_the_first_failure() -> None:
    connector, out, settled = FakeConnector([Retryable("timed out")] * 9), Outbox(), []
    small = RetryPolicy(attempts=2, quick_attempts=3, initial_seconds=0.001, max_seconds=0.001)
    await runner(connector, out, small, clock=lambda: 1_800_000_000.0).on_task(
        delivery({"x-attempt": 1}, settled)
    )
    assert connector.sent == 2 and settled == ["ack"] and not out.to("gw.retry")
    (parked,) = out.to("gw.dlx")
    assert parked.headers["x-reason"] == "retry budget spent after 2 attempts: timed out"
    assert parked.headers["x-first-failed-at"] == 1_800_000_000_000


@dataclass
class RefusingOutbox(Outbox):
    """The broker refuses the first ``refusals`` delay-queue publishes (a full queue, no
    confirm in time)."""

    refusals: int = 0

    async def publish(self, exchange: str, key: str, message: Message) -> None:
        if exchange.startswith("gw.retry") and self.refusals:
            self.refusals -= 1
            raise BrokerUnavailable("publish nacked", code="nacked")
        await super().publish(exchange, key, message)


async def test_a_refused_delay_publish_is_tried_again_in_place_then_acked() -> None:
    connector, out, settled = FakeConnector([Retryable("HTTP 503")] * 9), RefusingOutbox(), []
    out.refusals = 2
    await runner(connector, out, FAST).on_task(delivery({"x-attempt": 1}, settled))
    assert connector.sent == 2  # the department is not called again for a refused publish
    assert len(out.to("gw.retry.200ms")) == 1 and settled == ["ack"]


async def test_a_delay_publish_that_keeps_failing_leaves_the_delivery_unacked() -> None:
    connector, out, settled = FakeConnector([Retryable("HTTP 503")] * 9), RefusingOutbox(), []
    out.refusals = 99
    with pytest.raises(BrokerUnavailable):
        await runner(connector, out, FAST).on_task(delivery({"x-attempt": 1}, settled))
    assert settled == []  # not acked before the copy is safe: the broker client holds it
    assert not out.to("gw.retry")


# --- a dead letter's attempts: tries made for this task attempt ------------------------------
async def test_a_refusal_after_a_correction_counts_the_tries_of_that_attempt() -> None:
    second = {**asdict(REQUEST), "task_id": "app1.hukou.c1", "attempt": 2}
    d = delivery({"x-attempt": 3}, settled := [])  # attempt 2, one try spent before
    d.body = json.dumps({**second, "catalogue_version": "1"}).encode()
    out = Outbox()
    connector = FakeConnector([Permanent("HTTP 400", code="http_400")])
    await runner(connector, out, FAST).on_task(d)
    (parked,) = out.to("gw.dlx")
    assert parked.headers["x-attempt"] == 2 and settled == ["ack"]  # one before, this one


def test_a_task_past_the_delivery_limit_counts_the_tries_of_its_attempt() -> None:
    from gateway.deadletters import dead_letter_from

    death = [{"reason": "delivery_limit", "exchange": "gw.tasks", "routing-keys": ["hukou.x"]}]
    for task_id, header, made in (("a.hukou", 1, 1), ("a.hukou", 3, 3), ("a.hukou.c1", 2, 1)):
        d = delivery({"x-attempt": header, "x-task-id": task_id, "x-death": death}, [])
        assert dead_letter_from(d, 0.0).attempts == made, (task_id, header)
    rejected = {"x-death": [{"reason": "rejected"}]}
    accepted = Delivery(b"{}", "gw.accepted", "newborn", "m", "a", None, rejected, None, False,
                        lambda _: None)  # fmt: skip
    assert dead_letter_from(accepted, 0.0).attempts == 1
