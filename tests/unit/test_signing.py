"""Portal request signing, as DESIGN defines the string to sign."""

from __future__ import annotations

import hashlib
import hmac

from gateway import signing


def test_signature_is_hmac_sha256_over_the_designed_string() -> None:
    body = b'{"matter":"newborn"}'
    expected_s = (
        "1764300000\nn-1\nPOST\n/v1/applications?x=1\nkey-1\n" + hashlib.sha256(body).hexdigest()
    ).encode()
    mac = hmac.new(b"secret-1", expected_s, hashlib.sha256).hexdigest()
    got = signing.sign(
        "secret-1", "1764300000", "n-1", "post", "/v1/applications?x=1", "key-1", body
    )
    assert got == "sha256=" + mac


def test_matches_with_current_or_previous_secret_only() -> None:
    parts = ("1764300000", "n-1", "POST", "/v1/applications", "")
    old = signing.sign("old-secret", *parts, b"{}")
    assert signing.matches(old, ["new-secret", "old-secret"], *parts, body=b"{}")
    assert not signing.matches(old, ["new-secret"], *parts, body=b"{}")
    assert not signing.matches(old, ["new-secret", "old-secret"], *parts, body=b"{ }")


def test_signed_headers_carry_what_the_gateway_checks() -> None:
    headers = signing.signed_headers(
        "window", "s3", "GET", "/v1/applications/x", b"", now=1764300000, nonce="abc"
    )
    assert headers == {
        "X-Portal-Id": "window",
        "X-Timestamp": "1764300000",
        "X-Nonce": "abc",
        "X-Signature": signing.sign(
            "s3", "1764300000", "abc", "GET", "/v1/applications/x", "", b""
        ),
    }
    assert "Idempotency-Key" in signing.signed_headers("w", "s", "POST", "/", b"", "k1")


def test_a_given_body_digest_is_what_the_signature_covers() -> None:
    parts = ("1764300000", "n-1", "POST", "/v1/applications", "key-1")
    body = b'{"matter":"newborn"}'
    signature = signing.sign("secret-1", *parts, body)
    digest = signing.body_digest(body)
    assert digest == hashlib.sha256(body).hexdigest()
    assert signing.matches(signature, ["secret-1"], *parts, body=body, digest=digest)
    # the digest given is used instead of hashing the body again: a wrong one fails
    wrong = signing.body_digest(b"{}")
    assert not signing.matches(signature, ["secret-1"], *parts, body=body, digest=wrong)
