"""Operator identity, roles and department scopes (``gateway.admin.auth``)."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from gateway.admin.auth import Forbidden, Operator, OperatorAuth, Unauthenticated
from gateway.settings import OperatorConfig

OPERATORS = {
    "lead": OperatorConfig(
        token="lead-token-0123456789",  # type: ignore[arg-type]
        roles=frozenset({"view", "replay", "purge"}),
    ),
    "police": OperatorConfig(
        token="police-token-0123456789",  # type: ignore[arg-type]
        systems=frozenset({"hukou"}),
    ),
}


def test_a_bearer_token_names_its_operator() -> None:
    auth = OperatorAuth(OPERATORS)
    lead = auth.from_header("Bearer lead-token-0123456789")
    assert lead == Operator("lead", frozenset({"view", "replay", "purge"}), frozenset())
    police = auth.from_header("bearer  police-token-0123456789 ")
    assert police.name == "police" and police.roles == {"view"} and police.scope == {"hukou"}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic lead-token-0123456789",
        "Bearer lead-token-012345678",  # one character short
        "Bearer lead-token-01234567890",
        "Bearer police-token-0123456789x",
    ],
)
def test_anything_else_is_unauthenticated(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        OperatorAuth(OPERATORS).from_header(header)


def test_no_operators_configured_means_nobody_gets_in() -> None:
    with pytest.raises(Unauthenticated):
        OperatorAuth({}).identify("")
    with pytest.raises(Unauthenticated):
        OperatorAuth({}).identify("lead-token-0123456789")


def test_a_missing_role_is_named() -> None:
    police = OperatorAuth(OPERATORS).identify("police-token-0123456789")
    police.require("view")
    with pytest.raises(Forbidden) as caught:
        police.require("replay")
    assert caught.value.role == "replay" and "lacks the 'replay' role" in caught.value.detail


def test_a_scoped_operator_sees_only_its_systems() -> None:
    auth = OperatorAuth(OPERATORS)
    police, lead = auth.identify("police-token-0123456789"), auth.identify("lead-token-0123456789")
    assert police.sees("hukou") and not police.sees("hospital") and not police.sees(None)
    assert lead.sees("hospital") and lead.sees(None) and lead.scope is None
    with pytest.raises(Forbidden) as caught:
        police.require_system("hospital")
    assert caught.value.system == "hospital" and "hospital" in caught.value.detail
    police.require_any(["hospital", "hukou"])
    with pytest.raises(Forbidden):
        police.require_any(["hospital", "cdc"])
    with pytest.raises(Forbidden):
        police.require_any([])
    lead.require_any([])


def test_a_config_may_hold_the_tokens_digest_instead_of_the_token() -> None:
    digest = hashlib.sha256(b"night-shift-token-0123456789").hexdigest()
    auth = OperatorAuth({"night": OperatorConfig(token_sha256=digest)})
    assert auth.from_header("Bearer night-shift-token-0123456789").name == "night"
    with pytest.raises(Unauthenticated):
        auth.from_header(f"Bearer {digest}")  # the digest itself is no token
    with pytest.raises(ValidationError):
        OperatorConfig()  # one of the two is needed
    with pytest.raises(ValidationError):
        OperatorConfig(token="x" * 20, token_sha256=digest)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        OperatorConfig(token_sha256="ABC")  # not a SHA-256 hex digest
