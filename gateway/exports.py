"""Artefacts generated from the code and checked in; tests fail when they drift.

* ``contracts/envelope/envelope.schema.json`` from the envelope model;
* ``deploy/rabbitmq/definitions.json`` from the topology, plus the ``guest`` user the
  compose file's broker needs (definitions loaded at boot replace the default user).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from gateway.broker.topology import build_topology, definitions
from gateway.envelope.schema import envelope_json_schema
from gateway.settings import Settings

ENVELOPE_SCHEMA = Path("contracts/envelope/envelope.schema.json")
DEFINITIONS = Path("deploy/rabbitmq/definitions.json")
_FIXED_SALT = b"\x1f\x0e\x9a\x42"  # deterministic output; it is the public demo password


def rabbit_password_hash(password: str, salt: bytes = _FIXED_SALT) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + pw))."""
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def broker_definitions(settings: Settings) -> dict[str, Any]:
    topology = build_topology(
        delivery_limit=settings.broker.delivery_limit, max_length=settings.broker.max_queue_length
    )
    defs = definitions(topology)
    defs["users"] = [
        {
            "name": "guest",
            "password_hash": rabbit_password_hash("guest"),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": ["administrator"],
        }
    ]
    defs["permissions"] = [
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
    ]
    return defs


def render(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def export_all(root: Path, settings: Settings) -> list[Path]:
    written = []
    for rel, content in (
        (ENVELOPE_SCHEMA, envelope_json_schema()),
        (DEFINITIONS, broker_definitions(settings)),
    ):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(content), encoding="utf-8")
        written.append(path)
    return written
