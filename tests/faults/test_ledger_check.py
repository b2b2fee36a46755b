"""The ledger check itself sees what it must: a store and a ledger made wrong on purpose
(a real migrated SQLite store, a real effect ledger, no broker) fail it, item by item."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.simulators.ledger import EffectLedger
from gateway.store import open_store
from tests.faults.ledger_check import build_report


def _app(db: sqlite3.Connection, app_id: str, status: str) -> None:
    db.execute(
        "INSERT INTO applications (id, portal_id, idempotency_key, channel, matter, "
        "schema_version, status, envelope_json, fingerprint, created_at, updated_at) "
        "VALUES (?, 'window', ?, 'http', 'newborn', '1.0', ?, '{}', 'f', 0, 0)",
        (app_id, f"k-{app_id}", status),
    )


def _task(db: sqlite3.Connection, app_id: str, step: str, system: str, status: str) -> None:
    db.execute(
        "INSERT INTO tasks (id, application_id, matter, step, system, operation, status, "
        "depends_on, attempt, gaps_json, provides_json, updated_at, position) "
        "VALUES (?, ?, 'newborn', ?, ?, ?, ?, '[]', 1, '[]', '{}', 0, 0)",
        (f"{app_id}.{step}", app_id, step, system, step, status),
    )


async def test_a_wrong_world_fails_the_check_item_by_item(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite3"
    await (await open_store(f"sqlite:///{path}")).close()  # the schema, migrated
    db = sqlite3.connect(path)
    with db:
        _app(db, "done", "completed")
        _task(db, "done", "hukou", "hukou", "completed")
        _task(db, "done", "medical_insurance", "provincial", "completed")  # no effect
        _app(db, "parked", "blocked")
        db.execute(
            "INSERT INTO dead_letters (message_id, exchange, routing_key, headers_json, body, "
            "reason, error_kind, application_id, attempts, first_failed_at, last_failed_at, "
            "stored_at) VALUES ('m1', 'gw.tasks', 'hukou.newborn.hukou', '{}', x'00', "
            "'retry budget spent', 'permanent', 'parked', 3, 0, 0, 0)"
        )
        _task(db, "parked", "hukou", "hukou", "dead_lettered")
        db.execute("UPDATE tasks SET reason = 'retry budget spent' WHERE id = 'parked.hukou'")
        _app(db, "silent", "blocked")  # blocked, but no dead letter says why
        _app(db, "mute", "blocked")  # a dead letter, but the application itself says nothing
        _task(db, "mute", "hukou", "hukou", "dead_lettered")
        db.execute(
            "INSERT INTO dead_letters (message_id, exchange, routing_key, headers_json, body, "
            "reason, error_kind, application_id, attempts, first_failed_at, last_failed_at, "
            "stored_at) VALUES ('m2', 'gw.tasks', 'hukou.newborn.hukou', '{}', x'00', "
            "'delivery limit', 'delivery_limit', 'mute', 5, 0, 0, 0)"
        )
        _app(db, "replayed", "blocked")  # its only letter replayed: nothing parked says why
        _task(db, "replayed", "hukou", "hukou", "dead_lettered")
        db.execute("UPDATE tasks SET reason = 'refused' WHERE id = 'replayed.hukou'")
        db.execute(
            "INSERT INTO dead_letters (message_id, exchange, routing_key, headers_json, body, "
            "reason, error_kind, application_id, attempts, first_failed_at, last_failed_at, "
            "stored_at, status) VALUES ('m3', 'gw.tasks', 'hukou.newborn.hukou', '{}', x'00', "
            "'refused', 'permanent', 'replayed', 1, 0, 0, 0, 'replayed')"
        )
        _app(db, "waiting", "in_progress")  # stuck
        _app(db, "refused", "rejected")  # not accepted: not counted
        for _ in range(2):
            db.execute(
                "INSERT INTO timeline (application_id, task_id, at, kind, detail_json) "
                "VALUES ('done', 'done.hukou', 0, 'task.completed', '{}')"
            )
    db.close()
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    for key in ("done.hukou", "done.hukou.c1"):  # two keys, one business key: twice applied
        await ledger.record_delivery("hukou", "done", "hukou", key)
        await ledger.apply("hukou", "done", "hukou", key, {"n": key})
    ledger.close()

    report = build_report(
        "self-test",
        f"sqlite:///{path}",
        tmp_path / "ledger.sqlite3",
        ["done", "parked", "gone"],
        {"gw.tasks.hukou": 2, "gw.results": 0},
    )
    assert (report.accepted, report.completed) == (6, 1)
    assert report.blocked == {"parked": "retry budget spent"}
    assert sorted(report.blocked_unexplained) == ["mute", "replayed", "silent"]
    assert report.stuck == {"waiting": "in_progress"}
    assert report.lost == ["gone"]
    assert report.double_effects == [("hukou", "done", "hukou", 2)]
    assert report.effects_missing == ["provincial:done.medical_insurance"]
    assert (report.deliveries, report.duplicate_deliveries) == (2, 1)
    assert report.doubled_transitions == [("done", "done.hukou", "task.completed", 2)]
    assert not report.settled
    with pytest.raises(AssertionError):
        report.assert_sound(completed=1, blocked={"parked"})
