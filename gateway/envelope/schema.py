"""The envelope's JSON Schema (Draft 2020-12), the contract published for portals.

``contracts/envelope/envelope.schema.json`` is generated from the models by ``write_schema``
and checked in; a unit test fails when the models and the checked-in file drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from gateway.envelope.model import ENVELOPE_ADAPTER, SCHEMA_VERSION

__all__ = ["SCHEMA_ID", "envelope_json_schema", "render_schema", "write_schema"]

SCHEMA_ID: Final = f"urn:one-window-gateway:contracts:envelope:{SCHEMA_VERSION}"
_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def envelope_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``Envelope`` with ``$schema``, ``$id`` and ``title`` set."""
    schema = ENVELOPE_ADAPTER.json_schema()
    return {
        "$schema": _DIALECT,
        "$id": SCHEMA_ID,
        "title": f"One-window application envelope {SCHEMA_VERSION}",
        **schema,
    }


def render_schema() -> str:
    """Deterministic text of the schema: sorted keys, indent 2, UTF-8 kept, final newline."""
    return json.dumps(envelope_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schema(path: Path | str) -> Path:
    """Write the schema to ``path`` (UTF-8) and return the path."""
    target = Path(path)
    target.write_text(render_schema(), encoding="utf-8")
    return target
