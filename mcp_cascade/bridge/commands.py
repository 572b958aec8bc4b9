"""The command-line handlers of ``mcp-cascade bridge``, ``bridge pair`` and ``fake-telegram``.

Heavy imports wait until a handler runs, so ``mcp-cascade --help`` stays fast.
The bot token never appears in what these print, even when something fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

import anyio

from mcp_cascade.config import resolve_home
from mcp_cascade.errors import unwrap
from mcp_cascade.home import ensure_home
from mcp_cascade.signals import until_terminated


def cmd_bridge(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the bridge, or (``bridge pair CODE``) approve a pairing code."""
    if getattr(args, "bridge_command", None) == "pair":
        return _pair(args, env)
    from mcp_cascade.bridge.app import run_bridge
    from mcp_cascade.bridge.instance import load_token
    from mcp_cascade.flags import load
    from mcp_cascade.redact import scrub

    loaded = load(args, env)
    token = load_token(loaded.home, env)
    try:
        return run_bridge(loaded, env, token)
    except (
        Exception
    ) as exc:  # the top boundary: one scrubbed line, never a traceback that could carry the token
        print(f"mcp-cascade bridge: {scrub(_describe(exc))}", file=sys.stderr)
        return 2


def _describe(exc: BaseException) -> str:
    exc = unwrap(exc)  # a task group wraps the failure that ended it; the innermost one says what happened
    return str(exc) or repr(exc)


def _pair(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from mcp_cascade.bridge.access import pair

    home = resolve_home(args.pair_home or args.home, env)
    for path in ensure_home(home)[:1]:  # it writes the allowlist: the home must be private first
        print(
            f"mcp-cascade bridge pair: {home} was open to other users ({path}); made it private",
            file=sys.stderr,
        )
    pairing = pair(home, args.code)
    print(f"paired {pairing.label()}: their answers now reach your sessions")
    return 0


def cmd_fake_telegram(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run the fake Bot API until SIGINT/SIGTERM; its base URL is the one line on stdout."""
    from mcp_cascade.testing.fake_api import FakeTelegram

    async def main() -> None:
        fake = FakeTelegram(token=args.token)
        async with fake.serving(port=args.port):
            print(fake.base_url, flush=True)
            root = fake.base_url.removesuffix("/bot")
            print(
                f"fake Telegram Bot API at {fake.base_url}\n"
                f"  mcp-cascade bridge --telegram-api-base {fake.base_url}\n"
                f'  curl -s {root}/_fake/message -d \'{{"user_id": 1, "text": "hello"}}\'\n'
                f"  curl -s {root}/_fake/messages\n"
                f'  curl -s {root}/_fake/tap -d \'{{"user_id": 1, "message_id": 2, "button": "Allow"}}\'',
                file=sys.stderr,
                flush=True,
            )
            await until_terminated(lambda name: None)

    anyio.run(main)
    return 0
