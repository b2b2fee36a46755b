"""problem+json responses for aiohttp handlers."""

from __future__ import annotations

from aiohttp import web

from gateway.problems import CONTENT_TYPE as PROBLEM_JSON
from gateway.problems import Problem


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=problem.status,
        body=problem.to_bytes(),
        content_type=PROBLEM_JSON,
        headers=headers,
    )
