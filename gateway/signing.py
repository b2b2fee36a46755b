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


def string_to_sign(
    timestamp: str, nonce: str, method: str, path_qs: str, key: str, body: bytes
) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((timestamp, nonce, method.upper(), path_qs, key, digest)).encode()


def sign(
    secret: str, timestamp: str, nonce: str, method: str, path_qs: str, key: str, body: bytes
) -> str:
    return _signature(secret, string_to_sign(timestamp, nonce, method, path_qs, key, body))


def _signature(secret: str, message: bytes) -> str:
    return PREFIX + hmac.digest(secret.encode(), message, "sha256").hex()  # one C call


def matches(signature: str, secrets: Iterable[str], *parts: str, body: bytes) -> bool:
    """True when ``signature`` was made with any of ``secrets`` (current, then previous)."""
    timestamp, nonce, method, path_qs, key = parts
    message = string_to_sign(timestamp, nonce, method, path_qs, key, body)  # once, not per secret
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
