"""Data minimisation, enforced: each department receives only the fields its expectation file
(contracts/<system>/expectation.toml) lists, each with its legal basis, and every field listed
as required.

Every mapping runs over every example envelope of every matter whose catalogue sends a step to
the system (tests/contract/department_output.py); a failure names the system, the operation
(the mapping's entry), the example and the field.
"""

from __future__ import annotations

import tomllib
from functools import cache
from typing import Any

import pytest

from gateway.catalogue.model import KNOWN_SYSTEMS, load
from tests.contract.department_output import ROOT, Task, field_paths, output, tasks

TASKS = list(tasks())


@cache
def expectation(system: str) -> dict[str, Any]:
    path = ROOT / "contracts" / system / "expectation.toml"
    with path.open("rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    assert data["system"] == system, f"{path} names system {data['system']!r}"
    return data


@pytest.mark.parametrize("system", sorted(KNOWN_SYSTEMS))
def test_every_listed_field_has_a_legal_basis(system: str) -> None:
    missing = [
        f"{op}: {field['path']}"
        for op, spec in expectation(system)["operations"].items()
        for field in spec["fields"]
        if not str(field.get("basis", "")).strip() or not isinstance(field.get("required"), bool)
    ]
    assert missing == [], f"{system}: fields without a basis or a required flag"


def test_every_system_the_catalogue_sends_to_has_every_operation_listed() -> None:
    gaps = sorted(
        {
            f"{t.request.system}: operation {t.request.operation}"
            for t in TASKS
            if t.request.operation not in expectation(t.request.system)["operations"]
        }
    )
    assert gaps == []


def test_every_catalogue_step_is_exercised_by_an_example_and_listed() -> None:
    """No step escapes the check above: each (system, operation) of every matter's steps is
    produced by some example envelope (an optional step needs an example filling its
    ``when``), and its system's expectation file lists the operation."""
    steps = {
        (code, step.key, step.system, step.operation)
        for code, matter in load().matters.items()
        for step in matter.steps
    }
    made = {(t.request.matter, t.step, t.request.system, t.request.operation) for t in TASKS}
    unexercised = sorted(f"{m}.{k} ({s} {op})" for m, k, s, op in steps - made)
    assert unexercised == [], "add an example envelope reaching these steps"
    unlisted = sorted(
        f"{m}.{k}: contracts/{s}/expectation.toml [operations.{op}]"
        for m, k, s, op in steps
        if op not in expectation(s)["operations"]
    )
    assert unlisted == [], "list these operations with the fields and their legal basis"


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_the_mapping_sends_only_listed_fields_and_every_required_one(task: Task) -> None:
    request = task.request
    spec = expectation(request.system)["operations"][request.operation]
    listed = {f["path"] for f in spec["fields"]}
    required = {f["path"] for f in spec["fields"] if f["required"]}
    sent = field_paths(output(request))
    mapping = f"mappings/{request.system}.py ({request.operation}, example {task.example})"
    outside = sorted(sent - listed)
    assert outside == [], (
        f"department {request.system}: {mapping} sends field(s) outside "
        f"contracts/{request.system}/expectation.toml: {outside}"
    )
    omitted = sorted(required - sent)
    assert omitted == [], (
        f"department {request.system}: {mapping} omits required field(s): {omitted}"
    )
