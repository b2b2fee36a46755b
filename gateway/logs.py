"""structlog configured once: JSON lines in deployment, readable lines in a terminal.

Two paths, one set of processors and one stream:

* the gateway's own ``structlog`` calls are rendered by structlog and written straight to
  the handler's stream (under the handler's lock), without a ``logging.LogRecord`` or a
  ``Formatter`` per line; a call below the level is dropped before any processor runs;
* standard-library loggers (aiohttp, pika) go through the same handler, whose
  ``ProcessorFormatter`` runs the same processors.

Either way the masking processor sees every line, tracebacks included. Context (application
id, portal, task, system) is bound per request or message with ``structlog.contextvars``.

structlog's configuration never changes after the first call (loggers are cached on first
use, processors and all): what ``configure_logging`` changes (stream, format, level) lives
in the handler it installs, which the cached loggers look up on every line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, Literal, TextIO

import structlog

from gateway import masking

_ROOT = logging.getLogger()


class GatewayHandler(logging.StreamHandler[TextIO]):
    """The root handler: writes stdlib records through its ``ProcessorFormatter`` and the
    gateway's own lines (already rendered) straight to its stream."""

    def __init__(self, stream: TextIO, renderer: Any) -> None:
        super().__init__(stream)
        self.render = renderer

    def write_line(self, line: str) -> None:
        try:
            with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
                self.stream.write(line + "\n")
                self.stream.flush()  # as StreamHandler does: a crash loses no line written
        except Exception:  # as Handler.emit: a failed write never fails the caller's work
            self.handleError(logging.makeLogRecord({"msg": line}))


class _Installed:
    """The handler structlog lines go to (the last one ``configure_logging`` installed)."""

    handler: GatewayHandler | None = None


def _now() -> str:
    """UTC time to the microsecond, ``2026-11-28T17:29:00.761282Z``; the seconds part is
    formatted once per second, not per line."""
    t = time.time()
    second = int(t)
    last_second, prefix = _last_second
    if second != last_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _set_last_second(second, prefix)
    return f"{prefix}.{int((t - second) * 1_000_000):06d}Z"


_last_second: tuple[int, str] = (-1, "")


def _set_last_second(second: int, prefix: str) -> None:
    global _last_second  # one tuple, replaced whole: a thread reads an old or a new one
    _last_second = (second, prefix)


def merge_contextvars(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``structlog.contextvars.merge_contextvars`` without copying the whole context: asks
    only the variables ``bind_contextvars`` made (structlog keeps them in one dict), not every
    variable of every library in the context. A test holds the two to the same result."""
    for name, var in _STRUCTLOG_VARS.items():
        value = var.get()
        if value is not Ellipsis:  # unbound (structlog's marker for an unset key)
            event_dict.setdefault(name[_PREFIX_LEN:], value)
    return event_dict


_STRUCTLOG_VARS: dict[str, ContextVar[Any]] = structlog.contextvars._CONTEXT_VARS
_PREFIX_LEN = len(structlog.contextvars.STRUCTLOG_KEY_PREFIX)


def add_timestamp(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict["timestamp"] = _now()
    return event_dict


def _render(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The installed handler's renderer (JSON or console), chosen per line."""
    handler = _Installed.handler
    return (handler.render if handler is not None else _JSON)(logger, method, event_dict)


class JsonLines:
    """One JSON object per line, keys sorted, non-ASCII kept; the encoder is built once
    (``json.dumps`` with options builds one per call). Values JSON does not know are
    written as their ``repr``, as structlog's ``JSONRenderer`` does."""

    def __init__(self) -> None:
        self._encode = json.JSONEncoder(
            ensure_ascii=False, sort_keys=True, default=_json_fallback
        ).encode

    def __call__(self, _logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> str:
        return self._encode(event_dict)


def _json_fallback(obj: Any) -> Any:
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


_JSON = JsonLines()  # before any configure_logging (never, in practice)


class _Named:
    """What structlog wraps: a name, the stdlib logger of that name (for its level), and the
    installed handler to write to."""

    __slots__ = ("name", "stdlib")

    def __init__(self, name: str) -> None:
        self.name = name
        self.stdlib = logging.getLogger(name)

    def write(self, level: int, line: str) -> None:
        handler = _Installed.handler
        if handler is not None and handler in _ROOT.handlers:
            handler.write_line(line)
        else:  # our handler was removed (a test's capture ended): whatever stdlib does now
            self.stdlib.log(level, line)


def _named(*args: Any) -> _Named:
    return _Named(str(args[0]) if args else "")


class GatewayLogger(structlog.BoundLoggerBase):
    """The gateway's bound logger: ``debug`` … ``exception`` with key-value fields, checked
    against the stdlib logger's level before any processor runs."""

    _logger: _Named

    def _emit(self, method: str, level: int, event: str, kw: dict[str, Any]) -> None:
        if not self._logger.stdlib.isEnabledFor(level):
            return
        try:
            args, _ = self._process_event(method, event, kw)
        except structlog.DropEvent:
            return
        self._logger.write(level, args[0])

    def debug(self, event: str, **kw: Any) -> None:
        self._emit("debug", logging.DEBUG, event, kw)

    def info(self, event: str, **kw: Any) -> None:
        self._emit("info", logging.INFO, event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._emit("warning", logging.WARNING, event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._emit("error", logging.ERROR, event, kw)

    def exception(self, event: str, **kw: Any) -> None:
        kw.setdefault("exc_info", True)
        self._emit("error", logging.ERROR, event, kw)

    def critical(self, event: str, **kw: Any) -> None:
        self._emit("critical", logging.CRITICAL, event, kw)


def _pre_chain() -> list[Any]:
    """What every line gets before masking: context, level, logger name, time."""
    return [
        merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        add_timestamp,
    ]


def _tail() -> list[Any]:
    """Tracebacks rendered, then everything masked (the traceback included)."""
    return [structlog.processors.format_exc_info, masking.structlog_processor]


# One list for good: cached loggers hold it, and structlog.testing.capture_logs edits it in place.
_PROCESSORS: list[Any] = [*_pre_chain(), *_tail(), _render]


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
        JsonLines()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=_plain)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_tail(),
            renderer,
        ],
    )
    handler = GatewayHandler(out, renderer)
    handler.setFormatter(formatter)
    for old in list(_ROOT.handlers):
        if isinstance(old, GatewayHandler):
            _ROOT.removeHandler(old)
    _ROOT.addHandler(handler)
    _ROOT.setLevel(level)
    _Installed.handler = handler
    # No renderer here prints a record's process, thread or multiprocessing name: not
    # looking them up makes every record cheaper (a process-wide switch of the logging module).
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    # Nor a record's file, line or function: None here is the logging module's own switch
    # that skips findCaller (a walk up the stack for every record).
    logging._srcfile = None
    # pika logs every lost connection as a series of ERRORs; the broker client reports the
    # same events once, as broker_connection_lost / broker_ready with the retry delay.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    structlog.configure(
        processors=_PROCESSORS,
        logger_factory=_named,
        wrapper_class=GatewayLogger,
        cache_logger_on_first_use=True,  # nothing above changes once configured
    )
    return handler


def _plain(sio: TextIO, exc_info: Any) -> None:
    """Tracebacks are already rendered (and masked) by ``format_exc_info``."""


def get_logger(name: str) -> GatewayLogger:
    logger: GatewayLogger = structlog.get_logger(name)
    return logger
