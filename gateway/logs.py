"""structlog configured once: JSON lines in deployment, readable lines in a terminal.

Standard-library loggers (aiohttp, pika) go through the same processors, so the masking
processor sees every line, tracebacks included. Context (application id, portal, task,
system) is bound per request or message with ``structlog.contextvars``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

from gateway import masking


def _pre_chain() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto",
    *,
    stream: TextIO | None = None,
    level: int = logging.INFO,
) -> logging.Handler:
    """Route structlog and stdlib logging to ``stream`` (stderr); return the handler."""
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False, sort_keys=True)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=_plain)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            masking.structlog_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_gateway", False):
            root.removeHandler(old)
    handler._gateway = True  # type: ignore[attr-defined]  # marks our handler for reconfiguration
    root.addHandler(handler)
    root.setLevel(level)
    # No renderer here prints a record's process, thread or multiprocessing name: not
    # looking them up makes every record cheaper (a process-wide switch of the logging module).
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    # Nor a record's file, line or function: None here is the logging module's own switch
    # that skips findCaller (a walk up the stack for every record, structlog's included).
    logging._srcfile = None
    # pika logs every lost connection as a series of ERRORs; the broker client reports the
    # same events once, as broker_connection_lost / broker_ready with the retry delay.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    structlog.configure(
        processors=[*_pre_chain(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,  # the processors above never change once configured
    )
    return handler


def _plain(sio: TextIO, exc_info: Any) -> None:
    """Tracebacks are already rendered (and masked) by ``format_exc_info``."""


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
