"""The catalogue is data, checked at load: every problem named with its matter and step."""

from __future__ import annotations

import pytest

from gateway.catalogue.model import check, load, parse
from gateway.catalogue.paths import envelope_paths
from gateway.errors import ConfigurationError

STEP = """
[[matters.newborn.steps]]
key = "{key}"
title = "t"
department = "d"
system = "{system}"
operation = "op"
needs = [{needs}]
provides = [{provides}]
depends_on = [{deps}]
limit = {{ value = 1, unit = "WORKDAY" }}
"""


def catalogue(*steps: dict[str, str]) -> str:
    head = (
        'version = "t"\n[matters.newborn]\ntitle = "x"\npromise = { value = 1, unit = "WORKDAY" }\n'
    )
    defaults = {"system": "hospital", "needs": '"subjects.child.name"', "provides": "", "deps": ""}
    return head + "".join(STEP.format(**{**defaults, **s}) for s in steps)


def test_the_shipped_catalogue_loads_and_passes_its_checks() -> None:
    c = load()
    assert c.version == "2026.1"
    assert {"newborn", "retirement", "after_death"} <= set(c.matters)
    newborn = c.matter("newborn")
    assert newborn.ancestors("medical_insurance") == {"hukou", "birth_certificate"}


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"key": "a", "system": "fax"}], "newborn.a: unknown system 'fax'"),
        ([{"key": "a", "deps": '"b"'}, {"key": "b", "deps": '"a"'}], "form a cycle"),
        ([{"key": "a", "deps": '"zz"'}], "newborn.a: depends on unknown step 'zz'"),
        (
            [{"key": "a", "needs": '"provided.citizen_id"'}],
            "newborn.a: needs provided.citizen_id but no earlier step provides it",
        ),
        (
            [{"key": "a", "needs": '"subjects.child.shoe_size"'}],
            "newborn.a: needs subjects.child.shoe_size, which the newborn envelope lacks",
        ),
    ],
)
def test_inconsistencies_are_start_up_errors(steps: list[dict[str, str]], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check(parse(catalogue(*steps), "test"), envelope_paths())
    assert message in str(info.value)


def test_a_provided_field_from_an_ancestor_is_fine() -> None:
    text = catalogue(
        {"key": "a", "provides": '"x"'}, {"key": "b", "deps": '"a"', "needs": '"provided.x"'}
    )
    check(parse(text, "test"), envelope_paths())


async def test_a_catalogue_system_without_a_systems_table_stops_the_gateway_at_start() -> None:
    from gateway.runtime import Gateway
    from gateway.settings import Settings, SystemConfig

    settings = Settings(systems={"hukou": SystemConfig(kind="soap", url="http://127.0.0.1:9/")})
    with pytest.raises(ConfigurationError) as info:
        await Gateway(settings).start()  # before any store or broker is touched
    message = str(info.value)
    assert "no [systems.<name>] table" in message
    assert "newborn.birth_certificate → hospital" in message
    assert "newborn.hukou → hukou" not in message
