"""One settings object: TOML file, GATEWAY_* overrides with __ for nesting, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigurationError
from gateway.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "gateway.example.toml"


def test_defaults_match_design(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    s = load_settings()
    assert s.amqp_url == "amqp://guest:guest@localhost:5672/"
    assert s.database_url.startswith("sqlite:///")
    assert s.timezone == "Asia/Shanghai"


def test_example_file_loads_every_table() -> None:
    s = load_settings(EXAMPLE)
    assert s.portals["online"].previous_secret is not None
    assert s.portals["window"].amqp_user == "portal-window"
    assert s.operators["duty"].roles == {"view", "replay"}
    assert {name: sys.kind for name, sys in s.systems.items()} == {
        "hospital": "filedrop",
        "hukou": "soap",
        "provincial": "rest",
        "cdc": "amqp",
    }
    assert s.portal_for_amqp_user("portal-window") == "window"


def test_environment_overrides_top_level_and_nested_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_AMQP_URL", "amqp://u:p@broker:5672/gw")
    monkeypatch.setenv("GATEWAY_HTTP_PORT", "9090")
    monkeypatch.setenv("GATEWAY_SYSTEMS__HUKOU__URL", "http://10.1.2.3/hukou")
    monkeypatch.setenv("GATEWAY_BROKER__DELIVERY_LIMIT", "9")
    s = load_settings(EXAMPLE)
    assert (s.amqp_url, s.http_port, s.broker.delivery_limit) == (
        "amqp://u:p@broker:5672/gw",
        9090,
        9,
    )
    assert s.systems["hukou"].url == "http://10.1.2.3/hukou"
    assert s.systems["hukou"].kind == "soap"  # the rest of the table still comes from the file


def test_config_file_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_CONFIG", str(EXAMPLE))
    assert "window" in load_settings().portals


def test_errors_name_every_wrong_key_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'http_port = "eighty"\nunknown_key = 1\n'
        '[portals.window]\nsecret = "short"\n'
        '[systems.hukou]\nkind = "ftp"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError) as info:
        load_settings(bad)
    message = str(info.value)
    for key in ("http_port", "unknown_key", "portals.window.secret", "systems.hukou.kind"):
        assert key in message, key
    assert str(bad) in message


def test_missing_file_and_shared_amqp_user(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    dup = tmp_path / "dup.toml"
    dup.write_text(
        '[portals.a]\nsecret = "aaaaaaaaaaaaaaaa"\namqp_user = "u"\n'
        '[portals.b]\nsecret = "bbbbbbbbbbbbbbbb"\namqp_user = "u"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match="share amqp_user 'u'"):
        load_settings(dup)
