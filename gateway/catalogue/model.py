"""The catalogue as typed data, loaded once and checked at start.

Checked at load, each a start-up error naming the matter and step: an unknown department
system, an unknown dependency, a dependency cycle, a needed envelope path the matter's
envelope does not have, and a ``provided.<name>`` that no earlier step provides.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.catalogue.fields import PROVIDED
from gateway.errors import ConfigurationError

Unit = Literal["WORKDAY", "WORKHOUR", "CALENDAR_DAY", "HOUR"]
CURRENT_VERSION = "2026.1"
KNOWN_SYSTEMS = frozenset({"hospital", "hukou", "provincial", "cdc"})


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limit(_Data):
    value: float = Field(gt=0)
    unit: Unit


class Step(_Data):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    title: str
    department: str
    system: str
    operation: str
    needs: tuple[str, ...]
    provides: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    limit: Limit
    statutory: Limit | None = None
    when: str | None = None  # the step applies only when this envelope path is not empty
    mandatory: bool = True


class Matter(_Data):
    title: str
    promise: Limit
    steps: tuple[Step, ...]

    def step(self, key: str) -> Step:
        for s in self.steps:
            if s.key == key:
                return s
        raise KeyError(key)

    def ancestors(self, key: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.step(key).depends_on)
        while todo:
            k = todo.pop()
            if k not in seen:
                seen.add(k)
                todo.extend(self.step(k).depends_on)
        return seen


class Catalogue(_Data):
    version: str
    matters: dict[str, Matter]

    def matter(self, code: str) -> Matter:
        try:
            return self.matters[code]
        except KeyError:
            raise ConfigurationError(
                f"matter {code!r} is not in catalogue {self.version}", code="unknown_matter"
            ) from None


def check(
    catalogue: Catalogue,
    envelope_paths: Mapping[str, set[str]],
    systems: Iterable[str] = KNOWN_SYSTEMS,
) -> None:
    """Raise ``ConfigurationError`` listing every problem of the catalogue at once."""
    known = set(systems)
    problems: list[str] = []
    for code, matter in catalogue.matters.items():
        keys = [s.key for s in matter.steps]
        if len(keys) != len(set(keys)):
            problems.append(f"{code}: step keys repeat")
        for step in matter.steps:
            where = f"{code}.{step.key}"
            if step.system not in known:
                problems.append(
                    f"{where}: unknown system {step.system!r} (known: {', '.join(sorted(known))})"
                )
            for dep in step.depends_on:
                if dep not in keys:
                    problems.append(f"{where}: depends on unknown step {dep!r}")
        if any(d not in keys for s in matter.steps for d in s.depends_on):
            continue  # reported above; the checks below need a whole graph
        if _cycle(matter):
            problems.append(f"{code}: the dependencies form a cycle ({_cycle(matter)})")
            continue
        paths = envelope_paths.get(code)
        for step in matter.steps:
            where = f"{code}.{step.key}"
            before = {p for k in matter.ancestors(step.key) for p in matter.step(k).provides}
            for need in (*step.needs, *((step.when,) if step.when else ())):
                head, _, name = need.partition(".")
                if head == PROVIDED:
                    if name not in before:
                        problems.append(f"{where}: needs {need} but no earlier step provides it")
                elif paths is not None and need not in paths:
                    problems.append(f"{where}: needs {need}, which the {code} envelope lacks")
    if problems:
        raise ConfigurationError(
            f"catalogue {catalogue.version} is inconsistent: " + "; ".join(problems),
            code="catalogue_invalid",
        )


def _cycle(matter: Matter) -> str | None:
    state: dict[str, int] = {}
    deps = {s.key: s.depends_on for s in matter.steps}

    def visit(key: str, trail: list[str]) -> str | None:
        if state.get(key) == 1:
            return " → ".join([*trail, key])
        if state.get(key) == 2 or key not in deps:
            return None
        state[key] = 1
        for dep in deps[key]:
            if found := visit(dep, [*trail, key]):
                return found
        state[key] = 2
        return None

    for key in deps:
        if found := visit(key, []):
            return found
    return None


def parse(text: str, source: str) -> Catalogue:
    try:
        return Catalogue.model_validate(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigurationError(f"catalogue {source} cannot be read: {exc}") from None


@cache
def load(version: str = CURRENT_VERSION) -> Catalogue:
    """A shipped catalogue version, checked against the envelope model."""
    from gateway.catalogue.paths import envelope_paths  # the envelope model is heavy

    name = f"catalogue-{version}.toml"
    data = resources.files("gateway.catalogue") / "data" / name
    if not data.is_file():
        raise ConfigurationError(f"no catalogue version {version!r} is shipped ({name})")
    catalogue = parse(data.read_text(encoding="utf-8"), name)
    check(catalogue, envelope_paths())
    return catalogue


def check_systems(catalogue: Catalogue, configured: Iterable[str]) -> None:
    """Every system the catalogue sends work to has a ``[systems.<name>]`` table (else its
    tasks would wait in a queue nobody reads): a start-up error naming matter and step."""
    have = set(configured)
    missing = sorted(
        {
            f"{code}.{step.key} → {step.system}"
            for code, matter in catalogue.matters.items()
            for step in matter.steps
            if step.system not in have
        }
    )
    if missing:
        raise ConfigurationError(
            f"catalogue {catalogue.version} sends work to systems with no [systems.<name>] "
            f"table: {'; '.join(missing)}",
            code="system_not_configured",
        )
