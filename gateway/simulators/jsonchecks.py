"""The JSON simulators' schema validators, with a compiled check in front.

The provincial and CDC simulators say what is wrong with a request in jsonschema's own terms
(its errors' paths, keywords and values), so jsonschema stays the validator. But almost every
request is valid, and jsonschema interprets the schema per keyword and per subschema on each
one: ``Prechecked`` asks the gateway's compiled check (``connectors.schema_compile``, held to
jsonschema's answers by its tests) first and hands a request to jsonschema only when that check
says it is invalid. A schema the compiler does not do goes to jsonschema every time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from referencing import Registry

from connectors.schema_compile import CompiledSchema, schema_check

__all__ = ["Prechecked"]


class Prechecked:
    """``validator`` (a jsonschema validator of ``schema``) whose ``iter_errors`` yields nothing,
    without running it, for an instance the compiled check finds valid."""

    __slots__ = ("_valid", "validator")

    def __init__(
        self,
        validator: Any,
        schema: Any,
        registry: Registry[Any] | None = None,
        format_checker: Any = None,
    ) -> None:
        self.validator = validator
        check = schema_check(schema, registry, format_checker)
        self._valid = check.is_valid if isinstance(check, CompiledSchema) else None

    def iter_errors(self, instance: object) -> Iterator[Any]:
        if self._valid is not None and self._valid(instance):
            return iter(())
        return iter(self.validator.iter_errors(instance))
