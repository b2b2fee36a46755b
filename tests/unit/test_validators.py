"""Identifier validators: the standards' own vectors, then python-stdnum as an oracle.

python-stdnum is a test-only dependency: an independent implementation of GB 11643,
GB 32100 and ISO 7064 MOD 37,36. Each population is ≥ 5,000 seeded random values:
valid ones, single-character corruptions, adjacent transpositions and random check
characters. Known, intended differences from stdnum are applied to the oracle explicitly:
  * GB 11643: we do not look up the address code (stdnum does); we reject birth dates in
    the future or before 1890 (stdnum does not).
  * GB 32100: stdnum also requires characters 1-8 to be digits; where a value breaks only
    that, the oracle is stdnum's check character over the full alphabet.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from stdnum.cn import ric as std_ric
from stdnum.cn import uscc as std_uscc
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.iso7064 import mod_37_36 as std_mod

from gateway.envelope import validators as v
from gateway.envelope.divisions import current_table, load_table

N = 5_000
TODAY = v.today_in_china()


def _accepts(check: Callable[[str], str], value: str) -> bool:
    try:
        check(value)
    except ValueError:
        return False
    return True


# --- GB 11643 citizen ID ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["11010519491231002X", "440524188001010014"])
def test_citizen_id_vectors_pass(value: str) -> None:
    assert v.citizen_id(value) == value


def test_citizen_id_vector_fails_on_check_digit() -> None:
    with pytest.raises(ValueError, match=r"check digit does not match \(GB 11643\)"):
        v.citizen_id("340524198001010013")


def test_lower_case_x_is_normalised() -> None:
    assert v.citizen_id("11010519491231002x") == "11010519491231002X"


def test_check_char_sex_and_birth_date() -> None:
    assert v.citizen_id_check_char("11010519491231002") == "X"
    assert v.citizen_id_check_char("44052418800101001") == "4"
    assert v.sex_from_citizen_id("11010519491231002X") == 2
    assert v.sex_from_citizen_id("440524188001010014") == 1
    assert v.birth_date_from_citizen_id("11010519491231002X") == date(1949, 12, 31)


def _cid(body17: str) -> str:
    return body17 + v.citizen_id_check_char(body17)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("11010519491231002", "must be 18 characters, got 17"),
        ("11010519491231002XX", "must be 18 characters, got 19"),
        ("1101051949123100AX", "first 17 characters must be digits"),
        ("１１0105194912310020", "first 17 characters must be digits"),  # full-width digits
        ("11010519491231002Y", "last character must be a digit or X"),
        (_cid("11010519490230002"), "not a real date"),
        (_cid("11010518791231002"), "before 1880"),
        ("born tomorrow", "future"),  # built when the test runs: China's day may turn
    ],
)
def test_citizen_id_rejects_without_echoing(value: str, message: str) -> None:
    if value == "born tomorrow":  # not at collection, which may be before China's midnight
        tomorrow = v.today_in_china() + timedelta(days=1)
        value = _cid("110105" + tomorrow.strftime("%Y%m%d") + "002")
    with pytest.raises(ValueError, match=message) as caught:
        v.citizen_id(value)
    assert value not in str(caught.value)
    assert value[:14] not in str(caught.value)


def test_address_code_is_not_looked_up() -> None:
    # 999999 is no division, yet a citizen ID keeps its address code for life.
    assert v.citizen_id(_cid("99999919800101001"))


# --- GB 32100 unified social credit code --------------------------------------------------


@pytest.mark.parametrize(
    "value", ["91350100M000100Y43", "11100000000013338W", "11430000006122244L"]
)
def test_uscc_vectors_pass(value: str) -> None:
    assert v.uscc(value) == value
    assert v.uscc_check_char(value[:17]) == value[17]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("91350100M000100Y4", "must be 18 characters"),
        ("91350100M000100Y44", "check character is 4, expected 3"),
        ("91350100M000I00Y43", "may only use"),  # I is not in the GB 32100 alphabet
        ("91350100m000100Y43", "may only use"),
    ],
)
def test_uscc_rejects(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.uscc(value)


# --- GB/T 2260 division code --------------------------------------------------------------


def test_division_table() -> None:
    table = current_table()
    assert table.version == "2013"
    assert table is load_table("2013")  # read once
    assert "431022" in table
    assert table.name("431022") == "宜章县"
    assert "431099" not in table
    assert len(table) > 3000
    with pytest.raises(KeyError):
        table.name("431099")


@pytest.mark.parametrize("value", ["431022", "431022100000", "430000"])
def test_division_code_accepts(value: str) -> None:
    assert v.division_code(value, current_table()) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("431099", "not in the GB/T 2260 table"),
        ("431099100000", "not in the GB/T 2260 table"),  # county part unknown
        ("4310221", "must be 6 or 12 digits"),
        ("43102210000", "must be 6 or 12 digits"),
        ("43102A", "must be 6 or 12 digits"),
        ("４３１０２２", "must be 6 or 12 digits"),
    ],
)
def test_division_code_rejects(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.division_code(value, current_table())


# --- birth certificate, e-licence ---------------------------------------------------------


def test_birth_certificate_no() -> None:
    assert v.birth_certificate_no("P431234567") == "P431234567"
    for bad in ("p431234567", "P43123456", "4312345678", "P4312345678"):
        with pytest.raises(ValueError, match="one letter A-Z and 9 digits"):
            v.birth_certificate_no(bad)


def test_mod37_36_published_vector() -> None:
    assert v.mod37_36_check_char("A12425GABC1234002") == "M"  # python-stdnum documented example
    for bad in ("a12425", "A1-2", "Ä1"):
        with pytest.raises(ValueError, match="0-9 and A-Z"):
            v.mod37_36_check_char(bad)


ISSUER = "11431022006931578J"
TYPE = "11100000000013338W001"


def _elicence(serial: str, version: str = "001") -> str:
    check = v.mod37_36_check_char(TYPE + ISSUER + serial + version)
    return f"1.2.156.3005.2.{TYPE}.{ISSUER}.{serial}.{version}.{check}"


def test_elicence_id_accepts_and_rejects() -> None:
    good = _elicence("J4310222019000123")
    assert v.elicence_id(good) == good
    wrong = good[:-1] + ("0" if good[-1] != "0" else "1")
    with pytest.raises(ValueError, match=r"check character does not match \(MOD 37,36\)"):
        v.elicence_id(wrong)
    bad_issuer = good.replace(ISSUER, ISSUER[:-1] + "K")
    with pytest.raises(ValueError, match="issuer: unified social credit code"):
        v.elicence_id(bad_issuer)
    for broken in (good.replace("1.2.156", "1.2.157"), good.replace(".001.", ".01."), good + "0"):
        with pytest.raises(ValueError, match="e-licence identifier must"):
            v.elicence_id(broken)


# --- python-stdnum as oracle --------------------------------------------------------------


def _corruptions(rng: random.Random, value: str, alphabet: str) -> Iterator[str]:
    """One single-character substitution and one adjacent transposition of ``value``."""
    i = rng.randrange(len(value))
    yield value[:i] + rng.choice([c for c in alphabet if c != value[i]]) + value[i + 1 :]
    j = rng.randrange(len(value) - 1)
    yield value[:j] + value[j + 1] + value[j] + value[j + 2 :]


def _stdnum_ric_accepts(value: str) -> bool:
    """stdnum's GB 11643 checks minus the birth-place lookup, plus our date range."""
    number = std_ric.compact(value)
    if len(number) != 18 or not number[:17].isdigit() or not number[:17].isascii():
        return False
    if number[17] != std_ric.calc_check_digit(number):
        return False
    try:
        born = std_ric.get_birth_date(number)
    except StdnumError:
        return False
    return date(v.EARLIEST_BIRTH_YEAR, 1, 1) <= born <= TODAY


def _random_birth(rng: random.Random) -> date:
    start = date(v.EARLIEST_BIRTH_YEAR, 1, 1)
    return start + timedelta(days=rng.randrange((TODAY - start).days + 1))


def test_citizen_id_agrees_with_stdnum() -> None:
    rng = random.Random(11643)
    codes = sorted(current_table().names)
    outcomes: dict[str, set[bool]] = {"valid": set(), "corrupted": set(), "random": set()}
    disagreements: list[tuple[str, str]] = []
    for _ in range(N):
        body = (
            rng.choice(codes) + _random_birth(rng).strftime("%Y%m%d") + f"{rng.randrange(1000):03d}"
        )
        check = v.citizen_id_check_char(body)
        assert check == std_ric.calc_check_digit(body + "0"), body
        valid = body + check
        if check == "X" and rng.random() < 0.5:
            valid = body + "x"
        samples = {"valid": valid, "random": body + rng.choice(v.CITIZEN_ID_CHECK_CHARS)}
        for kind, value in [*samples.items()] + [
            ("corrupted", c) for c in _corruptions(rng, body + check, string.digits + "X")
        ]:
            ours, theirs = _accepts(v.citizen_id, value), _stdnum_ric_accepts(value)
            outcomes[kind].add(ours)
            if ours != theirs:
                disagreements.append((kind, value))
    assert disagreements == []
    assert outcomes == {"valid": {True}, "corrupted": {True, False}, "random": {True, False}}


def test_uscc_agrees_with_stdnum() -> None:
    rng = random.Random(32100)
    alphabet = v.USCC_CHARSET
    outcomes: dict[str, set[bool]] = {"valid": set(), "corrupted": set(), "random": set()}
    disagreements: list[tuple[str, str]] = []

    def stdnum_accepts(value: str) -> bool:
        if value[:8].isdigit():
            return bool(std_uscc.is_valid(value))
        # stdnum insists on digits in 1-8; judge the rest by its own check character.
        ok = len(value) == 18 and all(c in alphabet for c in value)
        return ok and std_uscc.calc_check_digit(value[:17]) == value[17]

    for _ in range(N):
        head = "".join(rng.choice(string.digits if rng.random() < 0.7 else alphabet) for _ in "12")
        body = head + "".join(rng.choice(alphabet) for _ in range(15))
        check = v.uscc_check_char(body)
        assert check == std_uscc.calc_check_digit(body), body
        samples = [("valid", body + check), ("random", body + rng.choice(alphabet))]
        samples += [("corrupted", c) for c in _corruptions(rng, body + check, alphabet + "IOSVZ")]
        for kind, value in samples:
            ours, theirs = _accepts(v.uscc, value), stdnum_accepts(value)
            outcomes[kind].add(ours)
            if ours != theirs:
                disagreements.append((kind, value))
    assert disagreements == []
    assert outcomes == {"valid": {True}, "corrupted": {True, False}, "random": {True, False}}


def test_mod37_36_agrees_with_stdnum() -> None:
    rng = random.Random(7064)
    alphabet = v.MOD37_36_ALPHABET
    outcomes: dict[str, set[bool]] = {"valid": set(), "corrupted": set(), "random": set()}
    disagreements: list[tuple[str, str]] = []

    def ours_accepts(value: str) -> bool:
        return v.mod37_36_check_char(value[:-1]) == value[-1]

    for _ in range(N):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))
        check = v.mod37_36_check_char(body)
        assert check == std_mod.calc_check_digit(body), body
        samples = [("valid", body + check), ("random", body + rng.choice(alphabet))]
        samples += [("corrupted", c) for c in _corruptions(rng, body + check, alphabet)]
        for kind, value in samples:
            ours, theirs = ours_accepts(value), std_mod.is_valid(value)
            outcomes[kind].add(ours)
            if ours != theirs:
                disagreements.append((kind, value))
    assert disagreements == []
    assert outcomes == {"valid": {True}, "corrupted": {True, False}, "random": {True, False}}


def test_elicence_check_agrees_with_stdnum() -> None:
    rng = random.Random(3005)
    alphabet = v.MOD37_36_ALPHABET
    accepted = 0
    for _ in range(N):
        serial = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 32)))
        version = f"{rng.randrange(1000):03d}"
        check = rng.choice(alphabet)
        value = f"1.2.156.3005.2.{TYPE}.{ISSUER}.{serial}.{version}.{check}"
        theirs = std_mod.is_valid(TYPE + ISSUER + serial + version + check)
        assert _accepts(v.elicence_id, value) == theirs, value
        accepted += theirs
    assert 0 < accepted < N


def test_today_in_china_is_the_calendar_day_at_utc_plus_8() -> None:
    before = v.china_date(datetime.now(UTC))
    today = v.today_in_china()
    after = v.china_date(datetime.now(UTC))
    assert today in (before, after)  # the same day unless midnight passed in between
    assert v.china_date(datetime(2026, 1, 1, 15, 59, 59, tzinfo=UTC)) == date(2026, 1, 1)
    assert v.china_date(datetime(2026, 1, 1, 16, 0, 0, tzinfo=UTC)) == date(2026, 1, 2)
