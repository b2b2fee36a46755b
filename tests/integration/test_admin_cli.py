"""``gateway dlq`` and ``gateway apps`` as an operator runs them: a real process over a real
SQLite file, publishing to real RabbitMQ; identity from ``GATEWAY_OPERATOR_TOKEN``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gateway.broker.topology import build_topology
from gateway.orchestration import planner
from gateway.orchestration.messages import ResultMessage
from gateway.orchestration.records import TaskStatus
from gateway.store import DeadLetter, open_store, operators_of
from gateway.store.letters import LetterStatus
from tests.store.test_cases import accepted, birth_certificate_issued, ctx
from tests.support.rabbit import Rabbit

LEAD = "lead-token-0123456789"
CLERK = "clerk-token-0123456789"


def config(tmp_path: Path, rabbit: Rabbit) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'amqp_url = "{rabbit.url}"\n'
        f'database_url = "sqlite:///{tmp_path / "gw.sqlite3"}"\n'
        'log_format = "json"\n'
        f'[operators.lead]\ntoken = "{LEAD}"\n'
        'roles = ["view", "replay", "edit", "purge", "unmask"]\n'
        f'[operators.clerk]\ntoken = "{CLERK}"\nroles = ["view"]\nsystems = ["hukou"]\n',
        encoding="utf-8",
    )
    return path


async def gateway(cfg: Path, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if token is not None:
        env["GATEWAY_OPERATOR_TOKEN"] = token
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.cli", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def seed(db: Path) -> int:
    """app1 started, its certificate issued, the police refused the hukou task: blocked,
    with the task message in the dead-letter store as the runner parked it."""
    store = await open_store(f"sqlite:///{db}")
    try:
        await accepted(store)
        await birth_certificate_issued(store)
        [row] = [
            r
            for r in await store.cases.claim_outbox(time.time() + 60, 30, 100)
            if r.outgoing.exchange == "gw.tasks" and r.outgoing.routing_key.startswith("hukou")
        ]
        headers: dict[str, Any] = {
            **row.outgoing.message.headers,
            "x-reason": "police refused: household head unknown",
            "x-error-kind": "permanent",
            "x-original-exchange": "gw.tasks",
            "x-original-routing-key": row.outgoing.routing_key,
            "x-attempt": 1,
        }
        letter_id = await store.add_dead_letter(
            DeadLetter(
                message_id=row.outgoing.message.message_id,
                exchange="gw.tasks",
                routing_key=row.outgoing.routing_key,
                headers_json=json.dumps(headers),
                body=row.outgoing.message.body,
                reason="police refused: household head unknown",
                error_kind="permanent",
                system="hukou",
                matter="newborn",
                application_id="app1",
                portal_id="window",
                attempts=1,
                first_failed_at=time.time(),
                last_failed_at=time.time(),
            ),
            time.time(),
        )
        dead = ResultMessage("app1.hukou", "app1", "hukou", "dead_lettered", 1, reason="refused")
        await store.cases.transition("app1", lambda s: planner.on_result(s, ctx(), dead), 3.0)
    finally:
        await store.close()
    assert letter_id is not None
    return letter_id


async def test_dlq_and_apps_commands(tmp_path: Path, rabbit: Rabbit) -> None:
    cfg = config(tmp_path, rabbit)
    db = tmp_path / "gw.sqlite3"
    letter_id = await seed(db)
    rabbit._run(  # the exchanges a running gateway declares; the CLI declares nothing
        lambda ch: [
            ch.exchange_declare(x.name, x.type, durable=True) for x in build_topology().exchanges
        ]
    )
    queue = rabbit.bind_test_queue("gw.tasks", "hukou.#")

    no_token = await gateway(cfg, None, "dlq", "list")
    assert no_token.returncode == 2 and "GATEWAY_OPERATOR_TOKEN" in no_token.stderr

    listed = await gateway(cfg, CLERK, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{letter_id:>6} parked" in listed.stdout and "household head unknown" in listed.stdout
    groups = await gateway(cfg, CLERK, "dlq", "groups", "--json")
    assert [g["count"] for g in json.loads(groups.stdout)] == [1]
    shown = json.loads((await gateway(cfg, CLERK, "dlq", "show", str(letter_id))).stdout)
    mother = shown["body"]["fields"]["subjects"]["mother"]["name"]
    assert "*" in mother  # masked for a reader without unmask

    refused = await gateway(cfg, CLERK, "dlq", "replay", str(letter_id), "--reason", "fixed")
    assert refused.returncode == 3 and "lacks the 'replay' role" in refused.stderr

    blocked = await gateway(cfg, CLERK, "apps", "list", "--status", "blocked")
    assert blocked.returncode == 0 and "app1" in blocked.stdout, blocked.stderr
    on_time = await gateway(cfg, LEAD, "apps", "list", "--overdue", "--json")
    assert json.loads(on_time.stdout) == []  # dispatched just now: nothing overdue

    done = await gateway(
        cfg, LEAD, "dlq", "replay", str(letter_id), "--reason", "police fixed the register"
    )
    assert done.returncode == 0, done.stderr
    assert "sent" in done.stdout and "app1.hukou" in done.stdout
    [got] = await rabbit.aget_all(queue, wait=10, at_least=1)
    assert got.json()["task_id"] == "app1.hukou" and got.routing_key == "hukou.newborn.hukou"
    headers = got.properties.headers
    assert headers["x-task-id"] == "app1.hukou" and headers["x-attempt"] == 1
    assert "x-reason" not in headers and "x-original-exchange" not in headers

    again = await gateway(cfg, LEAD, "dlq", "replay", str(letter_id), "--reason", "twice")
    assert again.returncode == 1 and "force" in again.stderr

    show = await gateway(cfg, LEAD, "apps", "show", "app1", "--unmask", "--why", "call back")
    view = json.loads(show.stdout)
    assert view["status"] == "in_progress" and view["unmasked"] is True
    assert view["critical_path"]  # the supervision budget is still part of the view

    purged = await gateway(cfg, LEAD, "dlq", "purge", str(letter_id), "--reason", "test data")
    assert purged.returncode == 0 and "purged" in purged.stdout
    assert "no dead letters" in (await gateway(cfg, LEAD, "dlq", "list")).stdout

    store = await open_store(f"sqlite:///{db}")
    try:
        state = await store.cases.load("app1")
        assert state is not None and state.task("hukou").status is TaskStatus.DISPATCHED
        ops = operators_of(store)
        letter = await ops.letter(letter_id)
        assert letter is not None and letter.status is LetterStatus.PURGED
        trail = [(e.operator, e.action) for e in reversed(await ops.audit_trail())]
    finally:
        await store.close()
    assert trail == [
        ("-", "login.failed"),  # no token
        ("clerk", "denied"),
        ("lead", "dlq.replay"),
        ("lead", "application.unmask"),
        ("lead", "dlq.purge"),
    ]


async def test_dlq_edit_batches_and_purge_with_cancel(tmp_path: Path, rabbit: Rabbit) -> None:
    cfg = config(tmp_path, rabbit)
    db = tmp_path / "gw.sqlite3"
    letter_id = await seed(db)  # the police refused it: a permanent letter, the edit's case
    rabbit._run(
        lambda ch: [
            ch.exchange_declare(x.name, x.type, durable=True) for x in build_topology().exchanges
        ]
    )
    queue = rabbit.bind_test_queue("gw.tasks", "hukou.#")

    no_why = await gateway(cfg, LEAD, "dlq", "show", str(letter_id), "--unmask")
    assert no_why.returncode == 2 and "why" in no_why.stderr

    typo = await gateway(
        cfg, LEAD, "dlq", "edit", str(letter_id),
        "--set", 'fields.subjects.mother.nmae="李秀兰"', "--reason", "name as registered",
    )  # fmt: skip
    assert typo.returncode == 2 and "fields.subjects.mother.nmae" in typo.stderr
    purge = await gateway(cfg, LEAD, "dlq", "purge", str(letter_id), "--reason", "noise")
    assert purge.returncode == 1 and "--cancel-task" in purge.stderr  # would strand app1

    edited = await gateway(
        cfg, LEAD, "dlq", "edit", str(letter_id),
        "--set", 'fields.subjects.mother.name="李秀兰"', "--reason", "name as registered",
    )  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    assert "sent as app1.hukou.r1" in edited.stdout
    [got] = await rabbit.aget_all(queue, wait=10, at_least=1)
    body = got.json()
    assert body["task_id"] == "app1.hukou.r1" and body["attempt"] == 2
    assert body["fields"]["subjects"]["mother"]["name"] == "李秀兰"
    assert got.properties.headers["x-task-id"] == "app1.hukou.r1"

    # several ids: every outcome printed, a refusal does not stop the others, exit 1
    many = await gateway(
        cfg, LEAD, "dlq", "replay", "999", str(letter_id), "--reason", "again", "--force"
    )
    assert many.returncode == 1, many.stderr
    assert "   999 refused  no dead letter 999" in many.stderr
    [line] = many.stdout.splitlines()
    assert line.split()[:2] == [str(letter_id), "skipped"]  # attempt 2 is live: nothing

    store = await open_store(f"sqlite:///{db}")
    try:  # dead-letter the edited copy too, so that only cancelling can end it
        dead = ResultMessage("app1.hukou", "app1", "hukou", "dead_lettered", 2, reason="no")
        await store.cases.transition("app1", lambda s: planner.on_result(s, ctx(), dead), 5.0)
        copy = await store.add_dead_letter(
            DeadLetter(
                message_id="copy-1",
                exchange="gw.tasks",
                routing_key="hukou.newborn.hukou",
                headers_json=json.dumps({"x-task-id": "app1.hukou.r1", "x-attempt": 2}),
                body=json.dumps(body, ensure_ascii=False).encode(),
                reason="police refused: no",
                error_kind="permanent",
                system="hukou",
                matter="newborn",
                application_id="app1",
                portal_id="window",
                attempts=1,
                first_failed_at=time.time(),
                last_failed_at=time.time(),
            ),
            time.time(),
        )
    finally:
        await store.close()
    assert copy is not None
    cancelled = await gateway(
        cfg, LEAD, "dlq", "purge", str(copy), "--reason", "citizen withdrew", "--cancel-task"
    )
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert "task app1.hukou cancelled" in cancelled.stdout
    store = await open_store(f"sqlite:///{db}")
    try:
        state = await store.cases.load("app1")
        assert state is not None and state.task("hukou").status is TaskStatus.CANCELLED
        assert state.application.status.value != "blocked"
        edits = await operators_of(store).edits(letter_id)
    finally:
        await store.close()
    assert [e.idempotency_key for e in edits] == ["app1.hukou.r1"]


async def test_papercuts_unknown_system_and_token(tmp_path: Path, rabbit: Rabbit) -> None:
    """An unknown --system names the configured ones (exit 2); a wrong token is called
    unknown, a missing one is asked for, and both failed logins are in the audit trail; a
    purge that would strand an application names the shell's --cancel-task."""
    cfg = config(tmp_path, rabbit)
    with cfg.open("a", encoding="utf-8") as f:
        f.write('[systems.hukou]\nkind = "soap"\nurl = "http://127.0.0.1:9/hukou"\n')
        f.write('[systems.cdc]\nkind = "amqp"\n')
    db = tmp_path / "gw.sqlite3"
    letter_id = await seed(db)
    for action in ("list", "groups", "replay"):
        extra = ["--reason", "x"] if action == "replay" else []
        typo = await gateway(cfg, LEAD, "dlq", action, "--system", "hukuo", *extra)
        assert typo.returncode == 2, (action, typo.stderr)
        assert "unknown system 'hukuo'" in typo.stderr and "cdc, hukou" in typo.stderr
    wrong = await gateway(cfg, "not-a-token", "dlq", "list")
    assert wrong.returncode == 2 and "unknown operator token" in wrong.stderr
    assert "GATEWAY_OPERATOR_TOKEN" not in wrong.stderr
    missing = await gateway(cfg, None, "dlq", "list")
    assert missing.returncode == 2 and "GATEWAY_OPERATOR_TOKEN" in missing.stderr
    purge = await gateway(cfg, LEAD, "dlq", "purge", str(letter_id), "--reason", "noise")
    assert purge.returncode == 1 and "--cancel-task" in purge.stderr
    store = await open_store(f"sqlite:///{db}")
    try:
        failed = await operators_of(store).audit_trail(action="login.failed")
    finally:
        await store.close()
    assert [(e.operator, e.target) for e in failed] == [("-", "gateway dlq list")] * 2
    assert {e.details["detail"].split(":")[0] for e in failed} == {
        "unknown operator token",
        "no operator token",
    }
