"""The load generator: signed ``POST /v1/applications`` from a process of its own.

It runs apart from the gateway so that the CPU each side spends is measured apart (and the
gateway's event loop does not share its core with the client's). The parent hands it a
``LoadSpec`` as JSON on stdin; it answers a ``LoadResult`` as JSON on stdout.

    closed loop   ``connections`` workers, each sending its next request when the last
                  answered, for ``seconds`` (the first ``warm_up_seconds`` not counted) or
                  until ``count`` requests are sent
    open loop     requests started at ``rate`` per second whatever the answers do (at most
                  ``connections`` in flight), for ``seconds``

Every request has its own idempotency key and nonce and is signed as DESIGN says; with
``more_bodies`` the requests take ``body`` and those in turn. For each
202 it keeps (application id, wall-clock time of the answer), so a watcher on ``gw.events``
can time the rest of the application's way on the same clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from gateway.bench.processes import peak_rss_kb
from gateway.signing import signed_headers

PATH = "/v1/applications"


@dataclass(frozen=True, slots=True)
class LoadSpec:
    url: str  # base URL, e.g. http://127.0.0.1:8080
    portal_id: str
    secret: str
    body: str  # the envelope, as sent
    connections: int
    seconds: float
    warm_up_seconds: float = 0.5
    rate: float | None = None  # None: closed loop
    count: int | None = None  # closed loop: stop after this many requests
    keep_accepted: bool = False  # collect (application id, answered at) of every 202
    more_bodies: tuple[str, ...] = ()  # sent in turn with ``body``, request by request


@dataclass(slots=True)
class LoadResult:
    sent: int = 0  # requests answered, warm-up included
    counted: int = 0  # answered inside the measuring window
    counted_ok: int = 0  # … with 202
    window_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # this process, user + system, over the whole run
    peak_rss_kb: int = 0
    accepted: list[tuple[str, float]] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)  # request → answer, counted ones

    @property
    def per_second(self) -> float:
        return self.counted / self.window_seconds if self.window_seconds > 0 else 0.0

    @property
    def ok_per_second(self) -> float:
        return self.counted_ok / self.window_seconds if self.window_seconds > 0 else 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadResult:
        data["accepted"] = [(str(a), float(t)) for a, t in data.get("accepted", [])]
        return cls(**data)


class _Run:
    def __init__(self, spec: LoadSpec, session: aiohttp.ClientSession) -> None:
        self.spec = spec
        self.session = session
        self.bodies = [body.encode() for body in (spec.body, *spec.more_bodies)]
        self.result = LoadResult()
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.prefix = f"bench-{os.getpid()}-{os.urandom(3).hex()}"
        self.serial = 0
        loop = asyncio.get_running_loop()
        self.start = loop.time()
        self.window_from = self.start + spec.warm_up_seconds
        self.end = self.window_from + spec.seconds

    async def one(self) -> None:
        self.serial += 1
        key = f"{self.prefix}-{self.serial}"
        body = self.bodies[self.serial % len(self.bodies)]
        headers = signed_headers(self.spec.portal_id, self.spec.secret, "POST", PATH, body, key)
        headers["Content-Type"] = "application/json"
        loop = asyncio.get_running_loop()
        began = loop.time()
        status = "error"
        app_id = None
        try:
            async with self.session.post(self.spec.url + PATH, data=body, headers=headers) as r:
                payload = await r.read()
                status = str(r.status)
                if r.status == 202 and self.spec.keep_accepted:
                    app_id = json.loads(payload)["application_id"]
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
        answered = loop.time()
        self.result.sent += 1
        self.statuses[status] += 1
        if app_id is not None:
            self.result.accepted.append((app_id, time.time()))
        if self.window_from <= answered <= self.end:
            self.result.counted += 1
            self.result.counted_ok += status == "202"
            self.result.latency_ms.append((answered - began) * 1000)

    async def closed(self) -> None:
        loop = asyncio.get_running_loop()

        limit = self.spec.count if self.spec.count is not None else 1 << 62

        async def worker() -> None:
            while loop.time() < self.end and self.serial < limit:
                await self.one()

        await asyncio.gather(*(worker() for _ in range(self.spec.connections)))

    async def open(self, rate: float) -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(self.spec.connections)
        tasks: set[asyncio.Task[None]] = set()

        async def limited() -> None:
            async with gate:
                await self.one()

        n = 0
        while True:
            due = self.start + n / rate
            if due >= self.end:
                break
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            task = asyncio.create_task(limited())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.wait(tasks)


async def generate(spec: LoadSpec) -> LoadResult:
    cpu0 = _cpu()
    connector = aiohttp.TCPConnector(limit=spec.connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        run = _Run(spec, session)
        if spec.rate is None:
            await run.closed()
        else:
            await run.open(spec.rate)
    result = run.result
    result.window_seconds = spec.seconds
    result.statuses = dict(run.statuses)
    result.errors = dict(run.errors)
    result.cpu_seconds = _cpu() - cpu0
    result.peak_rss_kb = peak_rss_kb()
    return result


async def run_load(spec: LoadSpec) -> LoadResult:
    """``spec`` run in a child process (this module as ``__main__``)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.bench.loadgen",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate(json.dumps(asdict(spec)).encode())
    if child.returncode != 0:
        raise RuntimeError(f"the load generator failed (exit status {child.returncode})")
    return LoadResult.from_json(json.loads(out))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    data = json.loads(sys.stdin.buffer.read())
    spec = LoadSpec(**data | {"more_bodies": tuple(data.get("more_bodies", ()))})
    result = asyncio.run(generate(spec))
    data = asdict(result)
    sys.stdout.write(json.dumps(data))


if __name__ == "__main__":
    main()
