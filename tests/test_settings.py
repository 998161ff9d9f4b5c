from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import get_settings


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    for name in ("TELLER_HOME", "TELLER_MODELS", "TELLER_CACHE", "TELLER_THREADS", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults_ignore_same_named_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    monkeypatch.setenv("MODELS", "/elsewhere")
    settings = get_settings()
    assert settings.home == tmp_path / "h" / ".local" / "share" / "teller"
    assert settings.models == Path("models")
    assert settings.cache_dir == settings.home / "cache"


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TELLER_HOME=/srv/teller\nTELLER_THREADS=2\n")
    monkeypatch.setenv("TELLER_MODELS", "~/m")
    settings = get_settings()
    assert settings.home == Path("/srv/teller") and settings.threads == 2
    assert settings.models == Path.home() / "m"


def test_invalid_values_are_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLER_THREADS", "lots")
    with pytest.raises(ConfigError, match="TELLER_THREADS"):
        get_settings()


def test_an_empty_database_url_is_refused_rather_than_falling_back_to_sqlite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TELLER_DATABASE_URL", " ")
    with pytest.raises(ConfigError, match="TELLER_DATABASE_URL"):
        get_settings()
    monkeypatch.setenv("TELLER_DATABASE_URL", "postgresql://teller@db/teller")
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.database == "postgresql://teller@db/teller" and settings.replicate_kb


def test_the_banks_phone_regions_are_read_first_and_unknown_ones_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``TELLER_PHONE_REGIONS`` names the bank's regions (upper-cased, each once); a code
    ``phonenumbers`` has no numbers for is refused at start, naming the variable and the code."""
    from typer.testing import CliRunner

    from bot.cli import app
    from bot.privacy import redaction

    monkeypatch.setenv("TELLER_PHONE_REGIONS", "sg, HK,sg")
    assert get_settings().phone_region_list == ("SG", "HK")
    try:
        assert CliRunner().invoke(app, ["kb", "--help"]).exit_code == 0  # every command sets them up
        assert redaction.redact("my number 9123 4567") == "my number [PHONE]"
    finally:
        redaction.configure_regions(())
    assert redaction.redact("my number 9123 4567") == "my number 9123 4567"
    monkeypatch.setenv("TELLER_PHONE_REGIONS", "SG,XX")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=r"TELLER_PHONE_REGIONS: XX: not a region"):
        get_settings()
    monkeypatch.setenv("TELLER_PHONE_REGIONS", "UK")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=r"the United Kingdom's code is GB"):
        get_settings()
    monkeypatch.setenv("TELLER_PHONE_REGIONS", "SG; HK")  # a semicolon or a space separates too
    get_settings.cache_clear()
    assert get_settings().phone_region_list == ("SG", "HK")


def test_a_half_configured_slack_is_said_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial's finding: a bot token alone started the web chat only, with nothing said."""
    from bot.assistant import half_configured_channels

    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert half_configured_channels(get_settings()) == []
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    get_settings.cache_clear()
    [problem] = half_configured_channels(get_settings())
    assert problem.startswith("SLACK_BOT_TOKEN set, but Slack is off") and "SLACK_SIGNING_SECRET" in problem
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s" * 32)
    get_settings.cache_clear()
    assert half_configured_channels(get_settings()) == []
