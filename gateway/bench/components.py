"""Component costs in µs per operation: what one application spends where, off the broker.

envelope   ``parse_envelope`` on each valid example of ``contracts/envelope/examples``
mapping    each system's mapping of a newborn's task, cut by ``catalogue.fields.select``
           from the example exactly as the planner's ``_dispatch`` does
soap       the police request through zeep against the same XML built with lxml
signature  ``signing.matches`` on a signed newborn request (one secret, then two)
store      one transaction per backend: ``remember_nonce``; ``claim_idempotency`` of a
           new key followed by ``release_idempotency`` (two transactions)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from functools import partial
from importlib import resources
from typing import Any

from connectors.base import DepartmentRequest
from gateway.bench import soap_build
from gateway.bench.report import Row
from gateway.bench.stores import postgres_store, sqlite_store
from gateway.bench.timing import Timing, measure, measure_async
from gateway.catalogue.fields import select
from gateway.catalogue.model import load
from gateway.envelope import ENVELOPE_ADAPTER, parse_envelope
from gateway.signing import (
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    matches,
    signed_headers,
)
from gateway.store import Store
from mappings import cdc, hospital, hospital_xml, hukou, provincial

NEWBORN = "newborn-yizhang-window"
# What earlier steps provide, as the simulators would (valid check digits and formats).
PROVIDED = {"birth_certificate_no": "Q430012345", "citizen_id": "431022202611200015"}
# One step per department system, all of the newborn's.
STEPS = {
    "hospital": "birth_certificate",
    "cdc": "vaccination",
    "hukou": "hukou",
    "provincial": "medical_insurance",
}
S_ENVELOPE = "component costs: envelope validation (parse_envelope)"
S_MAPPING = "component costs: mappings (newborn task → department format)"
S_SOAP = "component costs: police SOAP request (SubmitBirthRegistration)"
S_SIGNATURE = "component costs: signature check (signing.matches)"
S_STORE = "component costs: store transactions"

Progress = Callable[[str], None]


def examples() -> list[tuple[str, bytes]]:
    folder = resources.files("contracts") / "envelope" / "examples" / "valid"
    return sorted(
        (entry.name.removesuffix(".json"), entry.read_bytes())
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    )


def newborn_request(step_key: str, raw: bytes) -> DepartmentRequest:
    """The task the planner would dispatch for ``step_key`` of this newborn envelope."""
    envelope: dict[str, Any] = json.loads(ENVELOPE_ADAPTER.dump_json(parse_envelope(raw)))
    step = load().matter("newborn").step(step_key)
    app_id = "0194f1c2-7a3b-7c4d-8e5f-0123456789ab"
    return DepartmentRequest(
        task_id=f"{app_id}.{step.key}",
        application_id=app_id,
        matter="newborn",
        task=step.key,
        system=step.system,
        operation=step.operation,
        attempt=1,
        fields=select(envelope, step.needs, PROVIDED),
    )


def mapping_functions(raw: bytes) -> dict[str, Callable[[], object]]:
    req = {system: newborn_request(step, raw) for system, step in STEPS.items()}
    return {
        "hospital (to_hospital + render XML)": lambda: hospital_xml.render_request(
            hospital.to_hospital(req["hospital"])
        ),
        "cdc (request_for)": lambda: cdc.request_for(req["cdc"]),
        "hukou (submission)": lambda: hukou.submission(req["hukou"]),
        "provincial (case_request)": lambda: provincial.case_request(req["provincial"]),
    }


def run_cpu_components(*, target_seconds: float, runs: int, progress: Progress) -> list[Row]:
    """Envelope, mappings, SOAP and signature rows (no I/O)."""
    rows: list[Row] = []

    def timed(section: str, name: str, fn: Callable[[], object], note: str = "") -> Timing:
        fn()  # once untimed: caches, imports, and a failure here is a bug, not a figure
        t = measure(fn, target_seconds=target_seconds, runs=runs)
        rows.append(Row(section, name, t.median_us, "µs", note or _spread(t)))
        return t

    progress("components: envelope validation")
    all_examples = examples()
    for name, raw in all_examples:
        timed(S_ENVELOPE, name, partial(parse_envelope, raw), f"{len(raw):,} bytes")
    progress("components: mappings")
    newborn = dict(all_examples)[NEWBORN]
    for name, fn in mapping_functions(newborn).items():
        timed(S_MAPPING, name, fn)
    progress("components: SOAP request, zeep against lxml")
    call = hukou.submission(newborn_request(STEPS["hukou"], newborn))
    through_zeep = soap_build.zeep_builder(call)
    with_lxml = soap_build.lxml_builder(call)
    same = soap_build.same_document(through_zeep(), with_lxml())
    zeep_t = timed(S_SOAP, "through zeep (create_message + tostring)", through_zeep)
    lxml_t = timed(S_SOAP, "with lxml directly (SubElement + tostring)", with_lxml)
    rows.append(
        Row(S_SOAP, "zeep ÷ lxml", zeep_t.median_us / lxml_t.median_us, "ratio",
            "same XML" if same else "the two documents DIFFER: compare them before trusting this")
    )  # fmt: skip
    progress("components: signature check")
    secret, old = os.urandom(16).hex(), os.urandom(16).hex()
    path = "/v1/applications"
    key = "bench-key-0001"
    headers = signed_headers("bench", secret, "POST", path, newborn, key)
    parts = (headers[HEADER_TIMESTAMP], headers[HEADER_NONCE], "POST", path, key)
    signature = headers[HEADER_SIGNATURE]
    if not matches(signature, [secret], *parts, body=newborn):
        raise AssertionError("the bench's own signature does not verify")
    timed(
        S_SIGNATURE,
        "one secret",
        lambda: matches(signature, [secret], *parts, body=newborn),
        f"{len(newborn):,}-byte body",
    )
    timed(S_SIGNATURE, "two secrets (rotation)",
          lambda: matches(signature, [secret, old], *parts, body=newborn))  # fmt: skip
    return rows


async def run_store_components(
    postgres_url: str | None, *, target_seconds: float, runs: int, progress: Progress
) -> list[Row]:
    rows: list[Row] = []
    progress("components: SQLite store transactions")
    async with sqlite_store() as store:
        rows += await _store_rows("SQLite (temp file)", store, target_seconds, runs)
    if postgres_url is None:
        rows.append(Row(S_STORE, "PostgreSQL", None, "µs", "not measured: no URL"))
        return rows
    progress("components: PostgreSQL store transactions (fresh schema)")
    try:
        async with postgres_store(postgres_url) as store:
            rows += await _store_rows("PostgreSQL", store, target_seconds, runs)
    except Exception as exc:  # an unreachable database is a row, not a crash
        rows.append(Row(S_STORE, "PostgreSQL", None, "µs", f"not measured: {exc!s:.120}"))
    return rows


async def _store_rows(backend: str, store: Store, target_seconds: float, runs: int) -> list[Row]:
    counter = iter(range(1 << 62))
    portal = "bench"

    async def nonce() -> None:
        await store.remember_nonce(portal, f"n-{next(counter)}", time.time(), 300.0)

    async def claim_release() -> None:
        key = f"k-{next(counter)}"
        await store.claim_idempotency(portal, key, "f" * 64, time.time(), 30.0)
        await store.release_idempotency(portal, key)

    out = []
    ops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("remember_nonce (1 transaction)", nonce),
        ("claim_idempotency + release (2 transactions)", claim_release),
    ]
    for name, fn in ops:
        await fn()
        t = await measure_async(fn, target_seconds=target_seconds, runs=runs)
        out.append(Row(S_STORE, f"{backend}: {name}", t.median_us, "µs", _spread(t)))
    return out


def _spread(t: Timing) -> str:
    return f"min {t.min_us:.1f} max {t.max_us:.1f} µs, {t.runs} runs × {t.batch:,}"
