"""One configuration model: defaults, config.toml, environment, flags, in that order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_cascade.cli import main
from mcp_cascade.config import load_config
from mcp_cascade.errors import ConfigError
from mcp_cascade.sessions import resolve_session, session_id_for


def test_defaults_are_the_documented_budgets(home: Path) -> None:
    cfg = load_config(home, {}).config
    assert (cfg.webhook_timeout_ms, cfg.bridge_timeout_ms, cfg.file_debounce_ms) == (100, 500, 500)
    assert (cfg.file_rescan_ms, cfg.overall_timeout_ms) == (1000, 10_000)
    assert cfg.tier_order == ("webhook", "bridge", "file")


def test_file_then_environment_then_flags_win_in_that_order(home: Path) -> None:
    (home / "config.toml").write_text(
        "webhook_timeout_ms = 200\nbridge_timeout_ms = 700\nfile_rescan_ms = 50\n"
    )
    env = {"MCP_CASCADE_BRIDGE_TIMEOUT_MS": "800", "MCP_CASCADE_FILE_RESCAN_MS": "60"}
    loaded = load_config(home, env, {"file_rescan_ms": "70"})
    assert loaded.config.webhook_timeout_ms == 200
    assert loaded.config.bridge_timeout_ms == 800
    assert loaded.config.file_rescan_ms == 70
    assert loaded.sources["webhook_timeout_ms"].startswith("file ")
    assert loaded.sources["bridge_timeout_ms"] == "env MCP_CASCADE_BRIDGE_TIMEOUT_MS"
    assert loaded.sources["file_rescan_ms"] == "flag --file-rescan-ms"
    assert loaded.sources["overall_timeout_ms"] == "default"


def test_lists_come_from_comma_separated_environment_values(home: Path) -> None:
    cfg = load_config(home, {"MCP_CASCADE_TIER_ORDER": "file, webhook", "MCP_CASCADE_ALLOW": "1,2"}).config
    assert cfg.tier_order == ("file", "webhook")
    assert cfg.allow == (1, 2)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"MCP_CASCADE_WEBHOOK_TIMEOUT_MS": "fast"}, "webhook_timeout_ms"),
        ({"MCP_CASCADE_WEBHOOK_TIMEOUT_MS": "0"}, "webhook_timeout_ms"),
        ({"MCP_CASCADE_TIER_ORDER": "webhook,carrier-pigeon"}, "tier_order"),
        ({"MCP_CASCADE_TIER_ORDER": "file,file"}, "tier_order"),
        ({"MCP_CASCADE_RETENTION_DAYS": "1"}, "retention_days"),
        ({"MCP_CASCADE_LOG_LEVEL": "chatty"}, "log_level"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_key_and_its_source(
    home: Path, env: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(home, env)
    assert err.value.key == key
    assert "env MCP_CASCADE_" in str(err.value)


def test_an_unknown_key_in_the_file_is_named(home: Path) -> None:
    (home / "config.toml").write_text("webhook_timeout = 5\n")
    with pytest.raises(ConfigError, match="webhook_timeout: unknown key"):
        load_config(home, {})


def test_a_broken_file_is_a_clear_error(home: Path) -> None:
    (home / "config.toml").write_text("webhook_timeout_ms = = 5\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(home, {})


def test_the_session_id_is_stable_for_a_project_directory_and_valid(tmp_path: Path) -> None:
    project = tmp_path / "My Project!"
    project.mkdir()
    first = session_id_for(project)
    assert first == session_id_for(project)
    assert first.startswith("my-project-")
    assert resolve_session(None, {}, project) == first
    other = tmp_path / "other" / "My Project!"
    other.mkdir(parents=True)
    assert session_id_for(other) != first
    assert resolve_session(None, {"MCP_CASCADE_SESSION": "pinned"}, project) == "pinned"
    with pytest.raises(ConfigError, match="session"):
        resolve_session("Bad Name", {}, project)


def test_config_command_prints_values_and_where_they_came_from(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "config.toml").write_text("overall_timeout_ms = 20000\n")
    code = main(
        ["config", "--home", str(home), "--json", "--webhook-timeout-ms", "150"],
        env={"MCP_CASCADE_FILE_DEBOUNCE_MS": "250"},
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["values"]["overall_timeout_ms"] == 20000
    assert out["values"]["webhook_timeout_ms"] == 150
    assert out["values"]["file_debounce_ms"] == 250
    assert out["sources"]["webhook_timeout_ms"] == "flag --webhook-timeout-ms"
    assert out["sources"]["file_debounce_ms"] == "env MCP_CASCADE_FILE_DEBOUNCE_MS"


def test_config_command_reports_a_bad_value_in_one_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "--home", str(home), "--breaker-threshold", "-3"], env={}) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mcp-cascade config: breaker_threshold:")
    assert "\n" not in err
