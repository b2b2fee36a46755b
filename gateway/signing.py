"""Request signing shared by portals, department callbacks and webhooks (DESIGN).

``X-Signature: sha256=<hex HMAC-SHA256(secret, S)>`` with
``S = timestamp \\n nonce \\n METHOD \\n path_and_query \\n idempotency_key_or_empty \\n
hex(sha256(body bytes as sent))``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterable

HEADER_PORTAL = "X-Portal-Id"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"
HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"
PREFIX = "sha256="


def body_digest(body: bytes) -> str:
    """``hex(sha256(body))``: the last line of the string to sign (and intake's fingerprint
    of the body, so that a request's body is hashed once)."""
    return hashlib.sha256(body).hexdigest()


def string_to_sign(
    timestamp: str,
    nonce: str,
    method: str,
    path_qs: str,
    key: str,
    body: bytes,
    *,
    digest: str | None = None,
) -> bytes:
    """``digest``, when given, is ``body_digest(body)`` computed already."""
    digest = body_digest(body) if digest is None else digest
    return "\n".join((timestamp, nonce, method.upper(), path_qs, key, digest)).encode()


def sign(
    secret: str, timestamp: str, nonce: str, method: str, path_qs: str, key: str, body: bytes
) -> str:
    return _signature(secret, string_to_sign(timestamp, nonce, method, path_qs, key, body))


def _signature(secret: str, message: bytes) -> str:
    return PREFIX + hmac.digest(secret.encode(), message, "sha256").hex()  # one C call


def matches(
    signature: str, secrets: Iterable[str], *parts: str, body: bytes, digest: str | None = None
) -> bool:
    """True when ``signature`` was made with any of ``secrets`` (current, then previous).
    ``digest``: ``body_digest(body)`` when the caller has it already."""
    timestamp, nonce, method, path_qs, key = parts
    # once, not per secret
    message = string_to_sign(timestamp, nonce, method, path_qs, key, body, digest=digest)
    given = signature.encode()
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(_signature(secret, message).encode(), given)  # no early exit
    return ok


def signed_headers(
    portal_id: str,
    secret: str,
    method: str,
    path_qs: str,
    body: bytes,
    idempotency_key: str | None = None,
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or os.urandom(16).hex()
    key = idempotency_key or ""
    headers = {
        HEADER_PORTAL: portal_id,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: sign(secret, timestamp, nonce, method, path_qs, key, body),
    }
    if idempotency_key is not None:
        headers[HEADER_IDEMPOTENCY_KEY] = idempotency_key
    return headers
