"""The provincial one-matter platform, simulated honestly (``contracts/provincial/``).

Serves ``POST /cases`` and ``GET /cases/{case_no}`` under the path of ``[systems.provincial]
url``, in the order of checks its OpenAPI document gives: down (``Behaviour``) → 503;
``Content-Type`` → 415; signature, timestamp, nonce → 401; ``Idempotency-Key`` → 400; JSON →
400; the key seen before → 200 (same body) or 409 (other body); the body against
``CaseRequest``, the item's schema and the subject's GB 11643 check character → 422; then
201. Bodies are validated with jsonschema against the contract's own files.

A case is accepted at once; after ``Behaviour.decision_delay_seconds`` it is decided per
``Behaviour.verdict`` (by application id, or by a name in the request). A completed case
issues the numbers its item schema lists under ``x-provides``; that effect is applied in the
``EffectLedger`` once per idempotency key, and every ``POST /cases`` is recorded there as a
delivery. Each decision is sent as a signed ``CaseEvent`` to the request's ``callback_url``
(else the simulator's), retried with backoff.

A decided case is written to the ledger (``keep_case``) before its callback, and only the
newest ``retain`` decided cases stay in memory too (``Retention``): a repeated ``POST`` or a
``GET`` of an older case is answered from the ledger, and memory stays flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import itertools
import json
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ships no stubs
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from yarl import URL

from gateway import signing
from gateway.envelope.validators import citizen_id_check_char
from gateway.errors import ConfigurationError
from gateway.settings import SystemConfig
from gateway.simulators.behaviour import Behaviour, application_of, names_in
from gateway.simulators.jsonchecks import Prechecked
from gateway.simulators.ledger import EffectLedger, LedgerCalls
from gateway.simulators.retention import DEFAULT_RETAIN, Retention

SYSTEM = "provincial"
CLIENT_ID, PLATFORM_ID, HEADER_CLIENT = "gateway", "provincial", "X-Client-Id"
SKEW_SECONDS = 300
PROBLEM_BASE = "https://one-window.example/provincial/problems/"
CHINA = timezone(timedelta(hours=8))
_FINAL = {
    "completed": "COMPLETED",
    "denied": "DENIED",
    "correction_requested": "CORRECTION",
    "suspended": "SUSPENDED",
}
_MESSAGES = {
    "pattern": "does not match the required format",
    "format": "is not in the required format",
    "maxLength": "is too long",
    "minLength": "is too short",
    "maxItems": "has too many items",
    "minItems": "has too few items",
    "enum": "is not an allowed value",
    "const": "is not the allowed value",
    "type": "has the wrong type",
    "minimum": "is too small",
    "maximum": "is too large",
    "additionalProperties": "has a field the item does not know",
    "not": "has fields that do not go with the others",
}


def _now() -> str:
    return datetime.now(CHINA).isoformat(timespec="seconds")


PROBLEMS = {  # slug → (status, title); the list is x-problem-types in openapi.yaml
    "malformed-json": (400, "Malformed JSON"),
    "idempotency-key-missing": (400, "Idempotency-Key required"),
    "idempotency-key-invalid": (400, "Idempotency-Key invalid"),
    "unauthenticated": (401, "Unauthenticated"),
    "case-not-found": (404, "Case not found"),
    "idempotency-key-reused": (409, "Idempotency-Key reused"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "invalid-request": (422, "Invalid case request"),
    "unknown-item": (422, "Unknown item"),
    "request-id-mismatch": (422, "request_id differs from Idempotency-Key"),
    "unavailable": (503, "Platform unavailable"),
}


def _refuse(slug: str, detail: str, errors: list[dict[str, str]] | None = None) -> web.Response:
    status, title = PROBLEMS[slug]
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    body["detail"] = detail
    if errors:
        body["errors"] = errors
    return web.json_response(
        body,
        status=status,
        content_type="application/problem+json",
        headers={"Retry-After": "1"} if status == 503 else None,
        dumps=lambda v: json.dumps(v, ensure_ascii=False),
    )


def _errors(validator: Any, instance: object, prefix: str = "") -> list[dict[str, str]]:
    """Every error, as {field, message}; messages never quote the value (personal data)."""
    found: dict[str, str] = {}
    for error in validator.iter_errors(instance):
        path = [prefix] if prefix else []
        path += [str(p) for p in error.absolute_path]
        if error.validator == "required":
            for name in error.validator_value:
                if isinstance(error.instance, dict) and name not in error.instance:
                    found.setdefault(".".join([*path, name]), "is required")
            continue
        where = ".".join(path) or "(body)"
        found.setdefault(where, _MESSAGES.get(str(error.validator), "is not valid"))
    return [{"field": f, "message": m} for f, m in sorted(found.items())]


def _business_key(key: str) -> tuple[str, str]:
    """(application, task) of an idempotency key; another client's key is its own business."""
    try:
        return application_of(key)
    except ValueError:
        return key, ""


@dataclass(frozen=True, slots=True)
class Item:
    code: str
    validator: Any
    provides: dict[str, str]  # name → number prefix
    certificate: str | None


@dataclass
class Case:
    key: str
    fingerprint: str
    request: dict[str, Any]
    state: dict[str, Any]  # the Case resource as GET shows it
    events: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def load_contract() -> tuple[Any, dict[str, Item]]:
    """The CaseRequest validator and the items the platform runs, from the contract files."""
    folder = resources.files("contracts") / "provincial"
    docs = [
        json.loads(e.read_text(encoding="utf-8"))
        for sub in ("schemas", "items")
        for e in (folder / sub).iterdir()
        if e.name.endswith(".schema.json")
    ]
    registry: Registry[Any] = Registry().with_resources(
        (d["$id"], DRAFT202012.create_resource(d)) for d in docs
    )

    def validator(uri: str) -> Any:
        formats = Draft202012Validator.FORMAT_CHECKER
        schema = {"$ref": uri}
        interpreted = Draft202012Validator(schema, registry=registry, format_checker=formats)
        return Prechecked(interpreted, schema, registry, formats)  # valid: jsonschema not run

    items = {
        d["x-item-code"]: Item(
            d["x-item-code"],
            validator(d["$id"]),
            {name: spec["prefix"] for name, spec in d["x-provides"].items()},
            d.get("x-certificate"),
        )
        for d in docs
        if "x-item-code" in d
    }
    base = "https://one-window.example/contracts/provincial/schemas/"
    return validator(base + "case-request.schema.json"), items


class ProvincialSimulator:
    def __init__(
        self,
        config: SystemConfig,
        behaviour: Behaviour,
        ledger: EffectLedger,
        callback_url: str | None,
        *,
        callback_attempts: int = 5,
        callback_backoff_seconds: float = 0.2,
        retain: int = DEFAULT_RETAIN,
    ) -> None:
        if config.url is None or config.secret is None:
            raise ConfigurationError("[systems.provincial] needs url and secret")
        self._url = URL(config.url)
        self._secret = config.secret.get_secret_value()
        self.behaviour, self.ledger = behaviour, ledger
        self._callback_url = callback_url
        self._attempts, self._backoff = callback_attempts, callback_backoff_seconds
        self._by_key: dict[str, Case] = {}
        self._by_no: dict[str, Case] = {}
        self._deciding: set[asyncio.Task[None]] = set()  # until decided and called back
        self._retention = Retention(retain)  # decided cases also held in memory
        self._nonces: OrderedDict[str, float] = OrderedDict()  # nonce → expiry, oldest first
        self._serial = itertools.count(random.randrange(900_000))  # noqa: S311  # not crypto
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = self._url.port

    @property
    def url(self) -> str:
        """The base URL it serves (the real port when config.url asked for port 0)."""
        return str(self._url.with_port(self._port))

    async def start(self) -> None:
        self._request_schema, self._items = await asyncio.to_thread(load_contract)
        base = self._url.path.rstrip("/")
        app = web.Application()
        app.router.add_post(f"{base}/cases", self._create)
        app.router.add_get(f"{base}/cases/{{case_no}}", self._show)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._url.host, self._url.port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def stop(self) -> None:
        tasks = list(self._deciding)  # also a case's whose callback outlived its place in memory
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def case(self, case_no: str) -> dict[str, Any] | None:
        """A copy of the case as GET shows it (for tests and the demo), if held in memory."""
        found = self._by_no.get(case_no)
        return copy.deepcopy(found.state) if found else None

    # -- HTTP -----------------------------------------------------------------------------
    def _authenticate(self, request: web.Request, body: bytes) -> str | None:
        h = request.headers
        stamp, nonce = h.get(signing.HEADER_TIMESTAMP, ""), h.get(signing.HEADER_NONCE, "")
        if h.get(HEADER_CLIENT) != CLIENT_ID or not h.get(signing.HEADER_SIGNATURE):
            return f"unknown client or no signature (send {HEADER_CLIENT} and X-Signature)"
        if (
            not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12)
            or not 0 < len(nonce) <= 128
        ):
            return "X-Timestamp must be unix seconds and X-Nonce 1-128 characters"
        now = time.time()
        if abs(int(stamp) - now) > SKEW_SECONDS:
            return "X-Timestamp is too far from the platform's clock"
        key = h.get(signing.HEADER_IDEMPOTENCY_KEY, "")
        parts = (stamp, nonce, request.method, request.raw_path, key)
        if not signing.matches(h[signing.HEADER_SIGNATURE], [self._secret], *parts, body=body):
            return "X-Signature does not match"
        while self._nonces and next(iter(self._nonces.values())) <= now:
            self._nonces.popitem(last=False)
        if nonce in self._nonces:
            return "X-Nonce was already used"
        self._nonces[nonce] = now + 2 * SKEW_SECONDS + 1
        return None

    async def _record(self, key: str, detail: str) -> None:
        await self.ledger.record_delivery(SYSTEM, *_business_key(key), key, detail)

    async def _create(self, request: web.Request) -> web.Response:
        if self.behaviour.down():
            key = request.headers.get(signing.HEADER_IDEMPOTENCY_KEY, "")
            with contextlib.suppress(ValueError):  # a key that names no task: nothing to file
                await self._record(key, "unavailable: 503")
            return _refuse("unavailable", "the platform is down; try again later")
        if request.content_type != "application/json":
            return _refuse("unsupported-media-type", "send the case as application/json")
        body = await request.read()
        if refused := self._authenticate(request, body):
            return _refuse("unauthenticated", refused)
        key = request.headers.get(signing.HEADER_IDEMPOTENCY_KEY, "")
        if not key:
            return _refuse("idempotency-key-missing", "send an Idempotency-Key header")
        if len(key) > 128:
            return _refuse("idempotency-key-invalid", "at most 128 characters")
        try:
            payload = json.loads(body)
        except ValueError:
            await self._record(key, "malformed")
            return _refuse("malformed-json", "the body is not JSON")
        canonical = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        if (known := self._by_key.get(key) or await self._kept(key=key)) is not None:
            same = known.fingerprint == fingerprint
            await self._record(key, "repeat" if same else "conflict")
            if not same:
                return _refuse("idempotency-key-reused", "the key was used with another body")
            return web.json_response(self._receipt(known), status=200)
        refusal = self._validate(payload, key)
        await self._record(key, "refused" if refusal else "accepted")
        if refusal is not None:
            return refusal
        return web.json_response(self._receipt(self._open(key, fingerprint, payload)), status=201)

    def _validate(self, payload: Any, key: str) -> web.Response | None:
        if errors := _errors(self._request_schema, payload):
            return _refuse("invalid-request", f"{len(errors)} error(s) in the request", errors)
        item = self._items.get(payload["item_code"])
        if item is None:
            unknown = [{"field": "item_code", "message": "is not an item of the platform"}]
            return _refuse("unknown-item", "the platform runs no such item", unknown)
        errors = _errors(item.validator, payload["data"], "data")
        subject = payload["subject"]
        number = subject["id_number"]
        if subject["id_type"] == "111" and citizen_id_check_char(number[:17]) != number[17]:
            errors.append({"field": "subject.id_number", "message": "check character is wrong"})
        if errors:
            return _refuse("invalid-request", f"{len(errors)} error(s) in the request", errors)
        if payload["request_id"] != key:
            return _refuse("request-id-mismatch", "request_id must equal the Idempotency-Key")
        return None

    async def _show(self, request: web.Request) -> web.Response:
        if self.behaviour.down():
            return _refuse("unavailable", "the platform is down; try again later")
        if refused := self._authenticate(request, await request.read()):
            return _refuse("unauthenticated", refused)
        case_no = request.match_info["case_no"]
        case = self._by_no.get(case_no) or await self._kept(case_no=case_no)
        if case is None:
            return _refuse("case-not-found", "no such case for this client")
        return web.json_response(case.state)

    # -- cases ----------------------------------------------------------------------------
    @staticmethod
    def _receipt(case: Case) -> dict[str, Any]:
        return {k: case.state[k] for k in ("case_no", "status", "accepted_at")}

    def _open(self, key: str, fingerprint: str, payload: dict[str, Any]) -> Case:
        stamp = datetime.now(CHINA)
        case_no = f"HN-{stamp:%Y%m%d}-{random.getrandbits(40):010X}"
        state = {k: payload[k] for k in ("item_code", "request_id", "matter", "application_ref")}
        state.update(
            case_no=case_no,
            status="ACCEPTED",
            node_result="4",
            accepted_at=stamp.isoformat(timespec="seconds"),
            gaps=[],
        )
        case = Case(key, fingerprint, payload, state)
        self._by_key[key] = self._by_no[case_no] = case
        case.task = asyncio.create_task(self._decide(case))
        self._deciding.add(case.task)
        case.task.add_done_callback(self._deciding.discard)
        return case

    async def _kept(self, *, key: str | None = None, case_no: str | None = None) -> Case | None:
        """A decided case no longer in memory, from the ledger."""
        kept = await self.ledger.case(SYSTEM, key=key, case_no=case_no)
        if kept is None:
            return None
        case = Case(kept["key"], kept["fingerprint"], {}, kept["state"])  # decided: no events
        self._hold(case)
        return case

    def _hold(self, case: Case) -> None:
        """Hold a decided case in memory, dropping the oldest ones beyond the retention."""
        self._by_key[case.key] = self._by_no[case.state["case_no"]] = case
        for key in self._retention.decided(case.key):
            dropped = self._by_key.pop(key, None)
            if dropped is not None:
                self._by_no.pop(dropped.state["case_no"], None)

    def _number(self, prefix: str) -> str:
        return f"{prefix}{datetime.now(CHINA):%Y%m%d}{next(self._serial) % 1_000_000:06d}"

    async def _decide(self, case: Case) -> None:
        case.state.update(status="IN_PROGRESS")
        case.state.pop("node_result", None)
        await asyncio.sleep(self.behaviour.decision_delay_seconds)
        application, task = _business_key(case.key)
        verdict = self.behaviour.verdict(application, names_in(case.request))
        new: dict[str, Any] = {"status": _FINAL[verdict.outcome]}
        result: dict[str, Any] | None = None
        if verdict.outcome == "completed":
            item = self._items[case.request["item_code"]]
            issued = {name: self._number(prefix) for name, prefix in item.provides.items()}
            result = {"provides": issued}
            if item.certificate:
                result["certificate_no"] = issued[item.certificate]
            new.update(done_result="0", decided_at=_now())
        elif verdict.outcome == "denied":
            new.update(
                done_result="1", decided_at=_now(), reason=verdict.reason or "不符合办理条件"
            )
        elif verdict.outcome == "suspended":
            new.update(node_result="6", reason=verdict.reason or "进入特别程序")
        else:
            gaps = [{"field": f, "message": m} for f, m in verdict.gaps]
            new.update(
                node_result="5", gaps=gaps or [{"field": "materials", "message": "请补正材料"}]
            )
            if verdict.reason:
                new["reason"] = verdict.reason

        def settle(calls: LedgerCalls) -> None:
            """The effect applied once per key (the result that stands) and the case kept, in
            one hop to the ledger's thread."""
            if result is not None:
                new["result"] = calls.apply(SYSTEM, application, task, case.key, result)
            kept = {
                "key": case.key,
                "fingerprint": case.fingerprint,
                "state": {**case.state, **new},
            }
            calls.keep_case(SYSTEM, case.key, case.state["case_no"], kept)

        await self.ledger.run(settle)
        case.state = {**case.state, **new}  # one step: a GET never sees half a decision
        self._hold(case)  # kept: in memory while among the newest, before anyone is told
        await self._notify(case)

    async def _notify(self, case: Case) -> None:
        url = case.request.get("callback_url") or self._callback_url
        if url is None or self._session is None:
            return
        case.events += 1
        event: dict[str, Any] = {
            "event_id": f"{case.state['case_no']}-E{case.events}",
            "event_type": "case.status_changed",
            "occurred_at": _now(),
            "case": copy.deepcopy(case.state),
        }
        raw = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        target = URL(url)
        for attempt in range(self._attempts):
            headers = signing.signed_headers(
                PLATFORM_ID, self._secret, "POST", target.raw_path_qs, raw, event["event_id"]
            )
            headers[HEADER_CLIENT] = headers.pop(signing.HEADER_PORTAL)
            headers["Content-Type"] = "application/json"
            try:
                async with self._session.post(target, data=raw, headers=headers) as resp:
                    if resp.status < 300:
                        return
                    if resp.status < 500 and resp.status not in (401, 408, 429):
                        return  # the receiver refuses this event: retrying cannot help
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(self._backoff * 2**attempt)
