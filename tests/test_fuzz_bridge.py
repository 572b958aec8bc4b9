"""Fuzzing the bridge: Telegram updates over every code point (surrogates included) and hostile ids, and
its signed ``/api/*`` with raw JSON (``\\uXXXX`` escapes, numbers past every limit, NaN/Infinity) and latin-1
header bytes.

Real processes: the fake Bot API on loopback (run on a portal thread), ``mcp-cascade bridge`` and
``serve`` as subprocesses. After every example the bridge is alive, a refused call is a 4xx naming its
field, and a good update and a good call behind it each arrive once. ``HYPOTHESIS_PROFILE=deep`` runs
many more examples.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from mcp_cascade.testing import BridgeProcess
from mcp_cascade.testing.fake_api import FakeTelegram, FakeUser
from tests.bridge_helpers import ALICE
from tests.helpers import sign
from tests.live import LiveServe
from tests.test_fuzz_hostile import header_bytes, literals

EXAMPLES = settings().max_examples if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else 60
# No shrinking: each step would wait out a delivery timeout; the ci profile's draws reproduce as they are.
FUZZ = settings(max_examples=EXAMPLES, phases=[Phase.explicit, Phase.reuse, Phase.generate])
_counter = itertools.count()
CHANNEL = "notifications/claude/channel"

# Every code point, with surrogates also drawn on their own so that every run meets them.
any_text = st.text(st.characters(codec=None) | st.characters(categories=["Cs"]), max_size=40)
EXTREME_IDS = [2**63, -(2**63) - 1, 2**64, -(2**64), 2**63 - 1, 0]


class Rig:
    """The fake Bot API, a bridge and one session; the person (Alice) has opened the chat."""

    def __init__(self, home: Path, stack: ExitStack) -> None:
        self.home = home
        self.portal: BlockingPortal = stack.enter_context(start_blocking_portal())
        self.fake = FakeTelegram()
        stack.enter_context(self.portal.wrap_async_context_manager(self.fake.serving()))
        self.serve = LiveServe(home, "fuzz")
        stack.callback(self.serve.close)
        self.bridge = BridgeProcess(home, self.fake.base_url)
        stack.enter_context(self.portal.wrap_async_context_manager(self.bridge))
        info = self.portal.call(self.bridge.wait_ready)
        self.api = str(info["api_url"])
        self.http = stack.enter_context(httpx.Client(timeout=20))
        self.secret = self.serve.secret
        self.good_updates: list[str] = []
        self.good_calls: list[str] = []
        self.person(lambda fake: fake.message(ALICE, "/start"))
        self.wait_bot(lambda texts: any("carries your answers" in t for t in texts))

    def person(self, act: Callable[[FakeTelegram], dict[str, Any]]) -> dict[str, Any]:
        """Play the person on the fake's event loop."""
        return self.portal.call(lambda: act(self.fake))

    def wait_bot(self, done: Callable[[list[str]], bool]) -> None:
        """Wait until the bot's messages (their texts) satisfy ``done``."""
        self.portal.call(self.fake.wait_for, lambda: done([m.text for m in self.fake.messages()]))

    def alive(self) -> None:
        assert self.bridge.running, self.bridge.stderr_tail()
        assert self.serve.alive()

    def good_update_behind(self) -> None:
        n = next(_counter)
        sent = self.person(lambda fake: fake.message(ALICE, f"good update {n}"))
        rid = f"tg:{ALICE.id}:{sent['message']['message_id']}"
        self.serve.wait(lambda: rid in self.serve.channel_ids(), timeout=30)
        self.good_updates.append(rid)
        self.alive()

    def call(self, path: str, raw: bytes, headers: Any = None) -> httpx.Response:
        rid = f"out:{next(_counter)}"
        answer = self.http.post(self.api + path, content=raw, headers=headers or sign(self.secret, rid, raw))
        assert answer.status_code < 500 or answer.status_code == 502, (answer.status_code, answer.text[:300])
        return answer

    def good_call_behind(self) -> None:
        text = f"good call {next(_counter)}"
        raw = json.dumps({"session": "fuzz", "chat_id": ALICE.id, "text": text}).encode()
        assert self.call("/api/reply", raw).status_code == 200
        self.wait_bot(lambda texts: any(t.endswith(text) for t in texts))
        self.good_calls.append(text)
        self.alive()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    home = tmp_path_factory.mktemp("fuzz-bridge") / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(
        f"allow = [{ALICE.id}]\nfile_debounce_ms = 0\n"
        "flood_chat_per_s = 1000\nflood_burst = 100\nflood_global_per_s = 1000\n"
    )
    with ExitStack() as stack:
        yield Rig(home, stack)


hostile_updates = st.one_of(
    st.tuples(st.just("text"), any_text),
    st.tuples(st.just("caption"), any_text),
    st.tuples(st.just("callback"), any_text),
    st.tuples(st.just("first_name"), any_text),
    st.tuples(st.just("username"), any_text),
    st.tuples(st.just("chat_id"), st.sampled_from(EXTREME_IDS)),
    st.tuples(st.just("file_name"), any_text),
    st.tuples(st.just("mime"), any_text),
)


def push(fake: FakeTelegram, field: str, value: Any) -> dict[str, Any]:
    if field == "text":
        return fake.message(ALICE, value)
    if field == "caption":
        return fake.person_message(ALICE, ALICE.id, None, {"caption": value})
    if field == "callback":
        return fake.tap(ALICE, (ALICE.id, 1), value)
    if field in ("file_name", "mime"):
        name, mime = (value, "text/plain") if field == "file_name" else ("a.txt", value)
        return fake.send_file(ALICE, "document", b"data", name=name, mime=mime)
    if field == "chat_id":
        return fake.person_message(ALICE, value, None, {"text": "from a chat id past 64 bits"})
    user = FakeUser(ALICE.id, value, "alice") if field == "first_name" else FakeUser(ALICE.id, "Al", value)
    return fake.message(user, "a name to mangle")


@FUZZ
@given(update=hostile_updates)
@example(update=("text", "an emoji sliced in half \ud83d"))
@example(update=("file_name", "report \ud83d.txt"))  # named in the fake's file path, so its URL too
def test_any_update_leaves_the_bridge_alive_and_the_next_good_one_delivered_once(
    rig: Rig, update: tuple[str, Any]
) -> None:
    rig.person(lambda fake: push(fake, *update))
    rig.good_update_behind()


API_BODIES: dict[str, dict[str, Any]] = {
    "/api/reply": {"session": "fuzz", "chat_id": ALICE.id, "text": "x", "files": []},
    "/api/ask": {"session": "fuzz", "question": "q?", "options": ["a", "b"]},
    "/api/permission": {
        "session": "fuzz",
        "request_id": "abcde",
        "tool_name": "Bash",
        "description": "d",
        "input_preview": "p",
    },
    "/api/hello": {"nonce": "0123456789abcdef"},
}
api_fields = st.sampled_from(
    [(path, field) for path, body in API_BODIES.items() for field in body]
    + [("/api/reply", "files.0"), ("/api/ask", "options.0")]
)
_HOLE = "@@hostile@@"


def hostile_call(path: str, field: str, literal: str) -> bytes:
    """A valid body with one value replaced by ``literal``, spliced in as JSON text."""
    data = json.loads(json.dumps(API_BODIES[path]))
    name, _, index = field.partition(".")
    if index:
        data[name] = [_HOLE]
    else:
        data[name] = _HOLE
    return json.dumps(data).replace(json.dumps(_HOLE), literal).encode()


@FUZZ
@given(target=api_fields, literal=literals)
@example(target=("/api/reply", "text"), literal='"sliced \\ud83d"')  # what a UTF-16 slicer leaves
@example(target=("/api/ask", "options.0"), literal='"\\ude00"')
@example(target=("/api/permission", "description"), literal='"\\udfff x"')
@example(target=("/api/reply", "chat_id"), literal=str(2**64))
@example(target=("/api/reply", "chat_id"), literal=str(-(2**63) - 1))
@example(target=("/api/reply", "chat_id"), literal="NaN")
@example(target=("/api/reply", "chat_id"), literal="1e400")
def test_any_api_value_is_a_4xx_naming_its_field_and_the_next_good_call_goes_once(
    rig: Rig, target: tuple[str, str], literal: str
) -> None:
    path, field = target
    answer = rig.call(path, hostile_call(path, field, literal))
    assert answer.status_code in (200, 403, 409, 422, 502), answer.text
    if answer.status_code == 422:
        name = field.partition(".")[0]
        paths = [e["path"] for e in answer.json()["errors"]]
        assert any(p.startswith(f"$.{name}") for p in paths), (field, answer.text)
    rig.good_call_behind()


@FUZZ
@given(
    name=st.sampled_from([b"webhook-id", b"webhook-timestamp", b"webhook-signature", b"content-type"]),
    value=header_bytes,
)
def test_latin1_header_bytes_on_the_api_get_4xx(rig: Rig, name: bytes, value: bytes) -> None:
    raw = json.dumps(API_BODIES["/api/reply"] | {"text": "never sent"}).encode()
    signed = [(k.encode(), v.encode()) for k, v in sign(rig.secret, f"hdr:{time.time_ns()}", raw).items()]
    answer = rig.call("/api/reply", raw, [(k, value if k == name else v) for k, v in signed])
    assert 400 <= answer.status_code < 500, answer.text
    rig.good_call_behind()


def test_every_good_update_and_call_arrived_exactly_once(rig: Rig) -> None:
    pushed = Counter(rig.serve.channel_ids())
    assert rig.good_updates and all(pushed[rid] == 1 for rid in rig.good_updates)
    texts = [m.text for m in rig.fake.messages()]
    assert rig.good_calls and all(sum(t.endswith(text) for t in texts) == 1 for text in rig.good_calls)
    assert all("never sent" not in m.text for m in rig.fake.messages())
    assert rig.serve.bad_lines == []
    contents = [f["params"]["content"] for f in rig.serve.frames if f.get("method") == CHANNEL]
    assert all(not any(0xD800 <= ord(ch) < 0xE000 for ch in c) for c in contents)  # repaired, never passed on
    assert len(contents) > len(rig.good_updates)  # hostile text was delivered too, not only refused
    rig.alive()
