"""RFC 9457 problem details: every error response of the HTTP API, one shape."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://one-window.example/problems/"


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    slug: str  # becomes the ``type`` URI; stable, documented in contracts/intake/openapi.yaml
    title: str
    detail: str
    errors: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = [dict(e) for e in self.errors]
        body.update(self.extra)
        return body

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True).encode()
