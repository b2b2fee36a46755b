"""The desk's pure parts: edited copies, the headers a replay keeps, query parsing, and the
masked views (``gateway.admin.desk``, ``http.Query``, ``views``)."""

from __future__ import annotations

import dataclasses
import json
import zoneinfo

import pytest

from gateway.admin import views
from gateway.admin.copies import Invalid, edited_copy, original_headers, required_reason
from gateway.admin.http import Query, letter_filter
from gateway.admin.outcomes import LetterDetail
from gateway.store.audit import AuditEntry
from gateway.store.letters import LetterStatus, ParkedLetter, reason_group
from gateway.store.marks import LetterEdit
from gateway.store.records import DeadLetter, DeadLetterRecord

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
TASK = {
    "task_id": "app1.hukou",
    "application_id": "app1",
    "matter": "newborn",
    "task": "hukou",
    "system": "hukou",
    "operation": "birth_registration",
    "attempt": 1,
    "fields": {"subjects": {"mother": {"name": "李秀英", "id_number": "11010519491231002X"}}},
    "catalogue_version": "2026.1",
}


def test_an_edited_copy_changes_fields_only_and_goes_under_the_new_key() -> None:
    body = json.dumps(TASK).encode()
    new, diff = edited_copy(
        body,
        {"fields.subjects.mother.name": "李秀兰", "fields.subjects.mother.id_number": None},
        "app1.hukou.r1",
        2,
    )
    data = json.loads(new)
    assert data["task_id"] == "app1.hukou.r1" and data["attempt"] == 2
    assert data["fields"]["subjects"]["mother"] == {"name": "李秀兰"}
    assert diff == [
        {"path": "fields.subjects.mother.name", "before": "李秀英", "after": "李秀兰"},
        {
            "path": "fields.subjects.mother.id_number",
            "before": "11010519491231002X",
            "after": None,
        },
    ]
    assert json.loads(body) == TASK  # the original is untouched


def test_an_edit_outside_fields_is_refused_listing_every_path() -> None:
    with pytest.raises(Invalid) as caught:
        edited_copy(json.dumps(TASK).encode(), {"task_id": "x", "attempt": 9}, "k.r1", 2)
    assert [e["loc"] for e in caught.value.errors] == ["task_id", "attempt"]
    with pytest.raises(Invalid):
        edited_copy(json.dumps(TASK).encode(), {}, "k.r1", 2)
    with pytest.raises(Invalid):
        edited_copy(b"not json", {"fields.a": 1}, "k.r1", 2)


def test_a_mistyped_path_is_refused_unless_added_on_purpose() -> None:
    body = json.dumps(TASK).encode()
    typo = {"fields.subjects.mother.nmae": "李秀兰", "fields.subjects.father.name": "王"}
    with pytest.raises(Invalid) as caught:
        edited_copy(body, typo, "app1.hukou.r1", 2)
    assert sorted(e["loc"] for e in caught.value.errors) == sorted(typo)
    new, diff = edited_copy(body, {}, "app1.hukou.r1", 2, add={"fields.provided.citizen_id": "X"})
    assert json.loads(new)["fields"]["provided"] == {"citizen_id": "X"}
    assert diff == [{"path": "fields.provided.citizen_id", "before": None, "after": "X"}]


def test_groups_normalise_the_volatile_parts_of_a_reason() -> None:
    a = "provincial: retry budget spent after 3 attempts: HTTP 503 at 12:00:01"
    b = "provincial: retry budget spent after 5 attempts: connection refused"
    c = "dead letter 0193a7c2-1b2c-7d3e-8f40-123456789abc.hukou: police refused: E12"
    d = "dead letter 0193a7c2-0000-7d3e-8f40-fedcba987654.hukou: police refused: E99"
    assert (
        reason_group(a, "retryable")
        == reason_group(b, "retryable")
        == "provincial: retry budget spent after # attempts: …"
    )
    assert reason_group(c) == reason_group(d) == "dead letter #: police refused: #"
    assert reason_group("police refused") == "police refused"
    assert reason_group(a, "retryable") != reason_group(c)
    # a permanent refusal keeps the department's reason: two reasons, two groups
    head = "police refused: HouseholdHeadUnknown"
    assert reason_group(head) != reason_group("police refused: ChildAlreadyRegistered")
    assert reason_group(head) == head
    assert reason_group("dead-lettered by RabbitMQ: delivery_limit", "delivery_limit") == (
        "dead-lettered by RabbitMQ: …"
    )


def test_an_edit_that_breaks_the_task_message_is_refused() -> None:
    with pytest.raises(Invalid, match="no task message"):
        edited_copy(json.dumps({"fields": {}}).encode(), {}, "k.r1", 2, add={"fields.a": 1})


def test_a_replay_drops_what_dead_lettering_added() -> None:
    kept = original_headers(
        json.dumps(
            {
                "x-task-id": "app1.hukou",
                "x-attempt": 3,
                "traceparent": "00-a-b-01",
                "x-reason": "refused",
                "x-error-kind": "permanent",
                "x-original-exchange": "gw.tasks",
                "x-original-routing-key": "hukou.newborn.hukou",
                "x-first-failed-at": 1,
                "x-death": [{"reason": "rejected"}],
                "x-system": "hukou",
            }
        )
    )
    assert kept == {"x-task-id": "app1.hukou", "x-attempt": 3, "traceparent": "00-a-b-01"}
    assert original_headers("not json") == {} and original_headers("[]") == {}


def test_a_reason_is_required() -> None:
    with pytest.raises(Invalid):
        required_reason("   ")
    assert required_reason(" fixed ") == "fixed" and len(required_reason("x" * 900)) == 500


def test_query_errors_are_collected_and_raised_at_once() -> None:
    q = Query(
        {"limit": "0", "since": "yesterday", "status": "lost", "before": "x", "system": "hukou"},
        TZ,
    )
    f = letter_filter(q)
    q.limit()
    q.integer("before")
    with pytest.raises(Invalid) as caught:
        q.done()
    assert sorted(e["loc"] for e in caught.value.errors) == ["before", "limit", "since", "status"]
    assert f.system == "hukou"


def test_query_dates_are_local_and_a_to_date_includes_its_day() -> None:
    q = Query({"since": "2026-11-01", "until": "2026-11-01", "any": "1700000000"}, TZ)
    f = letter_filter(q)
    q.done()
    assert f.since == 1793462400.0  # 2026-11-01 00:00 Asia/Shanghai
    assert f.until == f.since + 86400  # the end of that day
    assert Query({"t": "1700000000.5"}, TZ).time("t") == 1700000000.5
    assert letter_filter(Query({"status": "any"}, TZ)).status is None
    assert letter_filter(Query({}, TZ)).status is LetterStatus.PARKED


def _detail(unmask: bool) -> LetterDetail:
    letter = DeadLetter(
        message_id="m1",
        exchange="gw.tasks",
        routing_key="hukou.newborn.hukou",
        headers_json='{"x-task-id": "app1.hukou"}',
        body=json.dumps(TASK, ensure_ascii=False).encode(),
        reason="police refused mother 11010519491231002X",
        error_kind="permanent",
        system="hukou",
        matter="newborn",
        application_id="app1",
        portal_id="window",
        attempts=1,
        first_failed_at=1.0,
        last_failed_at=2.0,
    )
    parked = ParkedLetter(
        DeadLetterRecord(1, letter, 2.0),
        LetterStatus.PARKED,
        0,
        None,
        None,
        None,
        None,
        None,
        None,
    )
    edit = LetterEdit(
        1,
        "app1.hukou",
        "app1.hukou.r1",
        [{"path": "fields.subjects.mother.name", "before": "李秀英", "after": "李秀兰"}],
        b"{}",
        "typo",
        "lead",
        3.0,
        id=1,
    )
    return LetterDetail(parked, [edit], unmask)


def test_letter_views_mask_unless_unmasked() -> None:
    masked = json.dumps(views.letter_detail(_detail(False), TZ), ensure_ascii=False)
    for secret in ("李秀英", "李秀兰", "11010519491231002X"):
        assert secret not in masked
    full = views.letter_detail(_detail(True), TZ)
    assert full["body"]["fields"]["subjects"]["mother"]["name"] == "李秀英"
    assert full["edits"][0]["diff"][0]["after"] == "李秀兰"
    assert full["reason"] == "police refused mother 11010519491231002X"
    assert views.letter_summary(_detail(True).letter, TZ)["reason"].endswith("1101**********002X")


def test_operators_free_text_is_masked_for_readers_without_unmask() -> None:
    said = "mother 11010519491231002X called, her name is 李秀英"
    detail = _detail(False)
    replayed = dataclasses.replace(
        detail.letter, status=LetterStatus.REPLAYED, replay_reason=said, purge_reason=said
    )
    summary = json.dumps(views.letter_summary(replayed, TZ), ensure_ascii=False)
    assert "11010519491231002X" not in summary and "1101**********002X" in summary
    edit = dataclasses.replace(detail.edits[0], reason=said)
    masked = views.letter_detail(LetterDetail(replayed, [edit], False), TZ)
    assert "11010519491231002X" not in json.dumps(masked, ensure_ascii=False)
    full = views.letter_detail(LetterDetail(replayed, [edit], True), TZ)
    assert full["replay_reason"] == said and full["edits"][0]["reason"] == said
    entry = AuditEntry("lead", "dlq.replay", "dead-letter:1", 1.0, said)
    assert "11010519491231002X" not in json.dumps(views.audit_view(entry, TZ))
