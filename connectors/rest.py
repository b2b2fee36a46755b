"""REST departments: the provincial one-matter platform (``contracts/provincial/openapi.yaml``).

    RestConnector     ``send``: map the task to a case request and ``POST /cases``, signed,
                      idempotent on the task id (``Idempotency-Key`` = ``request_id``).
                      ``check``: ``GET /cases/{case_no}``. ``polls = True``: the gateway polls
                      rarely, as the fallback for callbacks that never came.
    CallbackReceiver  the aiohttp handler behind ``POST /v1/callbacks/<system>``: verify the
                      signature, validate the ``CaseEvent``, map it, await ``report``, 204.

Every request is signed as portals sign theirs (``gateway.signing``), with ``X-Client-Id``
in place of ``X-Portal-Id``. What crosses this boundary:

    connection refused, reset or cut, timeout,         Retryable
    408, 429, 5xx
    401, 404, 409 (same key, other body), other 4xx    Permanent, code ``http_<status>``
    400 / 422 (the contract refuses the request)       Permanent, code ``invalid_request``
    an answer that breaks the contract                 Permanent, code ``bad_answer``
    a mapping error                                    Permanent (from ``mappings``)
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ships no stubs
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from yarl import URL

from connectors.base import Decision, DepartmentRequest, Receipt, Report
from connectors.limits import Limiter
from connectors.proxies import env_proxy
from connectors.schema_compile import Interpreted, SchemaCheck, schema_check
from gateway import signing
from gateway.errors import ConfigurationError, GatewayError, Permanent, Retryable
from gateway.problems import CONTENT_TYPE as PROBLEM_TYPE
from gateway.problems import Problem
from gateway.settings import SystemConfig
from mappings import provincial

HEADER_CLIENT = "X-Client-Id"
CLIENT_ID = "gateway"  # who the gateway is to the platform
PLATFORM_ID = "provincial"  # who the platform says it is on callbacks
SKEW_SECONDS = 300
MAX_NONCE_LENGTH = 128
MAX_ANSWER_BYTES = 1 << 20  # the platform's JSON answers are a few KiB; never read past this
SCHEMA_BASE = "https://one-window.example/contracts/provincial/"


@dataclass(frozen=True, slots=True)
class CaseContract:
    """How one REST system's cases are made and read (its mapping module)."""

    to_request: Callable[[DepartmentRequest, str | None], dict[str, Any]]
    to_decision: Callable[[Mapping[str, Any]], Decision | None]
    load: Callable[[], object]  # reads the mapping's data files (at start, not on the loop)


CONTRACTS: Mapping[str, CaseContract] = {
    "provincial": CaseContract(provincial.case_request, provincial.decision, provincial.table),
}
CASE_NO = re.compile(r"[0-9A-Z-]{1,50}")


@cache
def _registry() -> Registry[Any]:
    found = []
    folder = resources.files("contracts") / "provincial"
    for sub in ("schemas", "items"):
        for entry in (folder / sub).iterdir():
            if entry.name.endswith(".schema.json"):
                contents = json.loads(entry.read_text(encoding="utf-8"))
                found.append((contents["$id"], DRAFT202012.create_resource(contents)))
    return Registry().with_resources(found)


@cache
def schema(name: str) -> SchemaCheck:
    """The check of ``contracts/provincial/schemas/<name>.schema.json``, made once per process:
    its ``$ref``s resolved (``schema_inline``) and the schema compiled to Python
    (``schema_compile``); jsonschema interprets what does not compile. Formats
    (``date-time``…) are checked as jsonschema's format checker checks them."""
    return schema_check(
        {"$ref": f"{SCHEMA_BASE}schemas/{name}.schema.json"},
        _registry(),
        Draft202012Validator.FORMAT_CHECKER,
    )


def referenced_schema(name: str) -> Interpreted:
    """jsonschema's validator, resolving each ``$ref`` through the registry while validating
    (what ``schema`` is held to in the tests)."""
    return Interpreted(
        Draft202012Validator(
            {"$ref": f"{SCHEMA_BASE}schemas/{name}.schema.json"},
            registry=_registry(),
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
    )


def contract_errors(check: SchemaCheck, instance: object) -> list[str]:
    """Where ``instance`` breaks the schema: dotted paths only, never the values."""
    paths = {".".join(str(p) for p in v.path) or "(body)" for v in check.errors(instance)}
    return sorted(paths)


def _client_config(system: str, config: SystemConfig) -> tuple[str, str]:
    if config.url is None or config.secret is None:
        raise ConfigurationError(f"[systems.{system}] needs url and secret (kind rest)")
    if system not in CONTRACTS:
        raise ConfigurationError(f"[systems.{system}]: no REST case mapping for this system")
    CONTRACTS[system].load()
    return config.url, config.secret.get_secret_value()


class RestConnector:
    """Signed REST client of the one-matter platform; one session per connector."""

    polls = True

    def __init__(
        self, system: str, config: SystemConfig, *, callback_url: str | None = None
    ) -> None:
        url, self._secret = _client_config(system, config)
        self.system = system
        self._contract = CONTRACTS[system]
        self._base = URL(url)
        self._callback_url = callback_url
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        self._limiter = Limiter(config.concurrency, config.rate_per_second)
        self._session: aiohttp.ClientSession | None = None
        self._receipt, self._case = schema("case-receipt"), schema("case")  # read files now

    async def send(self, request: DepartmentRequest) -> Receipt:
        body = self._contract.to_request(request, self._callback_url)
        raw = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        status, answer = await self._call("POST", ("cases",), raw.encode(), request.task_id)
        if status not in (200, 201):
            raise self._refused(status, answer, "POST /cases")
        receipt = self._read(answer, self._receipt, "case receipt")
        return Receipt(
            case_number=receipt["case_no"],
            accepted_at=provincial.unix_seconds(receipt["accepted_at"], "accepted_at"),
        )

    async def check(self, request: DepartmentRequest, case_number: str | None) -> Decision | None:
        if case_number is None or not CASE_NO.fullmatch(case_number):
            raise self._error(Permanent, "no valid case number to poll", "no_case")
        status, answer = await self._call("GET", ("cases", case_number), b"", None)
        if status != 200:
            raise self._refused(status, answer, "GET /cases/{case_no}")
        case = self._read(answer, self._case, "case")
        if case["request_id"] != request.task_id:
            raise self._error(Permanent, "the case answers another request id", "bad_answer")
        return self._contract.to_decision(case)  # None while only accepted

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- transport ------------------------------------------------------------------------
    async def _call(
        self, method: str, parts: tuple[str, ...], body: bytes, key: str | None
    ) -> tuple[int, bytes]:
        url = self._base
        for part in parts:
            url = url / part
        headers = signing.signed_headers(
            CLIENT_ID, self._secret, method, url.raw_path_qs, body, key
        )
        headers[HEADER_CLIENT] = headers.pop(signing.HEADER_PORTAL)
        if body:
            headers["Content-Type"] = "application/json"
        try:
            async with self._limiter.slot():
                if self._session is None:
                    proxy = env_proxy(self._base)
                    self._session = aiohttp.ClientSession(timeout=self._timeout, proxy=proxy)
                async with self._session.request(method, url, data=body, headers=headers) as resp:
                    return resp.status, await self._read_capped(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            what = f"{method} {'/'.join(parts[:1])}: {type(exc).__name__}"
            raise self._error(Retryable, f"platform unreachable ({what})", "unreachable") from None

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                if resp.status in (408, 429) or resp.status >= 500:  # a proxy's error page:
                    break  # the status decides (``_refused``); the body only names a problem
                raise self._error(
                    Permanent,
                    f"the platform's answer is larger than {MAX_ANSWER_BYTES} bytes",
                    "bad_answer",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _error(self, kind: type[GatewayError], detail: str, code: str) -> GatewayError:
        return kind(detail, system=self.system, code=code)

    def _refused(self, status: int, answer: bytes, what: str) -> GatewayError:
        slug, fields = _problem(answer)
        said = f"{what}: the platform answered {status}{f' {slug}' if slug else ''}"
        if status in (408, 429) or status >= 500:
            return self._error(Retryable, said, f"http_{status}")
        if status == 409:
            return self._error(
                Permanent,
                f"{said}: the task id was sent before with another body; an edited task must "
                "go under a new task id",
                "http_409",
            )
        if status == 401:
            return self._error(
                Permanent, f"{said}: check [systems.{self.system}] secret and the clock", "http_401"
            )
        if status in (400, 422):
            where = f" at {', '.join(fields)}" if fields else ""
            return self._error(Permanent, f"{said}{where}", "invalid_request")
        return self._error(Permanent, said, f"http_{status}")

    def _read(self, answer: bytes, check: SchemaCheck, what: str) -> dict[str, Any]:
        try:
            data = json.loads(answer)
        except (ValueError, RecursionError):
            data = None
        errors = contract_errors(check, data) if isinstance(data, dict) else ["(not JSON)"]
        if errors:
            raise self._error(
                Permanent,
                f"the platform's {what} breaks the contract at {', '.join(errors)}",
                "bad_answer",
            )
        answer_json: dict[str, Any] = data  # validated as an object just above
        return answer_json


def _problem(answer: bytes) -> tuple[str, list[str]]:
    """The problem's slug and the fields it names (never its detail: it may quote values)."""
    try:
        data = json.loads(answer)
    except (ValueError, RecursionError):
        return "", []
    if not isinstance(data, dict):
        return "", []
    slug = str(data.get("type", "")).rsplit("/", 1)[-1][:64]
    errors = data.get("errors")
    fields = (
        [str(e.get("field"))[:200] for e in errors if isinstance(e, dict)]
        if isinstance(errors, list)
        else []
    )
    return slug, fields


# --- callbacks ------------------------------------------------------------------------


class NonceWindow:
    """Nonces seen within the clock window, bounded. In memory, so per process: a replay to
    another gateway process is not caught (the store's nonce table should hold these)."""

    def __init__(self, ttl_seconds: float, max_entries: int = 100_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce → expiry, oldest first

    def remember(self, nonce: str, now: float) -> bool:
        """True the first time ``nonce`` is seen within the window."""
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return False
        if len(self._seen) >= self._max:
            self._seen.popitem(last=False)
        self._seen[nonce] = now + self._ttl
        return True


class CallbackReceiver:
    """``POST /v1/callbacks/<system>``: a signed ``CaseEvent`` → ``report(decision)`` → 204.

    401 for a bad signature, stale timestamp or reused nonce; 422 for a body that breaks the
    contract or cannot be mapped; 503 when ``report`` cannot record it now (the platform
    retries). At least once: the same event may be reported again after a retry.
    """

    def __init__(
        self,
        config: SystemConfig,
        report: Report,
        clock: Callable[[], float] = time.time,
        *,
        system: str = "provincial",
    ) -> None:
        _, self._secret = _client_config(system, config)
        self._contract = CONTRACTS[system]
        self._report = report
        self._clock = clock
        self._nonces = NonceWindow(2 * SKEW_SECONDS + 1)
        self._event = schema("case-event")

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        refused = self._authenticate(request, body)
        if refused:
            return _answer(Problem(401, "unauthenticated", "Unauthenticated", refused))
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
            event = None
        try:
            errors = contract_errors(self._event, event) if event is not None else ["(not JSON)"]
        except RecursionError:  # deep but parsable: too deep for the schema walk
            errors = ["(nested too deeply)"]
        if errors:
            return _invalid("the case event breaks the contract", errors)
        try:
            decision = self._contract.to_decision(event["case"])
        except Permanent as exc:
            return _invalid(exc.detail, [])
        if decision is not None:
            try:
                await self._report(decision)
            except Retryable as exc:
                problem = Problem(503, "temporarily-unavailable", "Try again later", exc.detail)
                return _answer(problem, {"Retry-After": "5"})
        return web.Response(status=204)

    def _authenticate(self, request: web.Request, body: bytes) -> str | None:
        """None when the request is signed by the platform, else what is wrong."""
        h = request.headers
        needed = (
            HEADER_CLIENT,
            signing.HEADER_TIMESTAMP,
            signing.HEADER_NONCE,
            signing.HEADER_SIGNATURE,
        )
        missing = [name for name in needed if not h.get(name)]
        if missing:
            return f"missing header(s): {', '.join(missing)}"
        if h[HEADER_CLIENT] != PLATFORM_ID:
            return f"{HEADER_CLIENT} must be {PLATFORM_ID!r}"
        stamp, nonce = h[signing.HEADER_TIMESTAMP], h[signing.HEADER_NONCE]
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            return "X-Timestamp must be unix seconds"
        now = self._clock()
        if abs(int(stamp) - now) > SKEW_SECONDS:
            return f"X-Timestamp is more than {SKEW_SECONDS} s away from the gateway's clock"
        if len(nonce) > MAX_NONCE_LENGTH:
            return f"X-Nonce longer than {MAX_NONCE_LENGTH} characters"
        key = h.get(signing.HEADER_IDEMPOTENCY_KEY, "")
        parts = (stamp, nonce, request.method, request.raw_path, key)
        if not signing.matches(h[signing.HEADER_SIGNATURE], [self._secret], *parts, body=body):
            return "X-Signature does not match"
        if not self._nonces.remember(nonce, now):
            return "X-Nonce was already used"
        return None


def _answer(problem: Problem, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=problem.status,
        body=problem.to_bytes(),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


def _invalid(detail: str, fields: list[str]) -> web.Response:
    errors = [{"loc": f, "msg": "breaks the CaseEvent schema", "type": "contract"} for f in fields]
    return _answer(Problem(422, "invalid-callback", "Invalid callback", detail, errors))
