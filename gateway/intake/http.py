"""The HTTP face of intake (aiohttp), as ``contracts/intake/openapi.yaml`` documents it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.errors import StoreUnavailable
from gateway.intake.auth import NONCE_REUSED, AuthError, PortalAuth
from gateway.intake.problem_http import problem_response
from gateway.intake.service import IntakeService, Outcome
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.problems import Problem
from gateway.signing import HEADER_IDEMPOTENCY_KEY, body_digest
from gateway.store import Store
from gateway.store.base import NonceReused

log = get_logger(__name__)
MAX_KEY_LENGTH = 128
MAX_BODY_BYTES = web.AppKey("max_body_bytes", int)


@dataclass(frozen=True, slots=True)
class Readiness:
    """What /readyz asks: is the broker connected? (The store is pinged directly.)"""

    broker_connected: Callable[[], bool]


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(method=request.method, path=request.path)
    try:
        return await handler(request)
    except AuthError as exc:
        log.info("auth_failed", reason=exc.detail)
        return problem_response(Problem(401, "unauthenticated", "Unauthenticated", exc.detail))
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[MAX_BODY_BYTES]
        return problem_response(
            Problem(
                413,
                "body-too-large",
                "Body too large",
                f"the body exceeds the limit of {limit} bytes",
            )
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return problem_response(
            Problem(exc.status, f"http-{exc.status}", exc.reason, exc.text or exc.reason),
            headers=keep,
        )
    except Exception:
        log.exception("request_failed")
        return problem_response(
            Problem(
                500, "internal-error", "Internal error", "the gateway failed; the error is logged"
            )
        )


class IntakeApi:
    def __init__(
        self,
        service: IntakeService,
        auth: PortalAuth,
        store: Store,
        metrics: Metrics,
        readiness: Readiness,
    ) -> None:
        self._service = service
        self._auth = auth
        self._store = store
        self._metrics = metrics
        self._readiness = readiness

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/applications", self.submit)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)

    async def submit(self, request: web.Request) -> web.Response:
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return problem_response(
                Problem(
                    415,
                    "content-encoding-unsupported",
                    "Compressed bodies are not accepted",
                    f"Content-Encoding {encoding[:32]!r} is not accepted; "
                    "send the body uncompressed",
                )
            )
        if request.content_type != "application/json":
            return problem_response(
                Problem(
                    415,
                    "content-type-unsupported",
                    "Unsupported media type",
                    "send the envelope as application/json",
                )
            )
        body = await request.read()
        digest = body_digest(body)  # hashed once: for the signature and the fingerprint
        portal_id, nonce = self._auth.check(
            request.headers, request.method, request.raw_path, body, digest=digest
        )
        structlog.contextvars.bind_contextvars(portal_id=portal_id)
        key = request.headers.get(HEADER_IDEMPOTENCY_KEY, "")
        if (refusal := _refusal(body, key)) is not None:
            await self._auth.remember(portal_id, nonce)  # a reused nonce is still 401 first
            return problem_response(refusal)
        try:  # the nonce is recorded in the transaction that claims the key
            outcome = await self._service.submit(
                portal_id,
                key,
                body,
                channel="http",
                traceparent=request.headers.get("traceparent"),
                nonce=nonce,
                digest=digest,
            )
        except NonceReused:
            raise AuthError(NONCE_REUSED) from None
        if outcome.application_id:
            structlog.contextvars.bind_contextvars(application_id=outcome.application_id)
        return _response(outcome)

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        checks: dict[str, str] = {}
        checks["broker"] = "ok" if self._readiness.broker_connected() else "down"
        try:
            await self._store.ping()
            checks["store"] = "ok"
        except StoreUnavailable as exc:
            log.warning("store_not_ready", error=str(exc))  # details in the log, not to callers
            checks["store"] = "down"
        ready = all(v == "ok" for v in checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _refusal(body: bytes, key: str) -> Problem | None:
    """What refuses an authenticated request before intake: a compressed body, a missing or
    invalid Idempotency-Key."""
    if packed := _compressed(body):
        return Problem(
            415,
            "content-encoding-unsupported",
            "Compressed bodies are not accepted",
            f"the body is {packed}-compressed; send the JSON uncompressed",
        )
    if not key:
        return Problem(
            400,
            "idempotency-key-missing",
            "Idempotency-Key required",
            "send an Idempotency-Key header (≤ 128 characters)",
        )
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        return Problem(
            400,
            "idempotency-key-invalid",
            "Idempotency-Key invalid",
            "the Idempotency-Key must be at most 128 printable characters",
        )
    return None


_MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"PK\x03\x04", "zip"))


def _compressed(body: bytes) -> str | None:
    """The compression a body's first bytes show (sent without a Content-Encoding), if any;
    zlib's header is told by its checksum. Never inflated: a JSON text starts otherwise."""
    for magic, name in _MAGIC:
        if body.startswith(magic):
            return name
    zlib_header = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
    if zlib_header and not body[:1].isdigit():  # "80…" is a JSON number
        return "deflate"
    return None


def _response(outcome: Outcome) -> web.Response:
    return web.Response(
        status=outcome.status,
        body=outcome.body,
        headers={
            "Content-Type": outcome.content_type,
            **outcome.headers,
        },
    )


def build_app(*apis: RouteAdder, max_body_bytes: int) -> web.Application:
    # No route accepts a compressed body: never let the server inflate one (a bomb), even
    # while it drains a refused request.
    app = web.Application(
        client_max_size=max_body_bytes,
        middlewares=[problem_middleware],
        handler_args={"auto_decompress": False},
    )
    app[MAX_BODY_BYTES] = max_body_bytes
    for api in apis:
        api.add_routes(app)
    return app


class RouteAdder(Protocol):
    def add_routes(self, app: web.Application) -> None: ...
