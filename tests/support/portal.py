"""A portal as the tests play it: signed HTTP requests to a running gateway."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import aiohttp

from gateway.signing import signed_headers


def example(name: str, kind: str = "valid") -> bytes:
    path = resources.files("contracts") / "envelope" / "examples" / kind / f"{name}.json"
    return path.read_bytes()


def example_json(name: str, kind: str = "valid") -> dict[str, Any]:
    data: dict[str, Any] = json.loads(example(name, kind))
    return data


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Portal:
    base_url: str
    portal_id: str
    secret: str
    session: aiohttp.ClientSession
    extra_headers: dict[str, str] = field(default_factory=dict)

    async def submit(self, body: bytes, key: str | None = "auto", **kw: Any) -> Answer:
        if key == "auto":
            key = f"k-{uuid.uuid4()}"
        return await self.request("POST", "/v1/applications", body, key, **kw)

    async def show(self, application_id: str) -> Answer:
        return await self.request("GET", f"/v1/applications/{application_id}", b"", None)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes,
        key: str | None,
        *,
        secret: str | None = None,
        now: float | None = None,
        nonce: str | None = None,
        headers: dict[str, str] | None = None,
        sign_path: str | None = None,
        sign_body: bytes | None = None,
    ) -> Answer:
        signed = signed_headers(
            self.portal_id,
            secret or self.secret,
            method,
            sign_path or path,
            body if sign_body is None else sign_body,
            key,
            now=now,
            nonce=nonce,
        )
        all_headers = {
            "Content-Type": "application/json",
            **signed,
            **self.extra_headers,
            **(headers or {}),
        }
        async with self.session.request(
            method, self.base_url + path, data=body, headers=all_headers
        ) as resp:
            return Answer(resp.status, dict(resp.headers), await resp.read())
