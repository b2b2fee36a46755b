"""OpenAPI 3 before / after: operations, parameters, bodies and answers.

operation (path + method, or webhook) removed         breaking    added: additive
parameter removed, or a new required one               breaking    new optional: additive
request body now required, a media type removed        breaking
a documented answer (status) removed                   breaking    added: additive
request schemas compared as ``request``, answers as ``response`` (see ``schema``); for a
webhook the other way round: its body is written by the document's owner (a department's
callback, read by the gateway) and its answer by the one receiving it
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.compat.report import Changes, Direction
from gateway.compat.schema import SchemaDiff, resolve

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def diff_openapi(out: Changes, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    for kind in ("paths", "webhooks"):
        old: Mapping[str, Any] = before.get(kind) or {}
        new: Mapping[str, Any] = after.get(kind) or {}
        for path, old_item in old.items():
            new_item = new.get(path)
            for method in METHODS:
                if method not in old_item:
                    continue
                where = f"{method.upper()} {path}" if kind == "paths" else f"webhook {path}"
                if new_item is None or method not in new_item:
                    out.breaking(where, "operation removed")
                    continue
                _operation(out, before, after, old_item, new_item, method, where, kind)
        for path, new_item in new.items():
            for method in METHODS:
                if method in new_item and (path not in old or method not in old[path]):
                    where = f"{method.upper()} {path}" if kind == "paths" else f"webhook {path}"
                    out.additive(where, "operation added")


def _operation(
    out: Changes,
    root_b: Mapping[str, Any],
    root_a: Mapping[str, Any],
    item_b: Mapping[str, Any],
    item_a: Mapping[str, Any],
    method: str,
    where: str,
    kind: str = "paths",
) -> None:
    op_b, op_a = item_b[method], item_a[method]
    sent: Direction = "request" if kind == "paths" else "response"
    answered: Direction = "response" if kind == "paths" else "request"
    params_b = _params(root_b, [*item_b.get("parameters", []), *op_b.get("parameters", [])])
    params_a = _params(root_a, [*item_a.get("parameters", []), *op_a.get("parameters", [])])
    for key, param in params_b.items():
        label = f"{where} {key[0]} parameter {key[1]}"
        if key not in params_a:
            out.breaking(label, "parameter removed")
            continue
        if params_a[key].get("required") and not param.get("required"):
            out.breaking(label, "parameter made required")
        SchemaDiff(out, root_b, root_a, sent).compare(
            param.get("schema"), params_a[key].get("schema"), label
        )
    for key, param in params_a.items():
        if key not in params_b:
            label = f"{where} {key[0]} parameter {key[1]}"
            if param.get("required"):
                out.breaking(label, "new required parameter")
            else:
                out.additive(label, "new optional parameter")
    body_b = _deref(root_b, op_b.get("requestBody"))
    body_a = _deref(root_a, op_a.get("requestBody"))
    if body_b and body_a:
        if body_a.get("required") and not body_b.get("required"):
            out.breaking(f"{where} body", "request body made required")
        _content(out, root_b, root_a, body_b, body_a, f"{where} body", sent)
    elif body_a and body_a.get("required"):
        out.breaking(f"{where} body", "request body now required")
    responses_b: Mapping[str, Any] = op_b.get("responses") or {}
    responses_a: Mapping[str, Any] = op_a.get("responses") or {}
    for status, resp in responses_b.items():
        label = f"{where} → {status}"
        if status not in responses_a:
            out.breaking(label, "documented answer removed")
            continue
        old, new = _deref(root_b, resp), _deref(root_a, responses_a[status])
        if old and new:
            _content(out, root_b, root_a, old, new, label, answered)
    for status in responses_a:
        if status not in responses_b:
            out.additive(f"{where} → {status}", "answer added")


def _content(
    out: Changes,
    root_b: Mapping[str, Any],
    root_a: Mapping[str, Any],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    where: str,
    direction: Direction,
) -> None:
    content_b: Mapping[str, Any] = old.get("content") or {}
    content_a: Mapping[str, Any] = new.get("content") or {}
    for media, spec in content_b.items():
        if media not in content_a:
            out.breaking(f"{where} {media}", "media type removed")
            continue
        SchemaDiff(out, root_b, root_a, direction).compare(
            spec.get("schema"), content_a[media].get("schema"), f"{where} {media}"
        )


def _params(root: Mapping[str, Any], params: list[Any]) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for p in params:
        p = _deref(root, p)
        if isinstance(p, Mapping) and "name" in p:
            found[(str(p.get("in")), str(p["name"]))] = p
    return found


def _deref(root: Mapping[str, Any], node: Any) -> Any:
    hops = 0
    while isinstance(node, Mapping) and "$ref" in node and hops < 20:
        ref = str(node["$ref"])
        if not ref.startswith("#"):
            return node
        node = resolve(root, ref)
        hops += 1
    return node
