"""The NATS keys: one name on every command, clear errors for bad values, local mode untouched."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mcp_cascade.cli import build_parser
from mcp_cascade.config import load_config
from mcp_cascade.errors import ConfigError
from mcp_cascade.remote.conn import connect_options


@pytest.mark.parametrize("command", ["serve", "bridge", "send", "inspect status"])
def test_every_command_that_delivers_or_looks_takes_nats_url(command: str) -> None:
    parser = build_parser()
    args = [*command.split(), "--nats-url", "nats://h:4222"]
    if command == "send":
        args += ["--session", "s", "--text", "t"]
    assert parser.parse_args(args).cfg_nats_url == "nats://h:4222"


def test_nats_settings_come_from_the_environment_and_unset_means_local(home: Path) -> None:
    assert load_config(home, {}).config.nats_url is None
    env = {
        "MCP_CASCADE_NATS_URL": "tls://a:4222, tls://b:4222",
        "MCP_CASCADE_NATS_TLS_CA": str(home / "ca.pem"),
    }
    loaded = load_config(home, env)
    assert loaded.sources["nats_url"] == "env MCP_CASCADE_NATS_URL"
    assert loaded.config.nats_tls_ca == home / "ca.pem"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MCP_CASCADE_NATS_URL": "http://h:4222"}, "nats_url"),
        ({"MCP_CASCADE_NATS_URL": "nats://h:4222/path"}, "nats_url"),
        ({"MCP_CASCADE_NATS_URL": "nats://h:4222,\udcff"}, "nats_url"),
        ({"MCP_CASCADE_NATS_REPLICAS": "7"}, "nats_replicas"),
        ({"MCP_CASCADE_NATS_DUP_WINDOW_S": "5"}, "nats_dup_window_s"),  # shorter than the 10 s retry span
    ],
)
def test_bad_nats_settings_are_refused_naming_the_key(home: Path, env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(home, env)
    assert named in str(caught.value)


def test_creds_and_a_private_ca_reach_the_client(home: Path) -> None:
    import certifi  # any PEM bundle stands for the deployment's private CA

    ca = Path(certifi.where())
    env = {
        "MCP_CASCADE_NATS_URL": "tls://a:4222",
        "MCP_CASCADE_NATS_CREDS": str(home / "me.creds"),
        "MCP_CASCADE_NATS_TLS_CA": str(ca),
    }
    options = connect_options(load_config(home, env).config)
    assert options["servers"] == ["tls://a:4222"]
    assert options["user_credentials"] == str(home / "me.creds")
    assert options["tls"] is not None


def test_local_mode_never_imports_the_nats_client() -> None:
    import subprocess

    code = (
        "import sys, mcp_cascade.cli, mcp_cascade.receive.server, mcp_cascade.send.cascade;"
        " print('nats' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
