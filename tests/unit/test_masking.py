"""Masking by field name, by pattern and by the values of the message in hand."""

from __future__ import annotations

import io
import json
import logging
import random

import structlog

from gateway import masking
from gateway.logs import configure_logging


def test_masks_by_pattern_in_free_text() -> None:
    text = "citizen 43102219900708013x called from 13907351234 about 11010519491231002X"
    out = masking.mask_text(text)
    assert "4310**********013x" in out and "1101**********002X" in out
    assert "139****1234" in out
    assert "1990070801" not in out and "0735" not in out


def test_does_not_mask_ordinary_numbers() -> None:
    text = "application 01a2217c-d1fc-758a took 431022 ms; port 5672; order 12345678901234567890"
    assert masking.mask_text(text) == text


def test_masks_by_field_name_whatever_the_value_looks_like() -> None:
    masked = masking.mask_value(
        {
            "mother_name": "刘芳",
            "id_number": "E12345678",  # a passport: no ID pattern, masked by its key
            "phone": "0735-1234567",
            "system": "hukou",
            "nested": [{"name": "王子轩", "weight_g": 3350}],
        }
    )
    assert masked == {
        "mother_name": "刘*",
        "id_number": "E123*5678",
        "phone": "073*****4567",
        "system": "hukou",
        "nested": [{"name": "王**", "weight_g": 3350}],
    }


def test_masks_known_values_anywhere() -> None:
    with masking.personal_data(["欧阳娜娜", "E12345678"]):
        out = masking.mask_text("欧阳娜娜 holds passport E12345678")
        assert masking.current_personal_values() == {"欧阳娜娜", "E12345678"}
    assert out == "欧*** holds passport E123*5678"
    assert masking.current_personal_values() == frozenset()


def test_log_lines_and_tracebacks_are_masked() -> None:
    buffer = io.StringIO()
    handler = configure_logging("json", stream=buffer, level=logging.INFO)
    try:
        log = structlog.get_logger("test")
        with masking.personal_data(["刘芳"]):
            try:
                raise ValueError("bad record for 刘芳 431022199203150421")
            except ValueError:
                log.exception("failed", applicant_phone="13907351234")
            logging.getLogger("stdlib").warning("stdlib line mentions 刘芳")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    text = buffer.getvalue()
    assert "刘芳" not in text and "431022199203150421" not in text and "13907351234" not in text
    assert lines[0]["applicant_phone"] == "139****1234"
    assert "ValueError: bad record for 刘* 4310**********0421" in lines[0]["exception"]
    assert lines[1]["event"] == "stdlib line mentions 刘*"


def test_masks_phone_variants_old_ids_and_numbers_logged_as_integers() -> None:
    text = "call +8613907351234 or 139-0735-1234 or 139 0735 1234; old id 431022900708013"
    out = masking.mask_text(text)
    assert "0735" not in out and "90070801" not in out
    assert masking.mask_value({"phone": 13907351234, "count": 3}) == {
        "phone": "139****1234",
        "count": 3,
    }
    assert masking.mask_value({"note": 13907351234}) == {"note": "139****1234"}


def test_the_processor_masks_each_field_whether_or_not_the_line_looks_personal() -> None:
    def process(**event: object) -> dict[str, object]:
        return masking.structlog_processor(None, "info", dict(event))

    # nothing personal in any text: field names and numbers still decide
    assert process(event="stored", mother_name="刘芳", note=13907351234, count=3) == {
        "event": "stored",
        "mother_name": "刘*",
        "note": "139****1234",
        "count": 3,
    }
    # one field of many holds an ID number: that one is masked, the others are kept
    assert process(event="stored", a="x", b="id 431022199203150421", c="y") == {
        "event": "stored",
        "a": "x",
        "b": "id 4310**********0421",
        "c": "y",
    }
    # a known value in one field; a phone's digits split over two fields are no phone
    with masking.personal_data(["欧阳娜娜"]):
        assert process(event="for 欧阳娜娜", a="139 0735", b="1234") == {
            "event": "for 欧***",
            "a": "139 0735",
            "b": "1234",
        }


def test_the_quick_pre_scan_lets_every_id_and_phone_shape_through() -> None:
    # the processor skips the full patterns when a cheaper scan finds no digit run: each
    # shape the patterns mask must still reach them, full-width digits included
    texts = {
        "id 431022199203150421.": "431022199203150421",
        "old id 431022900708013": "431022900708013",
        "call +86 139-0735-1234": "0735",
        "call 139 0735 1234 now": "0735",
        "全角 ４３１０２２１９９２０３１５０４２１": "２２１９９２",
    }
    for text, hidden in texts.items():
        event = masking.structlog_processor(None, "info", {"event": text, "n": 1})
        assert hidden not in str(event["event"]), text
        assert event["event"] == masking.mask_text(text, ())


def test_a_line_under_plain_names_seen_before_is_still_masked_where_it_must_be() -> None:
    def process(**event: object) -> dict[str, object]:
        return masking.structlog_processor(None, "info", dict(event))

    plain = {"event": "stored", "note": "ok", "count": "3"}
    assert process(**plain) == plain
    assert process(**plain) == plain  # its names are known to call for no mask now
    assert process(event="stored", note=13907351234)["note"] == "139****1234"
    assert process(event="stored", note="ok", mother_name="刘芳")["mother_name"] == "刘*"
    with masking.personal_data(["欧阳娜娜"]):
        assert process(event="stored", note="for 欧阳娜娜")["note"] == "for 欧***"


def test_the_ascii_pre_scan_answers_as_the_pattern_does() -> None:
    rng = random.Random(6)
    alphabet = "0123456789" * 3 + " -a.\x00"
    found = 0
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        expected = masking._MAYBE.search(text) is not None
        assert masking.could_hold_id_or_phone(text) is expected, repr(text)
        found += expected
    assert 1000 < found < 19000  # both answers were put to the test
    # a UUID with three digits, a dash and four is no reason for the full scan
    assert not masking.could_hold_id_or_phone("01a22334-0304-7e8c-bd06-904333a31f86")
    for text in ("刘芳 13907351234", "１３９０７３５１２３４", "刘芳 1390735", "139\u300007351234"):
        assert masking.could_hold_id_or_phone(text) is (masking._MAYBE.search(text) is not None)


def test_the_processor_looks_into_numbers_and_structures_of_a_plain_looking_line() -> None:
    event = masking.structlog_processor(
        None,
        "info",
        {
            "event": "stored",
            "ok": True,
            "none": None,
            "ratio": 0.5,
            "detail": {"mother_name": "刘芳", "note": "call 13907351234"},
            "items": ("431022199203150421", 7),
            "level": "info",
        },
    )
    assert event == {
        "event": "stored",
        "ok": True,
        "none": None,
        "ratio": 0.5,
        "detail": {"mother_name": "刘*", "note": "call 139****1234"},
        "items": ["4310**********0421", 7],
        "level": "info",
    }


def test_a_phone_written_with_dots_is_masked() -> None:
    # 138.1234.5678 is how many people write a mobile number; +86 with a dot too
    for text, hidden in {
        "call 138.1234.5678 now": "1234",
        "call +86.139.0735.1234": "0735",
        "mixed 139.0735-1234": "0735",
    }.items():
        out = masking.mask_text(text)
        assert hidden not in out, out
        assert masking.could_hold_id_or_phone(text), text
        event = masking.structlog_processor(None, "info", {"event": text, "n": 1})
        assert event["event"] == out
    assert masking.mask_text("call 138.1234.5678 now") == "call 138******5678 now"
    # a version, an address or a decimal number with one dot is still no phone
    for text in ("v1.3.9 at 10.0.0.1", "took 138.12345678 s", "x 1381234.5678"):
        assert masking.mask_text(text) == text


def test_every_phone_or_id_match_holds_a_pre_scan_match() -> None:
    rng = random.Random(11)
    alphabet = "0123456789" * 4 + " -.+8"
    checked = 0
    for _ in range(30000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(10, 26)))
        if masking._EITHER.search(text) is not None:
            checked += 1
            assert masking.could_hold_id_or_phone(text), repr(text)
            assert masking._MAYBE.search(text) is not None, repr(text)
    assert checked > 500
