"""Hostile JSON at the intake doors, against the real aiohttp app, RabbitMQ and SQLite: the HTTP
route, ``gw.intake``, the provincial callbacks and the CDC reply queue.

Every refusal is asserted with its status and the problem it names, and with what did not
happen: nothing stored, nothing on ``gw.accepted``, nothing reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import time
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.amqp import QueueResultSource
from connectors.base import Decision
from connectors.rest import CallbackReceiver, RestConnector
from gateway.broker.client import BrokerClient
from gateway.broker.topology import DEAD_LETTERS, build_topology
from gateway.errors import Permanent
from gateway.runtime import Gateway
from gateway.settings import PortalConfig, Settings, SystemConfig
from gateway.signing import sign
from gateway.store import DeadLetterRecord
from tests.conftest import INTAKE_ROLES, WINDOW_SECRET
from tests.hostile.kit import DEPTH, MEMORY_BOUND, peak_growth
from tests.support.portal import Answer, Portal, example, example_json
from tests.support.rabbit import Rabbit
from tests.support.waiting import eventually
from tests.unit.test_mapping_provincial import fixture_request

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
NEWBORN = example("newborn-yizhang-window")
MAX_BODY = 256 * 1024
DEEP_ARRAY = b"[" * DEPTH + b"]" * DEPTH
DEEP_OBJECT = b'{"a":' * DEPTH + b"1" + b"}" * DEPTH


def bomb(size: int = 256 << 20) -> bytes:
    """``size`` zero bytes, gzip-compressed (~1000:1): well under the body limit."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join([*(packer.compress(zeros) for _ in range(size >> 20)), packer.flush()])


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    return bomb()


@pytest.fixture
async def gw(settings_for: Callable[..., Settings]) -> AsyncIterator[Gateway]:
    settings = settings_for(intake={"max_body_bytes": MAX_BODY})
    async with Gateway(settings, roles=INTAKE_ROLES) as gateway:
        yield gateway


@pytest.fixture
async def window(gw: Gateway) -> AsyncIterator[Portal]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)


async def nothing_done(gw: Gateway, rabbit: Rabbit) -> None:
    assert gw.store is not None
    assert await gw.store.list_applications() == []
    assert await rabbit.aget_all("gw.accepted", wait=0.3) == []


def problem(answer: Answer, status: int, slug: str) -> dict[str, Any]:
    assert answer.status == status, answer.body[:500]
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["type"].endswith(f"/{slug}"), body
    return body


def json_error(answer: Answer) -> str:
    body = problem(answer, 422, "invalid-envelope")
    [error] = body["errors"]
    assert error["type"] == "json_invalid"
    return str(error["msg"])


# --- HTTP: malformed, oversized, deep, compressed ------------------------------------------------
MALFORMED = {
    "truncated": (b'{"matter": "newborn"', "EOF while parsing"),
    "not_json": (b"matter=newborn", "expected value"),
    "trailing_comma": (b'{"matter": "newborn",}', "trailing comma"),
    "bad_utf8": (b'{"matter": "\xff\xfe"}', "invalid unicode code point"),
    "empty": (b"", "EOF while parsing"),
    "trailing_garbage": (NEWBORN + b"}{", "trailing characters"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
async def test_malformed_json_is_422_naming_the_problem(
    case: str, gw: Gateway, window: Portal, rabbit: Rabbit
) -> None:
    body, words = MALFORMED[case]
    message = json_error(await window.submit(body))
    assert words.lower() in message.lower(), message
    await nothing_done(gw, rabbit)


async def test_an_oversized_body_is_413_with_or_without_a_length(
    gw: Gateway, window: Portal, rabbit: Rabbit
) -> None:
    big = json.dumps({**example_json("newborn-yizhang-window"), "x": "a" * MAX_BODY}).encode()
    problem(await window.submit(big), 413, "body-too-large")

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse early
        for offset in range(0, len(big), 8192):
            yield big[offset : offset + 8192]

    headers = {"Content-Type": "application/json", "Idempotency-Key": "chunked"}
    async with window.session.post(
        window.base_url + "/v1/applications", data=chunks(), headers=headers
    ) as resp:
        assert resp.status in (401, 413)  # unsigned: either refusal, never read in full
    await nothing_done(gw, rabbit)


@pytest.mark.parametrize(
    "body",
    [
        DEEP_ARRAY,
        DEEP_OBJECT,
        b"[" * 1_000_000,  # a megabyte of openings under a larger limit: refused at depth 200
        b'{"matter":"newborn","subjects":{"child":{"name":' + DEEP_ARRAY + b"}}}",
    ],
    ids=["array", "object", "million_openings", "inside_a_field"],
)
async def test_deep_nesting_is_422_not_a_500(
    body: bytes, settings_for: Callable[..., Settings], rabbit: Rabbit
) -> None:
    settings = settings_for(intake={"max_body_bytes": 2 << 20})
    async with (
        Gateway(settings, roles=INTAKE_ROLES) as gw,
        aiohttp.ClientSession() as session,
    ):
        portal = Portal(f"http://127.0.0.1:{gw.http_port}", "window", WINDOW_SECRET, session)
        with peak_growth() as peak:
            message = json_error(await portal.submit(body))
        assert "recursion limit exceeded" in message
        assert peak.growth < MEMORY_BOUND, peak
        await nothing_done(gw, rabbit)


@pytest.mark.parametrize(
    "encoding", ["gzip", "deflate", "br", "zstd", "gzip, gzip", "identity, gzip"]
)
async def test_a_compression_bomb_with_a_content_encoding_is_refused_unread(
    encoding: str, gzip_bomb: bytes, gw: Gateway, window: Portal, rabbit: Rabbit
) -> None:
    with peak_growth() as peak:
        answer = await window.submit(gzip_bomb, headers={"Content-Encoding": encoding})
    assert answer.status in (400, 415), answer.body[:300]
    if answer.status == 415:
        assert "Content-Encoding" in answer.json()["detail"]
    assert peak.growth < MEMORY_BOUND, peak
    await nothing_done(gw, rabbit)


async def test_a_compressed_body_without_a_content_encoding_is_415(
    gzip_bomb: bytes, gw: Gateway, window: Portal, rabbit: Rabbit
) -> None:
    for body, name in ((gzip_bomb, "gzip"), (zlib.compress(NEWBORN), "deflate")):
        with peak_growth() as peak:
            answer = await window.submit(body)
        detail = problem(answer, 415, "content-encoding-unsupported")["detail"]
        assert f"{name}-compressed" in detail
        assert peak.growth < MEMORY_BOUND, peak
    brotli_like = bytes([0x8B, 0x7F, 0x80]) + gzip.compress(NEWBORN)  # no magic: not JSON
    assert "expected value" in json_error(await window.submit(brotli_like))
    await nothing_done(gw, rabbit)


def _edited(**fields: Any) -> bytes:
    envelope = example_json("newborn-yizhang-window")
    envelope["subjects"]["child"].update(fields)
    return json.dumps(envelope, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (
            _edited(weight_g=7).replace(b'"weight_g": 7', b'"weight_g": ' + b"9" * 4000),
            "subjects.child.weight_g",
        ),
        (
            _edited(weight_g=7).replace(b'"weight_g": 7', b'"weight_g": 1e999'),
            "subjects.child.weight_g",
        ),
        (_edited(weight_g=2**70), "subjects.child.weight_g"),
        (
            _edited(weight_g=7).replace(b'"weight_g": 7', b'"weight_g": NaN'),
            "subjects.child.weight_g",
        ),
        (_edited(name="王" * 60_000), "subjects.child.name"),
        (_edited(name="a\u0000b"), "subjects.child.name"),
        (_edited(name="\u202egnaw"), "subjects.child.name"),
    ],
    ids=["4000_digits", "1e999", "2_pow_70", "nan", "long_name", "nul_in_name", "bidi_override"],
)
async def test_huge_numbers_and_long_strings_are_422(
    body: bytes, loc: str, gw: Gateway, window: Portal, rabbit: Rabbit
) -> None:
    answer = await window.submit(body)
    errors = problem(answer, 422, "invalid-envelope")["errors"]
    assert [e["loc"] for e in errors] == [loc], errors
    await nothing_done(gw, rabbit)


# --- HTTP: signatures, nonces, idempotency keys --------------------------------------------------
async def test_bad_signature_replayed_nonce_and_stale_timestamp_are_401_and_store_nothing(
    gw: Gateway, window: Portal, rabbit: Rabbit
) -> None:
    assert (await window.submit(NEWBORN, secret="not-the-window-secret")).status == 401
    assert (await window.submit(NEWBORN, now=time.time() - 3600)).status == 401
    assert (await window.submit(NEWBORN, sign_body=b"{}")).status == 401
    stale = problem(await window.submit(NEWBORN, now=time.time() + 301), 401, "unauthenticated")
    assert "X-Timestamp" in stale["detail"]
    await nothing_done(gw, rabbit)

    # a captured request replayed byte for byte: same nonce, same signature
    first = await window.submit(NEWBORN, key="captured", nonce="n-captured")
    assert first.status == 202
    replayed = await window.submit(NEWBORN, key="captured", nonce="n-captured")
    assert "nonce" in problem(replayed, 401, "unauthenticated")["detail"].lower()
    # a nonce burnt by a bad signature is not remembered: the real portal may still use it
    assert (await window.submit(NEWBORN, secret="x" * 24, nonce="n-later")).status == 401
    assert (await window.submit(NEWBORN, key="later", nonce="n-later")).status == 202
    assert gw.store is not None
    assert len(await gw.store.list_applications()) == 2
    assert len(await rabbit.aget_all("gw.accepted", wait=1, at_least=2)) == 2


@pytest.mark.parametrize(
    ("key", "slug"),
    [
        ("", "idempotency-key-missing"),
        ("k" * 129, "idempotency-key-invalid"),
        ("tab\there", "idempotency-key-invalid"),
        ("zero\u200bwidth", "idempotency-key-invalid"),
        ("right\u202eleft", "idempotency-key-invalid"),
        ("bom\ufeff", "idempotency-key-invalid"),
    ],
    ids=["empty", "129_chars", "tab", "zero_width", "rtl_override", "bom"],
)
async def test_abusive_idempotency_keys_are_400(
    key: str, slug: str, gw: Gateway, window: Portal, rabbit: Rabbit
) -> None:
    problem(await window.submit(NEWBORN, key=key), 400, slug)
    await nothing_done(gw, rabbit)


async def test_control_characters_in_a_key_never_reach_the_store(
    gw: Gateway, rabbit: Rabbit
) -> None:
    """A raw request with a NUL and an escape in the key: the HTTP parser or the key check
    refuses it; the client library would not even send it."""
    for raw_key in (b"nul\x00key", b"esc\x1b[31mkey", b"del\x7fkey"):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.http_port)
        writer.write(
            b"POST /v1/applications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Idempotency-Key: " + raw_key + b"\r\nContent-Length: 2\r\nConnection: close\r\n"
            b"\r\n{}"
        )
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        assert status_line.split()[1] in (b"400", b"401"), status_line
    await nothing_done(gw, rabbit)


async def test_unicode_lookalike_keys_are_distinct_keys(gw: Gateway, window: Portal) -> None:
    """Keys are opaque: a full-width or decomposed twin is another key (DESIGN: stored as sent),
    and the same key with another body is 422."""
    keys = ["key-é", "key-e\u0301", "ｋｅｙ-é"]
    answers = [await window.submit(NEWBORN, key=k) for k in keys]
    assert [a.status for a in answers] == [202, 202, 202]
    assert len({a.json()["application_id"] for a in answers}) == 3
    again = await window.submit(example("retirement-online"), key="key-é")
    problem(again, 422, "idempotency-key-reused")


async def test_a_flood_of_distinct_keys_is_just_load(
    gw: Gateway, window: Portal, rabbit: Rabbit
) -> None:
    answers = await asyncio.gather(*(window.submit(NEWBORN, key=f"flood-{i}") for i in range(40)))
    assert [a.status for a in answers] == [202] * 40
    assert gw.store is not None
    assert len(await gw.store.list_applications(portal_id="window")) == 40
    assert len(await rabbit.aget_all("gw.accepted", wait=2, at_least=40)) == 40


# --- AMQP: garbage straight into gw.intake -------------------------------------------------------
async def letters(gw: Gateway, at_least: int) -> list[DeadLetterRecord]:
    assert gw.store is not None
    store = gw.store

    async def probe() -> list[DeadLetterRecord] | None:
        found = list(await store.list_dead_letters())
        return found if len(found) >= at_least else None

    return list(await eventually(probe) or await store.list_dead_letters())


# an oversized body is parked as its first KiB and digest, never read for its matter
BIG = b'{"matter": "newborn", "x": "' + b"a" * (10 << 20) + b'"}'
GARBAGE = {
    "not_json": (b"\x00\xffgarbage", "m-garbage", "Invalid JSON"),
    "not_an_envelope": (b'{"hello": "world"}', "m-hello", "Invalid application envelope"),
    "a_json_array": (b"[1, 2, 3]", "m-array", "Invalid application envelope"),
    "deep_nesting": (DEEP_ARRAY, "m-deep", "recursion limit exceeded"),
    "no_message_id": (NEWBORN, None, "message_id missing"),
    "control_in_message_id": (b'{"matter": 1}', "id\u202e\n", "not printable"),
    "ten_megabytes": (BIG, "m-big", "exceeds the intake limit"),
    # keyless: each its own letter (the id of a body without a key is the body's digest)
    "no_message_id_object": (b'{"a": 1}', None, "message_id missing"),
    "no_message_id_junk": (b"\x01junk", None, "message_id missing"),
}


async def test_garbage_on_gw_intake_is_parked_with_reasons_and_never_accepted(
    gw: Gateway, rabbit: Rabbit
) -> None:
    events = await asyncio.to_thread(rabbit.bind_test_queue, "gw.events", "window.#")
    for body, message_id, _ in GARBAGE.values():
        await rabbit.apublish(
            "gw.intake", "window", body, message_id=message_id, user_id="guest",
            content_type="application/json",
        )  # fmt: skip
    found = await letters(gw, len(GARBAGE))
    by_body = {letter.letter.body: letter.letter for letter in found}
    assert len(found) == len(GARBAGE), [f.letter.reason for f in found]
    big = by_body[BIG[:1024]]  # the first KiB only, and the digest of the whole
    assert f"sha256 {hashlib.sha256(BIG).hexdigest()}" in big.reason
    assert "kept: its first 1024 bytes" in big.reason
    for name, (body, _, words) in GARBAGE.items():
        letter = by_body[body[:1024] if body is BIG else body]
        assert words in letter.reason, (name, letter.reason)
        assert letter.portal_id == "window" and letter.error_kind == "permanent"
    rejected = await rabbit.aget_all(events, wait=5, at_least=len(GARBAGE))
    assert len(rejected) == len(GARBAGE)
    keys = sorted(m.routing_key.split(".")[1] for m in rejected)
    assert keys == ["newborn"] + ["unknown"] * (len(GARBAGE) - 1)  # the envelope without an id
    assert await rabbit.aget_all("gw.accepted", wait=0.3) == []
    assert gw.store is not None and await gw.store.list_applications() == []
    assert await eventually(lambda: asyncio.to_thread(lambda: rabbit.depth("gw.intake") == 0))


async def test_messages_from_no_portal_are_parked_without_an_event(
    settings_for: Callable[..., Settings], rabbit: Rabbit
) -> None:
    portals = {"window": PortalConfig(secret=WINDOW_SECRET, amqp_user="window-app")}  # type: ignore[arg-type]
    async with Gateway(settings_for(portals=portals), roles=INTAKE_ROLES) as gw:
        events = await asyncio.to_thread(rabbit.bind_test_queue, "gw.events", "#")
        await rabbit.apublish(
            "gw.intake", "window", NEWBORN, message_id="as-guest", user_id="guest"
        )
        await rabbit.apublish("gw.intake", "window", NEWBORN, message_id="no-user")
        found = await letters(gw, 2)
        reasons = sorted(f.letter.reason for f in found)
        assert "broker user 'guest' is not a configured portal" in reasons[0]
        assert "message has no user_id" in reasons[1]
        assert await rabbit.aget_all(events, wait=0.5) == []
        assert await rabbit.aget_all("gw.accepted", wait=0.3) == []


# --- provincial callbacks -------------------------------------------------------------------------
CALLBACK_PATH = "/v1/callbacks/provincial"
PROVINCIAL_SECRET = "provincial-secret-0123456789"


def signed(body: bytes) -> dict[str, str]:
    stamp, nonce, key = str(int(time.time())), f"n-{time.monotonic_ns()}", "cb-key"
    return {
        "X-Client-Id": "provincial",
        "X-Timestamp": stamp,
        "X-Nonce": nonce,
        "Idempotency-Key": key,
        "X-Signature": sign(PROVINCIAL_SECRET, stamp, nonce, "POST", CALLBACK_PATH, key, body),
        "Content-Type": "application/json",
    }


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe not json",
        b"[]",
        DEEP_ARRAY,
        DEEP_OBJECT,
        b'{"event_id":"E1","case":' + b'{"a":' * 900 + b"1" + b"}" * 900 + b"}",
        b'{"event_id":"' + b"9" * 200_000 + b'"}',
    ],
    ids=["not_json", "array", "deep_array", "deep_object", "deep_case", "long_id"],
)
async def test_a_garbage_callback_is_422_and_nothing_is_reported(body: bytes) -> None:
    reports: list[Decision] = []

    async def report(decision: Decision) -> None:
        reports.append(decision)

    config = SystemConfig(kind="rest", url="http://unused.invalid", secret=PROVINCIAL_SECRET)  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_post(CALLBACK_PATH, CallbackReceiver(config, report).handle)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = str(server.make_url(CALLBACK_PATH))
        async with session.post(url, data=body, headers=signed(body)) as resp:
            status, answer = resp.status, await resp.json(content_type=None)
    assert status == 422, answer
    assert answer["type"].endswith("/invalid-callback") and answer["detail"]
    assert reports == []


async def test_an_oversized_platform_answer_is_permanent_and_read_no_further() -> None:
    """The provincial platform answering 50 MB: the connector stops at its cap."""
    huge = b'{"case_no":"' + b"9" * (50 << 20) + b'"}'

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=201, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        view = memoryview(huge)
        with contextlib.suppress(ConnectionError):
            for offset in range(0, len(view), 64 * 1024):
                await response.write(view[offset : offset + 64 * 1024])
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with TestServer(app) as server:
        config = SystemConfig(kind="rest", url=str(server.make_url("/platform/v1")),
                              secret=PROVINCIAL_SECRET)  # type: ignore[arg-type]  # fmt: skip
        connector = RestConnector("provincial", config)
        try:
            with peak_growth() as peak, pytest.raises(Permanent) as info:
                await connector.send(fixture_request("retirement.pension"))
        finally:
            await connector.close()
    assert info.value.code == "bad_answer" and "larger than" in info.value.detail
    assert peak.growth < MEMORY_BOUND, peak


# --- CDC replies ----------------------------------------------------------------------------------
CDC = SystemConfig(kind="amqp", inbox_queue="dept.cdc.inbox", reply_queue="dept.cdc.replies")


async def test_garbage_cdc_replies_are_dead_lettered_and_the_consumer_goes_on(
    rabbit: Rabbit,
) -> None:
    client = BrokerClient(rabbit.url, build_topology(), reconnect_max_seconds=0.5)
    await client.start()
    reported: list[Decision] = []

    async def report(decision: Decision) -> None:
        reported.append(decision)

    source = QueueResultSource("cdc", CDC, client, prefetch=8)
    running = asyncio.create_task(source.run(report))
    oversized = b'{"request_id":"' + b"a" * (2 << 20) + b'"}'
    garbage = [DEEP_ARRAY, DEEP_OBJECT, b"\x00" * 1024, b"[" * 900 + b"]" * 900, oversized]
    valid = (ROOT / "tests/fixtures/cdc/replies/valid/completed.json").read_bytes()
    try:
        for body in garbage:
            await rabbit.apublish("", "dept.cdc.replies", body)
        parked = await rabbit.aget_all(DEAD_LETTERS, wait=10, at_least=len(garbage))
        assert sorted(p.body for p in parked) == sorted(garbage)
        reasons = {p.properties.headers["x-death"][0]["reason"] for p in parked}
        assert reasons in ({"rejected"}, {b"rejected"}), reasons  # refused at once, not retried
        assert reported == []
        task_id = json.loads(valid)["request_id"]
        await rabbit.apublish("", "dept.cdc.replies", valid, correlation_id=task_id)
        assert await eventually(lambda: _truthy(reported))
        assert [d.task_id for d in reported] == [task_id]
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await client.close(drain_seconds=1)


async def _truthy(value: list[Decision]) -> bool:
    return bool(value)
