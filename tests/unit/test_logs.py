"""Logging configuration: one stream for structlog and stdlib lines, reconfigurable although
structlog caches its loggers, context merged as structlog itself would."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import PurePosixPath

import pytest
import structlog
from structlog.testing import capture_logs

from gateway import masking
from gateway.logs import configure_logging, get_logger, merge_contextvars

log = get_logger("gateway.test_logs")


@pytest.fixture
def handlers() -> Iterator[list[logging.Handler]]:
    """Handlers installed by a test, removed after it."""
    installed: list[logging.Handler] = []
    yield installed
    for handler in installed:
        logging.getLogger().removeHandler(handler)


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_structlog_and_stdlib_lines_share_the_stream_the_fields_and_the_masking(
    handlers: list[logging.Handler],
) -> None:
    buffer = io.StringIO()
    handlers.append(configure_logging("json", stream=buffer, level=logging.INFO))
    with structlog.contextvars.bound_contextvars(application_id="app-1", system="hukou"):
        log.info("result_applied", kind="receipt", outcome=None, path=PurePosixPath("/in"))
        logging.getLogger("aiohttp.server").warning("peer %s said 13907351234", "x")
    first, second = _lines(buffer)
    assert first == {
        "application_id": "app-1",
        "event": "result_applied",
        "kind": "receipt",
        "level": "info",
        "logger": "gateway.test_logs",
        "outcome": None,
        "path": "PurePosixPath('/in')",  # what JSON does not know: its repr
        "system": "hukou",
        "timestamp": first["timestamp"],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", str(first["timestamp"]))
    assert second["event"] == "peer x said 139****1234"
    assert (second["level"], second["logger"]) == ("warning", "aiohttp.server")
    assert (second["application_id"], second["system"]) == ("app-1", "hukou")


def test_a_cached_logger_follows_each_new_configuration(handlers: list[logging.Handler]) -> None:
    first, second = io.StringIO(), io.StringIO()
    handlers.append(configure_logging("json", stream=first, level=logging.INFO))
    log.info("one")
    log.debug("hidden")
    handlers.append(configure_logging("json", stream=second, level=logging.DEBUG))
    log.debug("two")
    assert [line["event"] for line in _lines(first)] == ["one"]
    assert [line["event"] for line in _lines(second)] == ["two"]
    assert logging.getLogger().handlers.count(handlers[0]) == 0  # replaced, not added


def test_a_removed_handler_gets_no_more_lines(handlers: list[logging.Handler]) -> None:
    buffer = io.StringIO()
    handler = configure_logging("json", stream=buffer, level=logging.INFO)
    log.info("before")
    logging.getLogger().removeHandler(handler)
    log.warning("after")  # stdlib's own fallback now (stderr), not the old buffer
    assert [line["event"] for line in _lines(buffer)] == ["before"]


def test_capture_logs_sees_a_cached_logger_after_reconfiguration(
    handlers: list[logging.Handler],
) -> None:
    buffer = io.StringIO()
    handlers.append(configure_logging("json", stream=buffer, level=logging.INFO))
    log.info("cached")
    handlers.append(configure_logging("json", stream=buffer, level=logging.INFO))
    with capture_logs() as logs:
        log.warning("captured", n=1)
    assert [(e["event"], e["log_level"]) for e in logs] == [("captured", "warning")]
    assert [line["event"] for line in _lines(buffer)] == ["cached"]


def test_console_lines_are_masked_tracebacks_included(handlers: list[logging.Handler]) -> None:
    buffer = io.StringIO()
    handlers.append(configure_logging("console", stream=buffer, level=logging.INFO))
    with masking.personal_data(["刘芳"]):
        try:
            raise ValueError("bad record for 刘芳 431022199203150421")
        except ValueError:
            log.exception("failed", mother_name="刘芳", applicant_phone="13907351234")
    text = buffer.getvalue()
    assert "failed" in text and "139****1234" in text and "刘*" in text
    assert "ValueError: bad record for 刘* 4310**********0421" in text
    assert "刘芳" not in text and "431022199203150421" not in text and "13907351234" not in text


def test_merge_contextvars_gives_what_structlogs_own_gives() -> None:
    def both(event: dict[str, object]) -> tuple[object, object]:
        ours = merge_contextvars(None, "info", dict(event))
        theirs = structlog.contextvars.merge_contextvars(None, "info", dict(event))
        return ours, theirs

    def in_a_fresh_context() -> None:
        structlog.contextvars.bind_contextvars(application_id="a", task_id="t", system="s")
        structlog.contextvars.unbind_contextvars("task_id")
        ours, theirs = both({"event": "x", "system": "from the call"})
        assert ours == theirs == {"event": "x", "application_id": "a", "system": "from the call"}

    def in_another_context() -> None:
        structlog.contextvars.clear_contextvars()
        assert both({"event": "y"}) == ({"event": "y"}, {"event": "y"})

    contextvars.copy_context().run(in_a_fresh_context)
    contextvars.copy_context().run(in_another_context)  # nothing of the first one shows


def test_a_stream_that_fails_does_not_fail_the_caller(
    handlers: list[logging.Handler], monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = io.StringIO()
    handlers.append(configure_logging("json", stream=buffer, level=logging.INFO))
    buffer.close()
    monkeypatch.setattr(logging, "raiseExceptions", False)  # no "--- Logging error ---" noise
    log.info("lost")  # no ValueError (I/O on a closed file) reaches the caller
