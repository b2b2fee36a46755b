"""A bounded thread pool of one's own for blocking file work.

``asyncio.to_thread`` runs on the loop's default executor, which every part of a process shares
(zeep's SOAP sends, SQLite, DNS): under load a file drop's fsyncs queue behind them and they
behind the fsyncs. A ``FileThreads`` keeps a part's blocking work on its own threads, runs each
call in a copy of the caller's context (as ``to_thread`` does: the log context travels), and is
shut down by its owner's ``close``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class FileThreads:
    """``await threads.run(fn, *args)``: ``fn`` on one of ``size`` threads named ``name-N``."""

    def __init__(self, size: int, *, name: str) -> None:
        self.size = max(1, size)
        self._pool = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn`` on the pool's threads, waiting for it here (from code that is not async)."""
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        """Refuse new work and let the threads end once what they run now is done (a call
        cancelled by its caller still finishes its file operation: never half a move)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
