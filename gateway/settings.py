"""The one settings object, read once at the edge.

Sources, strongest first: ``GATEWAY_*`` environment variables (nested keys joined with
``__``, e.g. ``GATEWAY_SYSTEMS__HUKOU__URL``), then the TOML file given with ``--config``
(or ``GATEWAY_CONFIG``), then the defaults below. Nothing else in the package reads the
environment; everything else receives a typed ``Settings`` (or a part of it).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.errors import ConfigurationError

SystemKind = Literal["soap", "rest", "filedrop", "amqp"]
OperatorRole = Literal["view", "replay", "edit", "purge", "unmask"]
Role = str
BASE_ROLES: tuple[Role, ...] = (
    "intake",
    "orchestrator",
    "relay",
    "deadletters",
    "webhooks",
    "scheduler",
)
"""Roles every gateway has; each configured system adds ``connector:<system>``."""

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PortalConfig(_Section):
    """``[portals.<id>]``: an upstream portal allowed to submit applications."""

    secret: SecretStr = Field(min_length=16)
    previous_secret: SecretStr | None = None  # accepted too while a rotation is under way
    amqp_user: str | None = None  # the broker user this portal publishes to gw.intake as
    webhook_url: str | None = None


class OperatorConfig(_Section):
    """``[operators.<name>]``: a person or tool using the admin API and CLI."""

    token: SecretStr | None = Field(default=None, min_length=16)
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")  # hex digest
    roles: frozenset[OperatorRole] = frozenset({"view"})
    systems: frozenset[str] = frozenset()  # empty: every system

    @model_validator(mode="after")
    def _one_token(self) -> OperatorConfig:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give token or token_sha256 (the token's SHA-256, hex), not both")
        return self


class RetryPolicy(_Section):
    """``[systems.<name>.retry]``: how a transient failure is retried
    (``gateway.orchestration.retries``). ``ladder`` lists the broker delay queues' waits in
    seconds (``gw.retry.<level>``); a task waits in the longest one not above its backoff."""

    attempts: int = Field(default=20, ge=1, le=100)  # tries in all: ~16 min of outage (median)
    quick_attempts: int = Field(default=3, ge=1, le=10)  # of these, made in process
    initial_seconds: float = Field(default=1.0, gt=0)
    max_seconds: float = Field(default=300.0, gt=0)
    ladder: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 300.0)

    @field_validator("ladder")
    @classmethod
    def _ladder_of_whole_milliseconds(cls, ladder: tuple[float, ...]) -> tuple[float, ...]:
        if not ladder or len(ladder) > 12:
            raise ValueError("the ladder needs 1 to 12 levels")
        for level in ladder:
            if not 0.001 <= level <= 86_400 or abs(level * 1000 - round(level * 1000)) > 1e-6:
                raise ValueError(f"ladder level {level} is not whole milliseconds up to a day")
        return tuple(sorted(set(ladder)))


class SystemConfig(_Section):
    """``[systems.<name>]``: one department system and how to reach it."""

    kind: SystemKind
    url: str | None = None
    wsdl: str | None = None
    secret: SecretStr | None = None
    outbox: Path | None = None
    inbox: Path | None = None
    archive: Path | None = None
    error: Path | None = None
    inbox_queue: str | None = None
    reply_queue: str | None = None
    concurrency: int = Field(default=4, ge=1, le=256)
    rate_per_second: float = Field(default=20.0, gt=0)
    timeout_seconds: float = Field(default=30.0, gt=0)
    retry: RetryPolicy = RetryPolicy()
    poll_seconds: float = Field(default=30.0, gt=0)  # how often a polled system is asked
    # a polled system asked once more right after its receipt, within timeout_seconds, so a
    # decision taken at once comes with the receipt, not poll_seconds later. Unset: on for
    # soap (no callback: the poll is the only way), off for rest (its callback brings the
    # decision at once; the question would spend half of rate_per_second for nothing)
    poll_on_receipt: bool = False
    # "Mon-Fri 22:00-23:30", "Sat 00:00-06:00", "2026-12-24 08:00-12:00" in Settings.timezone
    maintenance: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _poll_on_receipt_by_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("poll_on_receipt") is None:
            return {**data, "poll_on_receipt": data.get("kind") == "soap"}
        return data

    @field_validator("maintenance")
    @classmethod
    def _windows_readable(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        from gateway.orchestration.maintenance import parse_window

        for entry in entries:
            parse_window(entry)  # BadWindow is a ValueError naming the entry
        return entries


class BrokerTuning(_Section):
    """How the gateway uses RabbitMQ; defaults fit one host (DESIGN "Measured")."""

    delivery_limit: int = Field(default=5, ge=1, le=1000)
    max_queue_length: int = Field(default=1_000_000, ge=1000)
    confirm_window: int = Field(default=1000, ge=1, le=65535)
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    prefetch_intake: int = Field(default=64, ge=1, le=65535)
    prefetch_deadletters: int = Field(default=32, ge=1, le=65535)
    reconnect_max_seconds: float = Field(default=15.0, gt=0)


class IntakeTuning(_Section):
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    clock_skew_seconds: int = Field(default=300, ge=1)
    idempotency_lease_seconds: float = Field(default=30.0, gt=0)
    relay_interval_seconds: float = Field(default=2.0, gt=0)
    relay_grace_seconds: float = Field(default=10.0, ge=0)


class SchedulerTuning(_Section):
    """``[scheduler]``: escalation of task deadlines (``task.due_soon``, ``task.overdue``)."""

    due_soon_share: float = Field(default=0.8, gt=0, lt=1)  # share of the budget used
    interval_seconds: float = Field(default=10.0, gt=0)  # how often it looks
    batch: int = Field(default=200, ge=1)  # tasks per look at most


class CalendarConfig(_Section):
    """``[calendar]``: the working-day calendar deadlines are counted on (DESIGN "Time")."""

    file: Path | None = None  # a local calendar file replacing the packaged one
    # e.g. ["08:30-12:00", "14:30-17:30"]; unset: the calendar file's own office hours
    office_hours: tuple[Annotated[str, Field(pattern=r"^\d\d:\d\d-\d\d:\d\d$")], ...] | None = None


_config_file: ContextVar[Path | None] = ContextVar("gateway_config_file", default=None)


class Settings(BaseSettings):
    """Everything the gateway can be told. Names are fixed by DESIGN.md "Configuration"."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    database_url: str = "sqlite:///var/gateway.sqlite3"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    timezone: str = "Asia/Shanghai"
    log_format: Literal["auto", "json", "console"] = "auto"
    public_base_url: str | None = None  # prefix for Location headers; relative when unset
    # who runs an operator command (`gateway dlq …`, `apps …`): usually GATEWAY_OPERATOR_TOKEN
    # in the operator's own environment, not in the shared file
    operator_token: SecretStr | None = None

    portals: dict[Identifier, PortalConfig] = {}
    operators: dict[Identifier, OperatorConfig] = {}
    systems: dict[Identifier, SystemConfig] = {}
    broker: BrokerTuning = BrokerTuning()
    intake: IntakeTuning = IntakeTuning()
    calendar: CalendarConfig = CalendarConfig()
    scheduler: SchedulerTuning = SchedulerTuning()

    @model_validator(mode="after")
    def _amqp_users_unique(self) -> Settings:
        seen: dict[str, str] = {}
        for portal_id, portal in self.portals.items():
            if portal.amqp_user is None:
                continue
            if portal.amqp_user in seen:
                raise ValueError(
                    f"portals {seen[portal.amqp_user]!r} and {portal_id!r} share amqp_user "
                    f"{portal.amqp_user!r}; each portal needs its own broker user"
                )
            seen[portal.amqp_user] = portal_id
        return self

    def all_roles(self) -> tuple[Role, ...]:
        return (*BASE_ROLES, *(f"connector:{name}" for name in sorted(self.systems)))

    def check_roles(self, roles: list[Role]) -> list[Role]:
        """The roles, or ``ConfigurationError`` naming the unknown ones and the known."""
        known = self.all_roles()
        unknown = [r for r in roles if r not in known]
        if unknown:
            raise ConfigurationError(
                f"unknown role(s) {', '.join(unknown)}; this configuration has: {', '.join(known)}"
            )
        return roles

    def portal_for_amqp_user(self, user: str) -> str | None:
        for portal_id, portal in self.portals.items():
            if portal.amqp_user == user:
                return portal_id
        return None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(config: Path | None = None, **overrides: object) -> Settings:
    """Read the TOML file (``config``, else ``GATEWAY_CONFIG``, else none) and the environment.

    Raises ``ConfigurationError`` naming every wrong key at once.
    """
    if config is None and os.environ.get("GATEWAY_CONFIG"):
        config = Path(os.environ["GATEWAY_CONFIG"])
    if config is not None and not config.is_file():
        raise ConfigurationError(f"config file {config} does not exist or is not a file")
    token = _config_file.set(config)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # keys are checked by the model
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        ]
        source = f" in {config}" if config else ""
        raise ConfigurationError(
            f"invalid gateway settings{source} or GATEWAY_* environment: " + "; ".join(lines)
        ) from None
    finally:
        _config_file.reset(token)
