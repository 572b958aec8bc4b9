"""The ``mcp-cascade`` command line.

Under ``serve`` stdout belongs to the MCP protocol: every message here goes to
stderr, and a failure is one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_cascade.errors import CascadeError
from mcp_cascade.flags import add_config_flags, load
from mcp_cascade.redact import scrub

if TYPE_CHECKING:
    pass

# Each command imports what it uses when it runs (or when its own --help is asked for), so
# ``mcp-cascade --help`` and ``send`` do not pay for the MCP SDK, pydantic or the Telegram modules.
Handler = Callable[[argparse.Namespace, Mapping[str, str]], int]


def cmd_serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the MCP server for one Claude Code session (stdio)."""
    if sys.platform == "win32":  # see docs/platforms.md#windows
        raise CascadeError(
            "needs Linux or macOS (its stdio transport and session locks are POSIX); on Windows run"
            " Claude Code and mcp-cascade inside WSL 2 (bridge, send, inspect and config work natively)"
        )
    from mcp_cascade.config import ENV_PREFIX
    from mcp_cascade.receive.server import serve
    from mcp_cascade.sessions import resolve_session

    loaded = load(args, env)
    session = resolve_session(args.session, env, Path.cwd())
    explicit = args.session is not None or ENV_PREFIX + "SESSION" in env
    code = serve(loaded, session, Path.cwd(), explicit=explicit)
    # Everything is closed and durable by now; skip the interpreter's slow teardown (~150 ms of
    # atexit hooks and module finalisation) so the client's shutdown grace period is kept.
    sys.stderr.flush()
    os._exit(code)


def config_table() -> str:
    """Every configuration key as a Markdown table: default, environment variable, flag, meaning."""
    from mcp_cascade.config import ENV_PREFIX, KEYS, Config

    rows = ["| key | default | environment | flag | meaning |", "|---|---|---|---|---|"]
    for key in KEYS:
        info = Config.model_fields[key]
        default = json.dumps(info.default if not isinstance(info.default, tuple) else list(info.default))
        flag = "--" + key.replace("_", "-")
        rows.append(
            f"| `{key}` | `{default}` | `{ENV_PREFIX}{key.upper()}` | `{flag}` | {info.description} |"
        )
    return "\n".join(rows)


def cmd_config(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print the effective configuration and where each value came from."""
    from mcp_cascade.config import ENV_PREFIX, KEYS

    if args.markdown:
        print(config_table())
        return 0
    loaded = load(args, env)
    values = loaded.config.model_dump(mode="json")
    if args.json:
        print(
            json.dumps(
                {
                    "home": str(loaded.home),
                    "file": str(loaded.file),
                    "values": values,
                    "sources": dict(loaded.sources),
                },
                indent=2,
            )
        )
        return 0
    print(f"home   {loaded.home}\nfile   {loaded.file}{'' if loaded.file.exists() else ' (absent)'}\n")
    width = max(len(k) for k in KEYS)
    for key in KEYS:
        print(
            f"{key:<{width}}  {json.dumps(values[key]):<28}  {loaded.sources[key]}"
            f"  [{ENV_PREFIX}{key.upper()}]"
        )
    return 0


def cmd_schema(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Print the response JSON Schema (the webhook body and the inbox file)."""
    from mcp_cascade.validation import SCHEMA

    print(json.dumps(SCHEMA, indent=2))
    return 0


def _read_text(source: str) -> str:
    """The answer from a file or (``-``) stdin, without the one newline a shell adds at the end."""
    from mcp_cascade.errors import ConfigError

    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError("text-file", f"cannot read {source}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("text-file", f"{source} is not UTF-8 ({exc.reason})") from exc
    return text.removesuffix("\n")


def cmd_send(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Deliver one response; exit 0 when delivered or durably queued, 1 when not, 2 on bad input."""
    from dataclasses import replace

    from mcp_cascade.errors import ConfigError
    from mcp_cascade.response import make_response
    from mcp_cascade.send.cascade import send_one

    if args.permission is not None and args.behavior is None:
        raise ConfigError("behavior", "--permission needs --behavior allow|deny")
    if args.permission is None and args.behavior is not None:
        raise ConfigError("behavior", "--behavior only goes with --permission")
    if args.text_file is not None:
        args.text = _read_text(args.text_file)
    loaded = load(args, env)
    if loaded.sources["log_level"] == "default":  # stdout has the receipt; stderr only what needs a look
        loaded = replace(loaded, config=loaded.config.model_copy(update={"log_level": "warning"}))
    response = make_response(
        type="message"
        if args.text is not None
        else "callback"
        if args.callback is not None
        else "permission",
        user_id=args.user_id,
        text=args.text,
        callback_data=args.callback,
        request_id=args.permission,
        behavior=args.behavior,
        id=args.id,
        session=args.session,
    )
    receipt = send_one(loaded, response, args.session, args.tier)
    print(json.dumps(receipt.to_dict(), indent=2))
    if receipt.status == "failed":
        last = receipt.attempts[-1].reason if receipt.attempts else "no tier could take it"
        print(f"mcp-cascade send: not delivered to {args.session}: {last}", file=sys.stderr)
        return 1
    return 0


def _lazy(module: str, name: str) -> Handler:
    """A handler that imports its command's module only when the command runs."""

    def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
        from importlib import import_module

        handler: Handler = getattr(import_module(module), name)
        return handler(args, env)

    return run


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked for.

    (importlib.metadata and the scan of the installed distributions cost ``--help`` and
    ``send`` about 15 ms on every run when argparse's own version action was given the text.)
    """

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("mcp-cascade")
        except PackageNotFoundError:  # run from a checkout that was never installed
            found = "unknown"
        print(f"mcp-cascade {found}")
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every command (``only``: give arguments to that command alone).

    ``main`` passes the command on the command line, so a run builds (and imports for) one
    command's arguments; the others are listed by name and help text only.
    """
    parser = argparse.ArgumentParser(
        prog="mcp-cascade",
        description="Telegram answers into the right Claude Code session, effectively once.",
    )
    version_help = "show program's version number and exit"
    parser.add_argument("--version", action=_Version, help=version_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser | None:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--version", action=_Version, help=version_help)
        p.add_argument("--home", help="state directory (default $MCP_CASCADE_HOME or ~/.mcp-cascade)")
        p.set_defaults(handler=handler)
        return p if only is None or only == name else None

    if p := command(
        "serve", cmd_serve, "MCP server for one Claude Code session (spawned by Claude Code, stdio)"
    ):
        p.add_argument(
            "--session", help="session id [a-z0-9-]{1,64} (default: derived from the project directory)"
        )
        add_config_flags(p)

    if p := command("config", cmd_config, "print the effective configuration and where each value came from"):
        p.add_argument("--json", action="store_true")
        p.add_argument("--markdown", action="store_true", help="print every key as a Markdown table and exit")
        add_config_flags(p)

    command("schema", cmd_schema, "print the response JSON Schema")

    if p := command(
        "send", cmd_send, "deliver one response to a session through the cascade; prints the receipt"
    ):
        p.add_argument("--session", required=True, help="target session id [a-z0-9-]{1,64}")
        what = p.add_mutually_exclusive_group(required=True)
        what.add_argument(
            "--text",
            help="a typed answer (type message); other users on this machine can read it in ps,"
            " so prefer --text-file",
        )
        what.add_argument(
            "--text-file",
            metavar="PATH",
            help="read the typed answer from PATH, or from stdin with '-' (not visible in ps)",
        )
        what.add_argument(
            "--callback", metavar="DATA", help="a button's data, at most 64 bytes (type callback)"
        )
        what.add_argument(
            "--permission", metavar="REQUEST_ID", help="answer a permission prompt (with --behavior)"
        )
        p.add_argument("--behavior", choices=("allow", "deny"), help="the permission answer")
        p.add_argument(
            "--id", help="idempotency key (default: a fresh local:<uuid>); resending it is harmless"
        )
        p.add_argument("--tier", choices=("auto", "webhook", "file"), default="auto", help="force one path")
        p.add_argument("--user-id", type=int, default=0, help="the answering user's Telegram id (default 0)")
        add_config_flags(p)

    if p := command(
        "bridge",
        _lazy("mcp_cascade.bridge.commands", "cmd_bridge"),
        "the Telegram bridge: one bot for every session (token: TELEGRAM_BOT_TOKEN)",
    ):
        add_config_flags(p)
        actions = p.add_subparsers(dest="bridge_command", metavar="ACTION")
        pair = actions.add_parser("pair", help="allow the person a pairing code was given to")
        pair.add_argument("code", help="the code the bot sent")
        pair.add_argument("--home", dest="pair_home", help="state directory (as for the bridge)")
    if p := command(
        "fake-telegram",
        _lazy("mcp_cascade.bridge.commands", "cmd_fake_telegram"),
        "a local fake Telegram Bot API (prints its base URL)",
    ):
        p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
        p.add_argument("--token", help="accept only this bot token (default: any)")

    if p := command(
        "demo",
        _lazy("mcp_cascade.demo.command", "cmd_demo"),
        "run the whole cascade locally (fake Telegram, the real bridge and sessions), break it one piece"
        " at a time, and check that every answer arrived exactly once",
    ):
        p.add_argument("--json", action="store_true", help="print one JSON report on stdout and nothing else")
        p.epilog = (
            "It runs in a temporary home, removed at the end (never in your own); with --home DIR it runs"
            " in DIR, which must be empty, and keeps it. Exit 0 only when every answer arrived exactly once."
        )

    if p := command(
        "inspect",
        _lazy("mcp_cascade.ops.inspect", "run"),
        "the operator's view: status, queue, trace, watch, selftest",
    ):
        from mcp_cascade.ops import inspect as inspect_command

        inspect_command.add_arguments(p)

    if p := command(
        "sessions",
        _lazy("mcp_cascade.receive.lifecycle", "cmd_sessions"),
        "list sessions (live, closed with pending answers, stale); prune removes closed ones",
    ):
        from mcp_cascade.receive import lifecycle

        lifecycle.add_arguments(p)

    if p := command(
        "soak",
        _lazy("mcp_cascade.soak.cli", "cmd_soak"),
        "reliability scenarios on real processes: lost, doubled, late answers",
    ):
        p.add_argument("--scenario", default="all", help="a scenario name, several with commas, all, or none")
        p.add_argument(
            "--count", default="small", help="responses per scenario: small (CI), full (10000) or N"
        )
        p.add_argument("--seed", type=int, default=1, help="seed of every random choice (default 1)")
        p.add_argument("--json", metavar="PATH", help="also write the report as JSON here")
        p.add_argument(
            "--load", action="store_true", help="also run the open-loop load test and the step test"
        )
        p.add_argument("--load-duration", type=float, default=60.0, help="seconds per constant-rate mode")
        p.add_argument(
            "--workdir", help="keep every home and log here (default: a temporary folder, removed)"
        )
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point of the console script."""
    env = dict(os.environ) if env is None else env
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[0] if argv and not argv[0].startswith("-") else ""
    args = build_parser(chosen).parse_args(argv)
    # Everything the command creates (SQLite's -wal and -shm files too) is for this user alone;
    # restored after, for a caller that runs main() in its own process.
    umask = os.umask(0o077) if hasattr(os, "umask") else None
    handler: Handler = args.handler
    try:
        return handler(args, env)
    except CascadeError as exc:
        print(f"mcp-cascade {args.command}: {scrub(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if umask is not None:
            os.umask(umask)


if __name__ == "__main__":
    sys.exit(main())
