"""Deliver one answer to a running session over tier 1, using only the library's discovery and signing.

    python examples/post_response.py SESSION "the answer" [--home DIR]

A bridge in another language does the same: read sessions/<id>/session.json,
sign the body with the home's secret (Standard Webhooks), POST it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid

import httpx

from mcp_cascade.config import resolve_home
from mcp_cascade.response import make_response
from mcp_cascade.sessions import read_session
from mcp_cascade.signing import Signer, load_or_create_secret
from mcp_cascade.wire import webhook_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("session")
    parser.add_argument("text")
    parser.add_argument("--home")
    args = parser.parse_args()
    home = resolve_home(args.home, os.environ)
    info = read_session(home, args.session)
    if info is None:
        print(f"session {args.session!r} is not running under {home}", file=sys.stderr)
        return 1
    response = make_response(type="message", user_id=0, text=args.text, id=f"example:{uuid.uuid4().hex}")
    body, headers = webhook_request(Signer(load_or_create_secret(home)), response)
    answer = httpx.post(info.webhook_url, content=body, headers=headers)
    print(json.dumps(answer.json()))
    return 0 if answer.status_code in (200, 202) else 1


if __name__ == "__main__":
    sys.exit(main())
