"""The bench's plans: what issue 6 asks of the full run, and a quick run that still runs
every part (no timing here: speed is the bench's business)."""

from __future__ import annotations

import pytest

from gateway.bench.push_figures import TASKS_PER_NEWBORN
from gateway.bench.run import FULL, QUICK, postgres_error, push_stores


def test_the_full_backlog_is_issue_6s_50000_tasks() -> None:
    assert FULL.push_backlog * TASKS_PER_NEWBORN == 50_000
    assert FULL.push().backlog == FULL.push_backlog


def test_the_full_steady_run_is_ten_minutes_sampled_every_ten_seconds() -> None:
    push = FULL.push()
    assert push.steady_seconds == 600.0
    assert push.steady_sample_seconds == 10.0
    assert push.steady_window_seconds == 60.0  # first minute against last minute


def test_the_quick_plan_keeps_every_phase_short_but_present() -> None:
    push = QUICK.push()
    assert 0 < push.steady_seconds <= 30
    assert push.level_seconds > 0
    assert push.backlog > 0
    # at least two samples in each growth window, or growth is one sample against another
    assert push.steady_window_seconds >= 2 * push.steady_sample_seconds
    assert push.steady_seconds >= 2 * push.steady_window_seconds


@pytest.mark.parametrize(
    ("option", "stores"),
    [("both", ("sqlite", "postgresql")), ("sqlite", ("sqlite",)),
     ("postgresql", ("postgresql",))],
)  # fmt: skip
def test_the_store_option_picks_the_pushes(option: str, stores: tuple[str, ...]) -> None:
    assert push_stores(option) == stores


def test_an_unknown_store_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="sqlite, postgresql or both"):
        push_stores("mysql")


def test_the_postgresql_error_names_the_url_without_its_password_and_the_way_out() -> None:
    message = postgres_error("postgresql://bench:s3cret@db.example:5432/test", "refused")
    assert "postgresql://bench:***@db.example:5432/test" in message
    assert "s3cret" not in message
    assert "--store sqlite" in message and "refused" in message
