"""Every mapping's output for every example envelope meets its department's contract, checked
by validators independent of the code that produced it:

    hukou       the SOAP body zeep serialises from the packaged WSDL, against hukou.xsd (lxml)
    hospital    the request file, against request.xsd (lxml)
    cdc         the queue message, against request.schema.json (jsonschema)
    provincial  the POST /cases body, against openapi.yaml and the item's schema (jsonschema,
                read through openapi-spec-validator's reader)
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from lxml import etree
from zeep import Client, Settings

from tests.contract.department_output import ROOT, Task, output, tasks
from tests.unit.test_mapping_provincial import contract as provincial_contract

CONTRACTS = ROOT / "contracts"
HUKOU_NS = "urn:cn:gov:police:hukou:2026"
SOAP_BODY = "{http://schemas.xmlsoap.org/soap/envelope/}Body"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
TASKS = list(tasks())


@cache
def xsd(path: str) -> Any:
    return etree.XMLSchema(etree.parse(str(CONTRACTS / path), PARSER))


@cache
def hukou_service() -> tuple[Any, Any]:
    client = Client(str(CONTRACTS / "hukou" / "hukou.wsdl"), settings=Settings(strict=True))
    return client, client.create_service(f"{{{HUKOU_NS}}}HukouBinding", "http://127.0.0.1:9/")


@cache
def cdc_request() -> Draft202012Validator:
    schema = json.loads((CONTRACTS / "cdc" / "request.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def contract_errors(task: Task) -> list[str]:
    body = output(task.request)
    system = task.request.system
    if system == "hukou":
        [(operation, params)] = body.items()
        client, service = hukou_service()
        try:
            message = client.create_message(service, operation, **params)
        except TypeError as exc:  # zeep: an element the WSDL's schema does not have
            return [str(exc)]
        element = copy.deepcopy(message.find(SOAP_BODY)[0])
        schema = xsd("hukou/hukou.xsd")
        return [] if schema.validate(element) else [str(e) for e in schema.error_log]
    if system == "hospital":
        schema = xsd("hospital/request.xsd")
        ok = schema.validate(etree.fromstring(body, PARSER))
        return [] if ok else [str(e) for e in schema.error_log]
    if system == "cdc":
        return [e.message for e in cdc_request().iter_errors(body)]
    if system == "provincial":
        return provincial_contract().request(body)
    return [f"no contract check for {system}"]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_mapping_output_meets_the_department_contract(task: Task) -> None:
    errors = contract_errors(task)
    assert errors == [], (
        f"department {task.request.system}: mappings/{task.request.system}.py "
        f"({task.request.operation}) for example {task.example} breaks the contract: {errors}"
    )


def test_every_system_and_every_example_is_covered() -> None:
    systems = {t.request.system for t in TASKS}
    assert systems == {"hospital", "hukou", "cdc", "provincial"}
    examples = {t.example for t in TASKS}
    assert examples == {p.stem for p in (ROOT / "contracts/envelope/examples/valid").glob("*.json")}
