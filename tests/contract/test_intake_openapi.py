"""contracts/intake/openapi.yaml against the code that serves it.

- the document is valid OpenAPI 3.1 (checked by the independent ``openapi-spec-validator``),
  and every file it points to exists;
- it lists exactly the routes the aiohttp app registers, wired as ``gateway.runtime`` wires
  it (intake, the cases API, and a callback route per department system of kind ``rest``);
- it lists every problem ``type`` the gateway's source can produce, and no other;
- its status enums are the code's, and the callback body is the provincial webhook's;
- its examples match its own schemas;
- the worked signing examples in contracts/intake/README.md are what gateway.signing computes;
- real answers of a running gateway (real RabbitMQ, every role) match the documented response
  schemas: submission, the view with its tasks and results, corrections, withdrawal, delivery.
"""

from __future__ import annotations

import ast
import copy
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

from connectors.base import Decision, Gap
from connectors.registry import callback_routes
from gateway.broker.topology import RESULTS
from gateway.catalogue.model import load
from gateway.intake.auth import PortalAuth
from gateway.intake.cases_api import CasesApi
from gateway.intake.http import IntakeApi, Readiness, RouteAdder, build_app
from gateway.intake.service import IntakeService, fingerprint
from gateway.metrics import Metrics
from gateway.orchestration.messages import ResultMessage, routing_key
from gateway.orchestration.orchestrator import Orchestrator
from gateway.orchestration.records import TaskStatus
from gateway.problems import TYPE_BASE
from gateway.runtime import Gateway
from gateway.settings import Settings, SystemConfig
from gateway.signing import sign, string_to_sign
from gateway.store import ApplicationStatus, Store
from tests.conftest import ONLINE_SECRET, WINDOW_SECRET
from tests.support.portal import Answer, Portal, example
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "contracts" / "intake" / "openapi.yaml"
README = ROOT / "contracts" / "intake" / "README.md"
ENVELOPE_SCHEMA = ROOT / "contracts" / "envelope" / "envelope.schema.json"
PROVINCIAL = ROOT / "contracts" / "provincial"
CALLBACKS = "/v1/callbacks/{system}"
ADMIN = "/v1/admin/"
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
    """The document and the JSON schemas it refers to (the envelope; the provincial
    platform's, for the callback body), under their file URIs and their ``$id``s."""
    resources = [(document_uri(), DRAFT202012.create_resource(document()))]
    files = [ENVELOPE_SCHEMA, *sorted((PROVINCIAL / "schemas").glob("*.schema.json"))]
    for path in files:
        schema = Resource.from_contents(
            json.loads(path.read_text(encoding="utf-8")), default_specification=DRAFT202012
        )
        resources.append((path.as_uri(), schema))
        if schema.id():
            resources.append((cast(str, schema.id()), schema))
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


# One system of each kind, as a deployment configures them; only ``rest`` calls back.
SYSTEMS = {
    "provincial": SystemConfig(
        kind="rest",
        url="http://127.0.0.1:9/platform/v1",
        secret="provincial-secret-0123456789",
    ),
    "hukou": SystemConfig(kind="soap"),
    "hospital": SystemConfig(kind="filedrop"),
    "cdc": SystemConfig(kind="amqp"),
}


def registered_routes(systems: Mapping[str, SystemConfig]) -> set[tuple[str, str]]:
    """(METHOD, path) of every route the real aiohttp app registers (HEAD left out), built
    as ``Gateway._start_intake`` builds it: intake, the cases API, and each system's callback
    routes."""
    store = cast(Store, object())  # stand-in: only the route table is read
    metrics = Metrics()
    auth = PortalAuth({}, store)
    api = IntakeApi(
        IntakeService(store, _never, metrics),
        auth,
        store,
        metrics,
        Readiness(lambda: True),
    )
    cases = CasesApi(auth, store, cast(Orchestrator, object()), timezone=dt.UTC)
    routes: list[RouteAdder] = []
    for name, config in systems.items():
        routes += callback_routes(name, config, _never)
    app = build_app(api, cases, *routes, max_body_bytes=1 << 20)
    found = set()
    for route in app.router.routes():
        assert route.resource is not None
        if route.method != "HEAD":
            found.add((route.method, route.resource.canonical))
    return found


def documented_routes(rest_systems: list[str]) -> set[tuple[str, str]]:
    """The documented routes, the callback template made concrete per ``rest`` system."""
    documented = {(method.upper(), path) for path, method, _ in operations()}
    assert ("POST", CALLBACKS) in documented
    concrete = {("POST", CALLBACKS.replace("{system}", name)) for name in rest_systems}
    return (documented - {("POST", CALLBACKS)}) | concrete


@pytest.mark.parametrize("systems", [SYSTEMS, {}], ids=["every-kind-of-system", "no-systems"])
def test_document_lists_exactly_the_registered_routes(
    systems: Mapping[str, SystemConfig],
) -> None:
    registered = registered_routes(systems)
    documented = documented_routes([n for n, c in systems.items() if c.kind == "rest"])
    documented -= {(m, p) for m, p in documented if p.startswith(ADMIN)}  # needs a store: below
    assert documented == registered, (
        f"only in the document: {sorted(documented - registered)}; "
        f"only in the code: {sorted(registered - documented)}"
    )


def test_every_admin_route_is_documented_with_the_operator_token() -> None:
    admin = [(path, method, op) for path, method, op in operations() if path.startswith(ADMIN)]
    assert len(admin) >= 12  # the served ones: test_the_running_gateway_serves_…
    for path, method, op in admin:
        assert op.get("security") == [{"operatorToken": []}], f"{method} {path}"
        assert op.get("tags") == ["admin"], f"{method} {path}"
    schemes = document()["components"]["securitySchemes"]
    assert schemes["operatorToken"] == {
        **schemes["operatorToken"],
        "type": "http",
        "scheme": "bearer",
    }


def test_only_rest_systems_get_a_callback_route() -> None:
    added = registered_routes(SYSTEMS) - registered_routes({})
    assert added == {("POST", "/v1/callbacks/provincial")}


def test_callback_body_is_the_provincial_webhook_body() -> None:
    """The callback route's body is defined by the provincial contract's webhook."""
    ours = document()["paths"][CALLBACKS]["post"]["requestBody"]["content"]["application/json"]
    provincial, _ = read_from_filename(str(PROVINCIAL / "openapi.yaml"))
    webhook = provincial["webhooks"]["caseStatusChanged"]["post"]
    theirs = webhook["requestBody"]["content"]["application/json"]
    ours_file = (DOCUMENT.parent / ours["schema"]["$ref"]).resolve()
    theirs_file = (PROVINCIAL / theirs["schema"]["$ref"]).resolve()
    assert ours_file == theirs_file
    for name, ex in theirs.get("examples", {}).items():  # their examples are valid here too
        errors = list(validator_at(_body_schema(CALLBACKS, "post")).iter_errors(ex["value"]))
        assert not errors, f"provincial webhook example {name}: {errors}"


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
    """Every slug passed to ``Problem(...)`` anywhere in gateway/ and connectors/ (the
    callback routes are served by the gateway's HTTP app), with its statuses."""
    found: dict[str, set[int | None]] = {}
    sources = [*(ROOT / "gateway").rglob("*.py"), *(ROOT / "connectors").rglob("*.py")]
    for path in sorted(sources):
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


def test_status_enums_follow_the_code() -> None:
    schemas = document()["components"]["schemas"]
    view = schemas["ApplicationState"]["properties"]
    assert view["status"]["enum"] == [s.value for s in ApplicationStatus]
    task_statuses = [s.value for s in TaskStatus]
    assert schemas["Task"]["properties"]["status"]["enum"] == task_statuses
    assert schemas["ResultsItem"]["properties"]["status"]["enum"] == task_statuses


# --- examples -------------------------------------------------------------------------


def _examples(content: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for name, ex in content.get("examples", {}).items():
        if "value" in ex:
            yield name, ex["value"]
    if "example" in content:
        yield "example", content["example"]


def _body_schema(path: str, method: str, media: str = "application/json") -> str:
    return f"/paths/{_escape(path)}/{method}/requestBody/content/{_escape(media)}/schema"


def test_every_example_matches_its_schema() -> None:
    checked = 0
    for path, method, operation in operations():
        body = operation.get("requestBody", {}).get("content", {})
        for media, content in body.items():
            for name, value in _examples(content):
                schema = validator_at(_body_schema(path, method, media))
                errors = [e.message for e in schema.iter_errors(value)]
                assert not errors, f"{method} {path} example {name}: {errors}"
                checked += 1
        for status in operation["responses"]:
            pointer, response = documented_response(path, method, int(status))
            for media, content in response.get("content", {}).items():
                schema = validator_at(f"{pointer}/content/{_escape(media)}/schema")
                for name, value in _examples(content):
                    errors = [e.message for e in schema.iter_errors(value)]
                    assert not errors, f"{method} {path} {status} example {name}: {errors}"
                    checked += 1
    assert checked >= 35


def test_view_schemas_say_when_results_and_timeline_appear() -> None:
    detail = validator_at("/components/schemas/ApplicationDetail")
    view = validator_at("/components/schemas/ApplicationView")
    completed = documented_example(ONE_APPLICATION, "GET", 200, "completed")
    in_progress = documented_example(ONE_APPLICATION, "GET", 200, "in-progress")
    assert detail.is_valid(completed) and detail.is_valid(in_progress)
    assert not detail.is_valid({k: v for k, v in completed.items() if k != "results"})
    assert not detail.is_valid({**in_progress, "results": completed["results"]})
    without_timeline = {k: v for k, v in in_progress.items() if k != "timeline"}
    assert not detail.is_valid(without_timeline)
    assert view.is_valid(without_timeline) and not view.is_valid(in_progress)


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
RETIREMENT = example("retirement-online")
INVALID = example("multiple-errors", "invalid")
APPLICATIONS = "/v1/applications"
ONE_APPLICATION = "/v1/applications/{application_id}"
CORRECTIONS = ONE_APPLICATION + "/corrections"
WITHDRAWAL = ONE_APPLICATION + "/withdrawal"
DELIVERY = ONE_APPLICATION + "/delivery"
BASE_ROLES = ["intake", "orchestrator", "relay", "deadletters"]


def check_against_document(answer: Answer, method: str, path: str, status: int) -> Any:
    """The answer's status, media type, required headers and body are as documented."""
    assert answer.status == status, answer.body[:500]
    pointer, response = documented_response(path, method, status)
    if "content" not in response:  # e.g. 204
        assert not answer.body, f"{method} {path} {status} has a body: {answer.body[:200]!r}"
        return None
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
async def every_role(
    settings_for: Callable[..., Settings], database_url: str
) -> AsyncIterator[Gateway]:
    """A gateway running every role of a configuration without department systems, once per
    store dialect. (The suite's ``gateway`` fixture runs only the intake side; the view's
    tasks need the orchestrator.) The orchestrator dispatches tasks to gw.tasks.<system>,
    where nothing consumes them; the tests play the departments by publishing their
    decisions to gw.results, as a connector would."""
    gw = Gateway(settings_for(database_url))
    await gw.start()
    yield gw
    await gw.stop(drain_seconds=2)


async def test_the_running_gateway_serves_exactly_the_documented_routes(
    every_role: Gateway,
) -> None:
    """The route table of the app a real gateway serves (every role), not a rebuilt one."""
    runner = every_role._runner  # the served app
    assert runner is not None and runner.app is not None
    served = set()
    for route in runner.app.router.routes():
        assert route.resource is not None
        if route.method != "HEAD":
            served.add((route.method, route.resource.canonical))
    rest = [n for n, c in every_role.settings.systems.items() if c.kind == "rest"]
    documented = documented_routes(rest)
    assert documented == served, (
        f"only in the document: {sorted(documented - served)}; "
        f"only in the code: {sorted(served - documented)}"
    )


@pytest.fixture
def window(every_role: Gateway, session: aiohttp.ClientSession) -> Portal:
    return Portal(f"http://127.0.0.1:{every_role.http_port}", "window", WINDOW_SECRET, session)


async def _get(portal: Portal, path: str) -> Answer:
    async with portal.session.get(portal.base_url + path) as resp:
        return Answer(resp.status, dict(resp.headers), await resp.read())


async def _post(portal: Portal, path: str, body: Any = None) -> Answer:
    """A signed portal POST without an Idempotency-Key (``None``: no body at all)."""
    data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
    return await portal.request("POST", path, data, None)


def _at(template: str, app_id: str) -> str:
    return template.replace("{application_id}", app_id)


async def _view_when(portal: Portal, app_id: str, ready: Callable[[dict[str, Any]], bool]) -> Any:
    async def probe() -> dict[str, Any] | None:
        view = cast(dict[str, Any], (await portal.show(app_id)).json())
        return view if ready(view) else None

    view = await eventually(probe)
    assert view, f"application {app_id} never got there: {(await portal.show(app_id)).body!r}"
    return view


async def _started(portal: Portal, body: bytes = NEWBORN) -> str:
    """Submit, then wait until the orchestrator has made the tasks and dispatched the first."""
    app_id = str((await portal.submit(body)).json()["application_id"])
    await _view_when(portal, app_id, lambda v: v["status"] == "in_progress")
    return app_id


async def _decide(gw: Gateway, view: Mapping[str, Any], step: str, decision: Decision) -> None:
    """Play the department: a decision on gw.results, as the system's connector sends it."""
    [task] = [t for t in view["tasks"] if t["step"] == step]
    result = ResultMessage.of_decision(task["system"], task["attempt"], decision)
    key = routing_key(task["system"], view["matter"], step)
    await gw.publish(RESULTS, key, result.message())


PROVIDED = {"citizen_id": "431022202611200012"}  # the newborn's, from the police


async def _completed(portal: Portal, gw: Gateway) -> str:
    """A newborn application whose every department completed its task, providing what the
    catalogue says it provides."""
    app_id = await _started(portal)
    decided: set[tuple[str, int]] = set()

    async def probe() -> bool:
        view = (await portal.show(app_id)).json()
        for task in view["tasks"]:
            if task["status"] == "dispatched" and (task["step"], task["attempt"]) not in decided:
                decided.add((task["step"], task["attempt"]))
                step = task["step"]
                catalogue = load(view["catalogue_version"]).matter(view["matter"])
                provides = {
                    name: PROVIDED.get(name, "N0001") for name in catalogue.step(step).provides
                }
                decision = Decision(
                    task_id=f"{app_id}.{step}",
                    outcome="completed",
                    case_number=f"CASE-{step.upper()}-0001",
                    certificate=f"CERT-{step.upper()}-0001",
                    provides=provides,
                )
                await _decide(gw, view, step, decision)
        return bool(view["status"] == "completed")

    assert await eventually(probe, within=30), (await portal.show(app_id)).body
    return app_id


async def _correction_requested(portal: Portal, gw: Gateway) -> str:
    """A newborn application whose hospital asked for the child's name to be corrected."""
    app_id = await _started(portal)
    view = (await portal.show(app_id)).json()
    gap = Gap("subjects.child.name", "与分娩记录中的姓名不一致")
    decision = Decision(
        task_id=f"{app_id}.birth_certificate",
        outcome="correction_requested",
        case_number="YZRM-2026-11-0042",
        reason="新生儿姓名与分娩记录不一致",
        gaps=[gap],
    )
    await _decide(gw, view, "birth_certificate", decision)
    await _view_when(portal, app_id, lambda v: v["status"] == "correction_requested")
    return app_id


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
    return await portal.submit(RETIREMENT, key="reused-1")


async def _view_just_accepted(portal: Portal, _gw: Gateway) -> Answer:
    """Read at once: the orchestrator may or may not have started it; both are documented."""
    app_id = (await portal.submit(NEWBORN)).json()["application_id"]
    return await portal.show(app_id)


async def _view_in_progress(portal: Portal, _gw: Gateway) -> Answer:
    return await portal.show(await _started(portal))


async def _view_correction_requested(portal: Portal, gw: Gateway) -> Answer:
    return await portal.show(await _correction_requested(portal, gw))


async def _view_completed(portal: Portal, gw: Gateway) -> Answer:
    return await portal.show(await _completed(portal, gw))


async def _not_found(portal: Portal, _gw: Gateway) -> Answer:
    return await portal.show(str(uuid.uuid4()))


async def _other_portals(portal: Portal, _gw: Gateway) -> Answer:
    """Another portal's application is not found, exactly like one that does not exist."""
    online = Portal(portal.base_url, "online", ONLINE_SECRET, portal.session)
    app_id = (await online.submit(NEWBORN)).json()["application_id"]
    return await portal.show(app_id)


async def _corrected(portal: Portal, gw: Gateway) -> Answer:
    app_id = await _correction_requested(portal, gw)
    return await _post(
        portal, _at(CORRECTIONS, app_id), {"changes": {"subjects.child.name": "王子涵"}}
    )


async def _corrections_without_changes(portal: Portal, _gw: Gateway) -> Answer:
    app_id = (await portal.submit(NEWBORN)).json()["application_id"]
    return await _post(portal, _at(CORRECTIONS, app_id), {"changes": {}})


async def _corrections_unknown(portal: Portal, _gw: Gateway) -> Answer:
    changes = {"changes": {"subjects.child.name": "王子涵"}}
    return await _post(portal, _at(CORRECTIONS, str(uuid.uuid4())), changes)


async def _corrections_not_asked(portal: Portal, _gw: Gateway) -> Answer:
    app_id = await _started(portal)
    return await _post(
        portal, _at(CORRECTIONS, app_id), {"changes": {"subjects.child.name": "王子涵"}}
    )


async def _corrections_invalid_envelope(portal: Portal, gw: Gateway) -> Answer:
    app_id = await _correction_requested(portal, gw)
    return await _post(portal, _at(CORRECTIONS, app_id), {"changes": {"applicant.phone": "1380"}})


async def _withdrawn(portal: Portal, _gw: Gateway) -> Answer:
    app_id = await _started(portal)
    return await _post(portal, _at(WITHDRAWAL, app_id), {"reason": "申请人改为线下办理"})


async def _withdrawn_twice(portal: Portal, _gw: Gateway) -> Answer:
    app_id = (await portal.submit(NEWBORN)).json()["application_id"]
    assert (await _post(portal, _at(WITHDRAWAL, app_id))).status == 200
    return await _post(portal, _at(WITHDRAWAL, app_id))


async def _delivered(portal: Portal, gw: Gateway) -> Answer:
    app_id = await _completed(portal, gw)
    first = await _post(portal, _at(DELIVERY, app_id))
    assert first.status == 200, first.body
    return await _post(portal, _at(DELIVERY, app_id))  # again: idempotent


async def _delivery_not_completed(portal: Portal, _gw: Gateway) -> Answer:
    return await _post(portal, _at(DELIVERY, await _started(portal)))


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
    "200-view-just-accepted": (_view_just_accepted, "GET", ONE_APPLICATION, 200),
    "200-view-in-progress": (_view_in_progress, "GET", ONE_APPLICATION, 200),
    "200-view-correction-requested": (_view_correction_requested, "GET", ONE_APPLICATION, 200),
    "200-view-completed": (_view_completed, "GET", ONE_APPLICATION, 200),
    "404": (_not_found, "GET", ONE_APPLICATION, 404),
    "404-other-portal": (_other_portals, "GET", ONE_APPLICATION, 404),
    "202-corrections": (_corrected, "POST", CORRECTIONS, 202),
    "400-corrections-no-changes": (_corrections_without_changes, "POST", CORRECTIONS, 400),
    "404-corrections": (_corrections_unknown, "POST", CORRECTIONS, 404),
    "409-corrections-not-asked": (_corrections_not_asked, "POST", CORRECTIONS, 409),
    "422-corrections": (_corrections_invalid_envelope, "POST", CORRECTIONS, 422),
    "200-withdrawal": (_withdrawn, "POST", WITHDRAWAL, 200),
    "409-withdrawal-twice": (_withdrawn_twice, "POST", WITHDRAWAL, 409),
    "200-delivery": (_delivered, "POST", DELIVERY, 200),
    "409-delivery-not-completed": (_delivery_not_completed, "POST", DELIVERY, 409),
    "healthz": (_healthz, "GET", "/healthz", 200),
    "readyz": (_readyz, "GET", "/readyz", 200),
    "metrics": (_metrics, "GET", "/metrics", 200),
}


def _task(body: Mapping[str, Any], step: str) -> dict[str, Any]:
    [task] = [t for t in body["tasks"] if t["step"] == step]
    return cast(dict[str, Any], task)


@pytest.mark.broker
@pytest.mark.parametrize("name", list(CASES))
async def test_real_answer_matches_the_document(
    name: str, window: Portal, every_role: Gateway
) -> None:
    case, method, path, status = CASES[name]
    body = check_against_document(await case(window, every_role), method, path, status)
    if name == "202":
        assert body["location"].endswith(body["application_id"])
    if name == "422-invalid-envelope":  # the documented example is the real answer
        assert body == documented_example(path, method, 422, "invalid-envelope")
    if name == "metrics":
        assert 'gateway_intake_total{channel="http",outcome="202"} 1.0' in body
    if name == "200-view-in-progress":
        assert _task(body, "birth_certificate")["status"] == "dispatched"
        assert {t["status"] for t in body["tasks"][1:]} == {"waiting"}
        assert [e["kind"] for e in body["timeline"]] == ["application.accepted", "task.dispatched"]
    if name == "200-view-correction-requested":
        gaps = _task(body, "birth_certificate")["gaps"]
        assert gaps == [{"field": "subjects.child.name", "message": "与分娩记录中的姓名不一致"}]
    if name == "200-view-completed":
        assert [r["step"] for r in body["results"]] == [t["step"] for t in body["tasks"]]
        hukou = next(r for r in body["results"] if r["step"] == "hukou")
        assert hukou["provides"] == {"citizen_id": "431022202611200012"}
    if name == "202-corrections":
        rerun = _task(body, "birth_certificate")
        assert (body["status"], rerun["status"], rerun["attempt"]) == (
            "in_progress",
            "dispatched",
            2,
        )
    if name == "200-withdrawal":
        assert body["status"] == "withdrawn"
        assert {t["status"] for t in body["tasks"]} == {"cancelled"}
    if name == "200-delivery":
        assert body["status"] == "delivered"
        assert "results" in body


@pytest.mark.broker
@pytest.mark.parametrize(
    ("method", "path", "slug"),
    [
        ("GET", "/v1/no-such-route", "http-404"),
        ("PUT", APPLICATIONS, "http-405"),
        ("POST", "/v1/callbacks/provincial", "http-404"),  # no system of kind rest configured
        ("POST", "/v1/callbacks/hukou", "http-404"),
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


# --- the callback route of a rest system, live ----------------------------------------

PROVINCIAL_SECRET = "provincial-secret-0123456789"


@pytest.fixture
async def with_provincial(
    settings_for: Callable[..., Settings], database_url: str
) -> AsyncIterator[Gateway]:
    """A gateway with the provincial platform configured (kind rest), so intake serves
    ``POST /v1/callbacks/provincial``; its connector role is not run (nothing is sent)."""
    rest = SystemConfig(
        kind="rest",
        url="http://127.0.0.1:9/platform/v1",
        secret=PROVINCIAL_SECRET,
    )
    others = {  # every catalogue system needs a table; only their connectors are not run
        "hospital": SystemConfig(kind="filedrop"),
        "hukou": SystemConfig(kind="soap", url="http://127.0.0.1:9/hukou"),
        "cdc": SystemConfig(kind="amqp"),
    }
    gw = Gateway(
        settings_for(database_url, systems={"provincial": rest, **others}), roles=BASE_ROLES
    )
    await gw.start()
    yield gw
    await gw.stop(drain_seconds=2)


async def _callback(
    portal: Portal, event: Mapping[str, Any] | bytes, *, secret: str = PROVINCIAL_SECRET
) -> Answer:
    path = "/v1/callbacks/provincial"
    body = event if isinstance(event, bytes) else json.dumps(event, ensure_ascii=False).encode()
    key = "" if isinstance(event, bytes) else str(event.get("event_id", ""))
    stamp, nonce = str(int(time.time())), uuid.uuid4().hex
    headers = {
        "Content-Type": "application/json",
        "X-Client-Id": "provincial",
        "X-Timestamp": stamp,
        "X-Nonce": nonce,
        "X-Signature": sign(secret, stamp, nonce, "POST", path, key, body),
    }
    if key:
        headers["Idempotency-Key"] = key
    async with portal.session.post(portal.base_url + path, data=body, headers=headers) as resp:
        return Answer(resp.status, dict(resp.headers), await resp.read())


@pytest.mark.broker
async def test_a_rest_systems_callbacks_answer_as_documented(
    with_provincial: Gateway, session: aiohttp.ClientSession
) -> None:
    online = Portal(
        f"http://127.0.0.1:{with_provincial.http_port}", "online", ONLINE_SECRET, session
    )
    app_id = await _started(online, RETIREMENT)
    content = document()["paths"][CALLBACKS]["post"]["requestBody"]["content"]
    event = copy.deepcopy(content["application/json"]["examples"]["provincial-denied"]["value"])
    event["case"].update(
        request_id=f"{app_id}.file_review",
        application_ref=app_id,
        item_code="retirement_file_review",
    )

    refused = await _callback(online, event, secret="not-the-provincial-secret")
    check_against_document(refused, "POST", CALLBACKS, 401)
    broken = await _callback(online, {**event, "case": {**event["case"], "status": "LOST"}})
    body = check_against_document(broken, "POST", CALLBACKS, 422)
    assert [e["loc"] for e in body["errors"]] == ["case.status"]
    recorded = await _callback(online, event)
    check_against_document(recorded, "POST", CALLBACKS, 204)

    view = await _view_when(online, app_id, lambda v: v["status"] == "rejected")
    check_against_document(await online.show(app_id), "GET", ONE_APPLICATION, 200)
    review = _task(view, "file_review")
    assert (review["status"], review["reason"]) == ("denied", event["case"]["reason"])
