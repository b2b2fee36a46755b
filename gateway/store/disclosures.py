"""Disclosures: per application, which department system received which personal fields.

When the orchestrator dispatches a task, the transaction that puts the task message in the
outbox also writes one row: application, task, system, operation, attempt, the *names* of the
personal fields the message carries (dotted envelope paths, ``subjects.mother.id_number``;
``provided.citizen_id`` for what an earlier step provided), and the time. Values are never
stored. They are read with ``CaseStore.disclosures(application_id)``; operators see them in
``gateway apps show`` and ``GET /v1/admin/applications/{id}`` (``disclosures``).

Which envelope paths are personal comes from the published schema (``"x-personal": true``,
the same marker masking uses), per matter; of what earlier steps provide, the citizen ID.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from connectors.base import DepartmentRequest
from gateway.broker.topology import TASKS

if TYPE_CHECKING:
    from gateway.orchestration.records import Outgoing
    from gateway.store.sql import Tx

PERSONAL_PROVIDED = frozenset({"citizen_id"})
_COLUMNS = "(application_id, task_id, system, operation, attempt, fields_json, at)"


@dataclass(frozen=True, slots=True)
class Disclosure:
    application_id: str
    task_id: str
    system: str
    operation: str
    attempt: int
    fields: tuple[str, ...]  # personal field paths sent, sorted
    at: float


@cache
def personal_paths(matter: str) -> frozenset[str]:
    """Dotted paths (``[]`` for list items) of the matter's envelope marked personal."""
    from gateway.envelope.schema import envelope_json_schema

    schema = envelope_json_schema()
    defs: Mapping[str, Any] = schema.get("$defs", {})
    found: set[str] = set()
    for node in defs.values():
        props = node.get("properties", {})
        if props.get("matter", {}).get("const") == matter:
            _collect(node, "", defs, found, depth=0)
    return frozenset(found)


def _collect(node: Any, at: str, defs: Mapping[str, Any], found: set[str], depth: int) -> None:
    if depth > 20 or not isinstance(node, Mapping):
        return
    if "$ref" in node:
        _collect(defs.get(str(node["$ref"]).rsplit("/", 1)[-1]), at, defs, found, depth + 1)
        return
    if node.get("x-personal") is True and at:
        found.add(at)
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in node.get(key, ()):
            _collect(branch, at, defs, found, depth + 1)
    for name, sub in node.get("properties", {}).items():
        _collect(sub, f"{at}.{name}" if at else name, defs, found, depth + 1)
    if "items" in node:
        _collect(node["items"], f"{at}[]", defs, found, depth + 1)


def personal_fields(matter: str, fields: Mapping[str, Any]) -> tuple[str, ...]:
    """The personal field paths present in a task's ``fields`` (see ``DepartmentRequest``)."""
    personal = personal_paths(matter)
    present: set[str] = set()
    leaves: list[str] = []
    _leaves(fields, "", leaves)
    for path in leaves:
        provided = path.startswith("provided.") and path[9:] in PERSONAL_PROVIDED
        if path in personal or provided:
            present.add(path)
    return tuple(sorted(present))


def _leaves(value: Any, at: str, into: list[str]) -> None:
    """The dotted paths of ``value``'s leaves that hold a value, appended to ``into``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _leaves(item, f"{at}.{key}" if at else str(key), into)
    elif isinstance(value, list):
        for item in value:
            _leaves(item, f"{at}[]", into)
    elif value is not None:
        into.append(at)


def disclosures_of(outbox: Sequence[Outgoing], now: float) -> list[Disclosure]:
    """One disclosure per task message in a transition's outbox: from the request it was
    built from when it carries one, else from its body."""
    found = []
    for o in outbox:
        if o.exchange != TASKS:
            continue
        r = o.request
        if r is None:
            task = json.loads(bytes(o.message.body))
            fields = task.get("fields") or {}
            r = DepartmentRequest(
                task_id=str(task["task_id"]),
                application_id=str(task["application_id"]),
                matter=str(task["matter"]),
                task=str(task.get("task", "")),
                system=str(task["system"]),
                operation=str(task["operation"]),
                attempt=int(task["attempt"]),
                fields=fields,
            )
        found.append(
            Disclosure(
                application_id=r.application_id,
                task_id=r.task_id,
                system=r.system,
                operation=r.operation,
                attempt=r.attempt,
                fields=personal_fields(r.matter, r.fields),
                at=now,
            )
        )
    return found


async def record(tx: Tx, outbox: Sequence[Outgoing], now: float) -> None:
    """Write the disclosures of a transition's task messages, in its transaction, in one
    statement."""
    found = disclosures_of(outbox, now)
    if not found:
        return
    values: list[Any] = []
    for d in found:
        values += (d.application_id, d.task_id, d.system, d.operation, d.attempt,
                   json.dumps(list(d.fields)), d.at)  # fmt: skip
    rows = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(found))  # placeholders only
    sql = f"INSERT INTO disclosures {_COLUMNS} VALUES {rows}"  # noqa: S608 -- no values
    await tx.execute(sql, values)


async def read(tx: Tx, application_id: str) -> list[Disclosure]:
    rows = await tx.fetchall(
        "SELECT application_id, task_id, system, operation, attempt, fields_json, at "
        "FROM disclosures WHERE application_id = ? ORDER BY at, id",
        (application_id,),
    )
    return [_disclosure(r) for r in rows]


def _disclosure(r: Any) -> Disclosure:
    fields = tuple(str(f) for f in json.loads(r[5]))
    return Disclosure(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), fields, float(r[6]))
