"""``gateway dlq replay --all`` replays the letters parked when it starts, and stops there:
a replay that dies again parks a new letter, which must not be replayed by the same command
(round after round, for ever). Real store, both databases; the broker is a function that
parks a new letter for every message it is given, as a department still down would."""

from __future__ import annotations

import argparse
import time
import types

from gateway.admin import cli
from gateway.admin.auth import ROLES, Operator
from gateway.admin.desk import Desk
from gateway.broker.messages import Message
from gateway.store import Store, operators_of
from gateway.store.letters import LetterFilter, LetterStatus
from tests.store.test_operators import letter

LEAD = Operator("lead", frozenset(ROLES), frozenset())


async def test_replay_all_stops_at_the_letters_parked_when_it_started(store: Store) -> None:
    for n in range(3):
        await store.add_dead_letter(
            letter(n, exchange="gw.accepted", system=None, matter=None, reason="died"), 1.0
        )
    dying = iter(range(100, 110))

    async def publish(exchange: str, routing_key: str, message: Message) -> None:
        n = next(dying)  # the message dies again: a new letter, a new id
        again = letter(n, exchange="gw.accepted", system=None, matter=None, reason="died")
        await store.add_dead_letter(again, time.time())

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["dlq", "replay", "--all", "--reason", "back", "--limit", "1"])
    settings = types.SimpleNamespace(timezone="Asia/Shanghai")
    code = await cli._replay(args, Desk(store, publish), LEAD, settings)  # type: ignore[arg-type]
    assert code == 0
    ops = operators_of(store)
    replayed = await ops.letters(LetterFilter(status=LetterStatus.REPLAYED))
    parked = await ops.letters(LetterFilter())
    assert sorted(x.record.letter.message_id for x in replayed) == ["m0", "m1", "m2"]
    assert sorted(x.record.letter.message_id for x in parked) == ["m100", "m101", "m102"]
