"""Disclosures on both databases: each dispatched task records which department system got
which personal fields of the application (names only), in the dispatching transaction."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.broker.topology import TASKS
from gateway.orchestration import planner
from gateway.orchestration.records import CaseState, Outgoing
from gateway.store import Store
from gateway.store.disclosures import disclosures_of, personal_fields
from tests.store.conftest import Query
from tests.store.test_cases import accepted, birth_certificate_issued, ctx
from tests.support.portal import example
from tests.unit.test_planner import new_case

MOTHER = ["subjects.mother.id_number", "subjects.mother.name"]


async def test_dispatch_records_the_personal_fields_each_system_received(
    store: Store, query: Query
) -> None:
    await accepted(store)
    await birth_certificate_issued(store)
    found = await store.cases.disclosures("app1")
    assert sorted((d.task_id, d.system, d.operation, d.attempt) for d in found) == [
        ("app1.birth_certificate", "hospital", "birth_certificate", 1),
        ("app1.hukou", "hukou", "birth_registration", 1),
        ("app1.vaccination", "cdc", "vaccination_record", 1),
    ]
    assert found[0].system == "hospital"  # in the order they were dispatched
    by_system = {d.system: d for d in found}
    assert by_system["hospital"].fields == (
        "subjects.child.name", "subjects.father.id_number", "subjects.father.name", *MOTHER,
    )  # fmt: skip
    # the CDC needs the mother's name and the phone, not her ID number
    assert by_system["cdc"].fields == (
        "applicant.phone", "subjects.child.name", "subjects.mother.name",
    )  # fmt: skip
    assert "subjects.household.head_id_number" in by_system["hukou"].fields
    assert [d.at for d in found] == sorted(d.at for d in found)
    # names only: no value of the envelope is stored
    rows = await query(store, "SELECT fields_json FROM disclosures")
    stored = " ".join(r[0] for r in rows)
    envelope = json.loads(example("newborn-yizhang-window"))
    assert envelope["subjects"]["mother"]["id_number"] not in stored
    assert envelope["subjects"]["mother"]["name"] not in stored


async def test_a_rolled_back_dispatch_leaves_no_disclosure(store: Store) -> None:
    await accepted(store)

    def boom(state: CaseState) -> planner.Transition:
        planner.start(state, ctx())
        raise RuntimeError("planner bug")

    with pytest.raises(RuntimeError):
        await store.cases.transition("app1", boom, 1.0)
    assert await store.cases.disclosures("app1") == []


async def test_other_applications_are_not_listed(store: Store) -> None:
    await accepted(store)
    await store.cases.transition("app1", lambda s: planner.start(s, ctx()), 1.0)
    assert [d.system for d in await store.cases.disclosures("app1")] == ["hospital"]
    assert await store.cases.disclosures("nobody") == []


@pytest.mark.parametrize(
    ("matter", "fields", "expected"),
    [
        (
            "newborn",
            {
                "subjects": {
                    "hospital": {"name": "宜章县人民医院"},
                    "child": {"name": "x", "sex": "1"},
                }
            },
            ["subjects.child.name"],
        ),
        (
            "newborn",
            {"provided": {"citizen_id": "x", "birth_certificate_no": "Q1"}},
            ["provided.citizen_id"],
        ),
        (
            "after_death",
            {"subjects": {"heirs": [{"name": "a", "id_number": "b", "relation": "10"}]}},
            ["subjects.heirs[].id_number", "subjects.heirs[].name"],
        ),
    ],
)
def test_personal_fields_follow_the_schema_marker_per_matter(
    matter: str, fields: dict[str, Any], expected: list[str]
) -> None:
    assert list(personal_fields(matter, fields)) == expected


def test_a_task_message_read_back_discloses_what_its_request_did() -> None:
    """The dispatching transition reads the fields from the request the message was built
    from; a message without it (read back from the outbox, an operator's copy) from its
    body: both give the same disclosure."""
    tr = planner.start(new_case(), ctx())
    built = [o for o in tr.outbox if o.exchange == TASKS]
    assert built and all(o.request is not None for o in built)
    read_back = [Outgoing(o.exchange, o.routing_key, o.message) for o in built]
    assert disclosures_of(built, 5.0) == disclosures_of(read_back, 5.0)
    assert disclosures_of(built, 5.0)[0].fields  # the hospital gets the parents' names
