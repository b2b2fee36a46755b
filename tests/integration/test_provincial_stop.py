"""The provincial simulator's stop ends every decision still under way, also one whose case
already left memory (a retention of 0 drops it as soon as it is held, before its callback is
answered): nothing of it runs on after the simulator is stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from connectors.rest import RestConnector
from gateway.simulators.behaviour import Behaviour
from gateway.simulators.ledger import EffectLedger
from gateway.simulators.provincial import ProvincialSimulator
from tests.integration.test_provincial import BASE_PATH, CALLBACK_PATH, config, serve
from tests.support.waiting import eventually
from tests.unit.test_mapping_provincial import fixture_request


def _deciding() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "ProvincialSimulator._decide"
    ]


async def test_stop_ends_a_callback_still_tried_for_a_case_gone_from_memory(
    tmp_path: Path,
) -> None:
    refused: list[bytes] = []

    async def refuse(request: web.Request) -> web.Response:
        refused.append(await request.read())
        return web.Response(status=503)  # the gateway is busy: the platform tries again

    sink, sink_url = await serve([web.post(CALLBACK_PATH, refuse)])
    ledger = EffectLedger(tmp_path / "ledger.sqlite3")
    simulator = ProvincialSimulator(
        config(f"http://127.0.0.1:0{BASE_PATH}"), Behaviour(seed=7), ledger, None,
        callback_attempts=100, callback_backoff_seconds=0.05, retain=0,
    )  # fmt: skip
    await simulator.start()
    connector = RestConnector(
        "provincial", config(simulator.url), callback_url=sink_url + CALLBACK_PATH
    )
    try:
        await connector.send(fixture_request("retirement.file_review"))

        async def called_back() -> bool:
            return bool(refused)

        assert await eventually(called_back)  # decided; its callback is tried again
        assert len(_deciding()) == 1
    finally:
        await connector.close()
        await simulator.stop()
        left = [t for t in _deciding() if not t.done()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        await sink.cleanup()
        ledger.close()
    assert left == []
