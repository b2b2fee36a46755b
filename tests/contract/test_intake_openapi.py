"""contracts/intake/openapi.yaml against the code that serves it.

- the document is valid OpenAPI 3.1 (checked by the independent ``openapi-spec-validator``),
  and every file it points to exists;
- it lists exactly the routes the aiohttp app registers;
- it lists every problem ``type`` the gateway's source can produce, and no other;
- its examples match its own schemas;
- the worked signing examples in contracts/intake/README.md are what gateway.signing computes;
- real answers of a running gateway (real RabbitMQ) match the documented response schemas.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.readers import read_from_filename
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.intake.auth import PortalAuth
from gateway.intake.http import IntakeApi, Readiness, build_app
from gateway.intake.service import IntakeService, fingerprint
from gateway.metrics import Metrics
from gateway.problems import TYPE_BASE
from gateway.runtime import Gateway
from gateway.signing import sign, string_to_sign
from gateway.store import ApplicationStatus, Store
from tests.conftest import WINDOW_SECRET
from tests.support.portal import Answer, Portal, example

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "contracts" / "intake" / "openapi.yaml"
README = ROOT / "contracts" / "intake" / "README.md"
ENVELOPE_SCHEMA = ROOT / "contracts" / "envelope" / "envelope.schema.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# --- the document ---------------------------------------------------------------------


@cache
def _load() -> tuple[dict[str, Any], str]:
    spec, uri = read_from_filename(str(DOCUMENT))
    return cast(dict[str, Any], spec), uri


def document() -> dict[str, Any]:
    return _load()[0]


def document_uri() -> str:
    return _load()[1]


@cache
def registry() -> Registry[Any]:
    """The document and the envelope schema it refers to, for jsonschema's ``$ref``s."""
    envelope = Resource.from_contents(
        json.loads(ENVELOPE_SCHEMA.read_text(encoding="utf-8")),
        default_specification=DRAFT202012,
    )
    resources = [
        (document_uri(), DRAFT202012.create_resource(document())),
        (ENVELOPE_SCHEMA.as_uri(), envelope),
    ]
    if envelope.id():
        resources.append((cast(str, envelope.id()), envelope))
    return Registry().with_resources(resources)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def validator_at(pointer: str) -> Draft202012Validator:
    """A validator for the schema at ``pointer`` (a JSON pointer into the document)."""
    return Draft202012Validator(
        {"$ref": f"{document_uri()}#{pointer}"},
        registry=registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _follow(ref: str) -> tuple[str, dict[str, Any]]:
    """A local ``#/...`` reference: (its pointer, the object it names)."""
    assert ref.startswith("#/"), f"only local references are expected here, got {ref}"
    node: Any = document()
    for token in ref[2:].split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return ref[1:], node


def documented_response(path: str, method: str, status: int) -> tuple[str, dict[str, Any]]:
    """(pointer, Response Object) documented for this operation and status."""
    responses = document()["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} does not document {status}"
    response = responses[str(status)]
    if "$ref" in response:
        return _follow(response["$ref"])
    pointer = f"/paths/{_escape(path)}/{method.lower()}/responses/{status}"
    return pointer, response


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_document_is_valid_openapi_3_1() -> None:
    assert document()["openapi"].startswith("3.1.")
    validate_openapi(document(), base_uri=document_uri())  # raises with the first problem


def test_every_file_the_document_points_to_exists() -> None:
    """openapi-spec-validator does not follow external references; check them here."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in ("$ref", "externalValue") and not value.startswith("#"):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document())
    assert "../envelope/envelope.schema.json" in found
    for ref in found:
        target = (DOCUMENT.parent / ref.split("#")[0]).resolve()
        assert target.is_file(), f"{ref} (from openapi.yaml) does not exist"
        if target.suffix == ".json":
            json.loads(target.read_text(encoding="utf-8"))


# --- routes ---------------------------------------------------------------------------


async def _never(*_args: object) -> None:
    raise AssertionError("handlers are not called in this test")


def registered_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every route the real aiohttp app registers (HEAD left out)."""
    store = cast(Store, object())  # stand-in: only the route table is read
    metrics = Metrics()
    api = IntakeApi(
        IntakeService(store, _never, metrics),
        PortalAuth({}, store),
        store,
        metrics,
        Readiness(lambda: True),
        timezone=dt.UTC,
    )
    app = build_app(api, max_body_bytes=1 << 20)
    routes = set()
    for route in app.router.routes():
        assert route.resource is not None
        if route.method != "HEAD":
            routes.add((route.method, route.resource.canonical))
    return routes


def test_document_lists_exactly_the_registered_routes() -> None:
    documented = {(method.upper(), path) for path, method, _ in operations()}
    registered = registered_routes()
    assert documented == registered, (
        f"only in the document: {sorted(documented - registered)}; "
        f"only in the code: {sorted(registered - documented)}"
    )


# --- problem types --------------------------------------------------------------------


def _argument(call: ast.Call, position: int, name: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == name), None)


def _slug(node: ast.expr | None, where: str) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # f"http-{exc.status}" -> "http-{status}"
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                assert isinstance(value, ast.FormattedValue)
                parts.append("{" + ast.unparse(value.value).rsplit(".", 1)[-1] + "}")
        return "".join(parts)
    raise AssertionError(f"{where}: the Problem slug is not a literal; this test cannot read it")


def problems_in_code() -> dict[str, set[int | None]]:
    """Every slug passed to ``Problem(...)`` anywhere in gateway/, with its statuses."""
    found: dict[str, set[int | None]] = {}
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name != "Problem":
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            status_node = _argument(node, 0, "status")
            status = None
            if isinstance(status_node, ast.Constant) and isinstance(status_node.value, int):
                status = status_node.value
            found.setdefault(_slug(_argument(node, 1, "slug"), where), set()).add(status)
    return found


def documented_problem_types() -> list[dict[str, Any]]:
    return cast(
        list[dict[str, Any]], document()["components"]["schemas"]["Problem"]["x-problem-types"]
    )


def test_every_problem_type_the_code_produces_is_documented() -> None:
    in_code = problems_in_code()
    assert len(in_code) >= 10, f"the scan found too few Problem(...) calls: {in_code}"
    documented = {entry["slug"]: entry["status"] for entry in documented_problem_types()}
    assert sorted(in_code) == sorted(documented), (
        f"undocumented: {sorted(set(in_code) - set(documented))}; "
        f"documented but never produced: {sorted(set(documented) - set(in_code))}"
    )
    for slug, statuses in in_code.items():
        literal = {s for s in statuses if s is not None}
        if literal:
            assert literal == {documented[slug]}, f"{slug}: code {literal}, document {documented}"


def test_problem_type_schema_admits_the_documented_types_and_nothing_else() -> None:
    type_schema = validator_at("/components/schemas/Problem/properties/type")
    slugs = [entry["slug"] for entry in documented_problem_types()]
    _, problem = _follow("#/components/schemas/Problem")
    [listed, _template] = problem["properties"]["type"]["anyOf"]
    assert sorted(listed["enum"]) == sorted(TYPE_BASE + s for s in slugs if "{" not in s)
    for slug in slugs:
        type_schema.validate(TYPE_BASE + slug.replace("{status}", "404"))
    with pytest.raises(ValidationError):
        type_schema.validate(TYPE_BASE + "no-such-problem")


def test_view_status_enum_follows_the_code() -> None:
    view = document()["components"]["schemas"]["ApplicationView"]["properties"]
    assert view["status"]["enum"] == [s.value for s in ApplicationStatus]


# --- examples -------------------------------------------------------------------------


def _examples(content: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for name, ex in content.get("examples", {}).items():
        if "value" in ex:
            yield name, ex["value"]
    if "example" in content:
        yield "example", content["example"]


def test_every_example_matches_its_schema() -> None:
    checked = 0
    for path, method, operation in operations():
        body = operation.get("requestBody", {}).get("content", {})
        base = f"/paths/{_escape(path)}/{method}/requestBody/content"
        for media, content in body.items():
            for name, value in _examples(content):
                schema = validator_at(f"{base}/{_escape(media)}/schema")
                assert not list(schema.iter_errors(value)), f"{method} {path} example {name}"
                checked += 1
        for status in operation["responses"]:
            pointer, response = documented_response(path, method, int(status))
            for media, content in response.get("content", {}).items():
                schema = validator_at(f"{pointer}/content/{_escape(media)}/schema")
                for name, value in _examples(content):
                    errors = [e.message for e in schema.iter_errors(value)]
                    assert not errors, f"{method} {path} {status} example {name}: {errors}"
                    checked += 1
    assert checked >= 20


# --- the README's worked signing examples ---------------------------------------------

_INPUT = re.compile(r"^\| (?P<name>[\w-]+) \|(?P<value>.*)\|$", re.MULTILINE)


def worked_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    sections = re.split(r"^### ", text, flags=re.MULTILINE)
    return [s for s in sections if s.startswith("Worked example")]


@pytest.mark.parametrize("index", [0, 1], ids=["post", "get"])
def test_readme_worked_example_is_what_gateway_signing_computes(index: int) -> None:
    section = worked_examples()[index]
    inputs = {m["name"]: m["value"].strip().strip("`") for m in _INPUT.finditer(section)}
    args = (
        inputs["X-Timestamp"],
        inputs["X-Nonce"],
        inputs["method"],
        inputs["path_and_query"],
        inputs["Idempotency-Key"],
        inputs["body"].encode(),
    )
    to_sign = string_to_sign(*args).decode()
    signature = sign(inputs["secret"], *args)

    assert f"```text\n{to_sign}\n```" in section
    shown = re.findall(r"^X-Signature: (\S+)$", section, flags=re.MULTILINE)
    assert shown == [signature]
    for header in ("X-Portal-Id", "X-Timestamp", "X-Nonce"):
        assert f"\n{header}: {inputs[header]}\n" in section
    if inputs["Idempotency-Key"]:
        assert f"\nIdempotency-Key: {inputs['Idempotency-Key']}\n" in section
    for line in re.findall(r"^# ([0-9a-f]{64}) \*stdin$", section, flags=re.MULTILINE):
        assert "sha256=" + line == signature  # the openssl recipe's output


def test_readme_has_both_worked_examples() -> None:
    assert len(worked_examples()) == 2


# --- real answers of a running gateway ------------------------------------------------

NEWBORN = example("newborn-yizhang-window")
INVALID = example("multiple-errors", "invalid")
APPLICATIONS = "/v1/applications"
ONE_APPLICATION = "/v1/applications/{application_id}"


def check_against_document(answer: Answer, method: str, path: str, status: int) -> Any:
    """The answer's status, media type, required headers and body are as documented."""
    assert answer.status == status, answer.body[:500]
    pointer, response = documented_response(path, method, status)
    media = answer.headers.get("Content-Type", "").split(";")[0].strip()
    assert media in response.get("content", {}), f"{media} not documented for {status}"
    for name, header in response.get("headers", {}).items():
        if "$ref" in header:
            header = _follow(header["$ref"])[1]
        if header.get("required"):
            assert name in answer.headers, f"{name} missing from the {status} answer"
    if not media.endswith("json"):
        return answer.body.decode()
    body = answer.json()
    schema = validator_at(f"{pointer}/content/{_escape(media)}/schema")
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in schema.iter_errors(body)]
    assert not errors, f"{method} {path} {status}: {errors}\n{body}"
    return body


def documented_example(path: str, method: str, status: int, name: str) -> Any:
    _, response = documented_response(path, method, status)
    [content] = response["content"].values()
    return content["examples"][name]["value"]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def window(gateway: Gateway, session: aiohttp.ClientSession) -> Portal:
    return Portal(f"http://127.0.0.1:{gateway.http_port}", "window", WINDOW_SECRET, session)


async def _get(portal: Portal, path: str) -> Answer:
    async with portal.session.get(portal.base_url + path) as resp:
        return Answer(resp.status, dict(resp.headers), await resp.read())


async def _accepted(portal: Portal, _gw: Gateway) -> Answer:
    return await portal.submit(NEWBORN)


async def _replayed(portal: Portal, _gw: Gateway) -> Answer:
    first = await portal.submit(NEWBORN, key="replayed-1")
    again = await portal.submit(NEWBORN, key="replayed-1")
    assert again.body == first.body
    return again


async def _key_missing(portal: Portal, _gw: Gateway) -> Answer:
    return await portal.submit(NEWBORN, key=None)


async def _key_invalid(portal: Portal, _gw: Gateway) -> Answer:
    return await portal.submit(NEWBORN, key="k" * 129)


async def _bad_signature(portal: Portal, _gw: Gateway) -> Answer:
    return await portal.submit(NEWBORN, secret="not-the-window-secret-000")


async def _no_headers(portal: Portal, _gw: Gateway) -> Answer:
    return await _get(portal, f"{APPLICATIONS}/{uuid.uuid4()}")


async def _in_flight(portal: Portal, gw: Gateway) -> Answer:
    assert gw.store is not None
    await gw.store.claim_idempotency("window", "busy", fingerprint(NEWBORN), time.time(), 30)
    return await portal.submit(NEWBORN, key="busy")


async def _too_large(portal: Portal, gw: Gateway) -> Answer:
    return await portal.submit(b" " * (gw.settings.intake.max_body_bytes + 1))


async def _gzip(portal: Portal, _gw: Gateway) -> Answer:
    return await portal.submit(NEWBORN, headers={"Content-Encoding": "gzip"})


async def _form(portal: Portal, _gw: Gateway) -> Answer:
    return await portal.submit(NEWBORN, headers={"Content-Type": "text/plain"})


async def _invalid_envelope(portal: Portal, _gw: Gateway) -> Answer:
    return await portal.submit(INVALID)


async def _key_reused(portal: Portal, _gw: Gateway) -> Answer:
    await portal.submit(NEWBORN, key="reused-1")
    return await portal.submit(example("retirement-online"), key="reused-1")


async def _view(portal: Portal, _gw: Gateway) -> Answer:
    app_id = (await portal.submit(NEWBORN)).json()["application_id"]
    return await portal.show(app_id)


async def _not_found(portal: Portal, _gw: Gateway) -> Answer:
    return await portal.show(str(uuid.uuid4()))


async def _healthz(portal: Portal, _gw: Gateway) -> Answer:
    return await _get(portal, "/healthz")


async def _readyz(portal: Portal, _gw: Gateway) -> Answer:
    return await _get(portal, "/readyz")


async def _metrics(portal: Portal, _gw: Gateway) -> Answer:
    await portal.submit(NEWBORN)
    return await _get(portal, "/metrics")


Case = Callable[[Portal, Gateway], Awaitable[Answer]]
CASES: dict[str, tuple[Case, str, str, int]] = {
    "202": (_accepted, "POST", APPLICATIONS, 202),
    "202-replayed": (_replayed, "POST", APPLICATIONS, 202),
    "400-key-missing": (_key_missing, "POST", APPLICATIONS, 400),
    "400-key-invalid": (_key_invalid, "POST", APPLICATIONS, 400),
    "401-signature": (_bad_signature, "POST", APPLICATIONS, 401),
    "401-no-headers": (_no_headers, "GET", ONE_APPLICATION, 401),
    "409-in-flight": (_in_flight, "POST", APPLICATIONS, 409),
    "413": (_too_large, "POST", APPLICATIONS, 413),
    "415-gzip": (_gzip, "POST", APPLICATIONS, 415),
    "415-content-type": (_form, "POST", APPLICATIONS, 415),
    "422-invalid-envelope": (_invalid_envelope, "POST", APPLICATIONS, 422),
    "422-key-reused": (_key_reused, "POST", APPLICATIONS, 422),
    "200-view": (_view, "GET", ONE_APPLICATION, 200),
    "404": (_not_found, "GET", ONE_APPLICATION, 404),
    "healthz": (_healthz, "GET", "/healthz", 200),
    "readyz": (_readyz, "GET", "/readyz", 200),
    "metrics": (_metrics, "GET", "/metrics", 200),
}


@pytest.mark.broker
@pytest.mark.parametrize("name", list(CASES))
async def test_real_answer_matches_the_document(
    name: str, window: Portal, gateway: Gateway
) -> None:
    case, method, path, status = CASES[name]
    body = check_against_document(await case(window, gateway), method, path, status)
    if name == "202":
        assert body["location"].endswith(body["application_id"])
    if name == "422-invalid-envelope":  # the documented example is the real answer
        assert body == documented_example(path, method, 422, "invalid-envelope")
    if name == "metrics":
        assert 'gateway_intake_total{channel="http",outcome="202"} 1.0' in body


@pytest.mark.broker
@pytest.mark.parametrize(
    ("method", "path", "slug"),
    [
        ("GET", "/v1/no-such-route", "http-404"),
        ("PUT", APPLICATIONS, "http-405"),
    ],
)
async def test_http_layer_errors_are_documented_problems(
    method: str, path: str, slug: str, window: Portal
) -> None:
    async with window.session.request(method, window.base_url + path) as resp:
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        body = await resp.json(content_type=None)
    validator_at("/components/schemas/Problem").validate(body)
    assert body["type"] == TYPE_BASE + slug
