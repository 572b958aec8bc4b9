"""Fuzzing the class that took serve down: every code point (surrogates included), extreme numbers and
timestamps, non-UTF-8 bytes and latin-1 header bytes, by webhook and by inbox file.

After every example serve is alive and a good response sent behind the hostile one is pushed; at the
end, each good response was pushed exactly once. ``HYPOTHESIS_PROFILE=deep`` runs many more examples.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_cascade.inbox import enqueue
from mcp_cascade.response import from_dict
from mcp_cascade.sessions import SessionPaths
from tests.helpers import body, sign
from tests.live import LiveServe

EXAMPLES = settings().max_examples if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else 40
FUZZ = settings(max_examples=EXAMPLES)
_counter = itertools.count()

# JSON text for one value: strings over every code point (json.dumps writes a lone surrogate as \udXXX),
# numbers past every limit, and timestamps from year 1 to 9999 with any offset.
_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e308", "1e400", "-1e400", "4.2", "1E2", "-0", "0.0"]
_NUMBERS += [str(2**63), str(2**63 - 1), str(-(2**63)), str(-(2**63) - 1), str(2**64), "9" * 400]
_STAMPS = [
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "1970-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
]
literals = st.one_of(
    # Surrogates are a sliver of all code points: drawn on their own too, so that every run meets them.
    st.text(st.characters(codec=None) | st.characters(categories=["Cs"]), max_size=30).map(json.dumps),
    st.sampled_from(_NUMBERS),
    st.integers().map(str),
    st.sampled_from(_STAMPS).map(json.dumps),
    st.datetimes().map(lambda d: json.dumps(d.isoformat() + "Z")),
)
targets = st.sampled_from(
    ["text", "chat_id", "message_id", "timestamp", "user.id", "user.first_name", "meta.value", "meta.key"]
)
_HOLE = "@@hostile@@"


def hostile_body(rid: str, target: str, literal: str) -> bytes:
    """A valid body with one value (or one meta key) replaced by ``literal``, spliced in as JSON text."""
    data = body(id=rid)
    if target == "meta.key":
        data["meta"] = {_HOLE: "v"}
    elif target == "meta.value":
        data["meta"] = {"k": _HOLE}
    elif target.startswith("user."):
        data["user"][target.split(".")[1]] = _HOLE
    else:
        data[target] = _HOLE
    return json.dumps(data).replace(json.dumps(_HOLE), literal).encode()


class Target:
    def __init__(self, live: LiveServe) -> None:
        self.live = live
        self.http = httpx.Client(timeout=10)
        self.good: list[str] = []

    def post(self, raw: bytes, headers: dict[str, str] | list[tuple[bytes, bytes]]) -> httpx.Response:
        answer = self.http.post(self.live.info.webhook_url, content=raw, headers=headers)
        assert answer.status_code < 500, (answer.status_code, answer.text[:300], raw[:300])
        return answer

    def good_one_behind(self) -> None:
        rid = f"good:{next(_counter)}"
        raw = json.dumps(body(id=rid, text=rid)).encode()
        assert self.post(raw, sign(self.live.secret, rid, raw)).status_code == 200
        self.live.wait(lambda: rid in self.live.channel_ids(), timeout=20)
        assert self.live.alive()
        self.good.append(rid)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    home = tmp_path_factory.mktemp("fuzz-hostile") / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("file_debounce_ms = 0\nfile_rescan_ms = 200\n")
    t = Target(LiveServe(home, "hostile"))
    yield t
    t.http.close()
    t.live.close()


@FUZZ
@given(field=targets, literal=literals)
def test_any_value_by_webhook_is_answered_below_500_and_the_next_good_one_delivered(
    target: Target, field: str, literal: str
) -> None:
    rid = f"hostile:{next(_counter)}"
    raw = hostile_body(rid, field, literal)
    answer = target.post(raw, sign(target.live.secret, rid, raw))
    assert answer.status_code in (200, 400, 422), answer.text
    if answer.status_code == 200:  # it was carriable after all: pushed, once
        target.live.wait(lambda: rid in target.live.channel_ids(), timeout=20)
    target.good_one_behind()


header_bytes = st.binary(max_size=60).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip())
header_names = st.sampled_from(
    [b"webhook-id", b"webhook-timestamp", b"webhook-signature", b"x-correlation-id", b"content-type"]
)


@FUZZ
@given(name=header_names, value=header_bytes, raw=st.binary(max_size=200))
def test_latin1_header_bytes_and_non_utf8_bodies_get_4xx(
    target: Target, name: bytes, value: bytes, raw: bytes
) -> None:
    rid = f"hdr:{next(_counter)}"
    signed = [(k.encode(), v.encode()) for k, v in sign(target.live.secret, rid, raw).items()]
    headers = [(k, value if k == name else v) for k, v in signed]
    answer = target.post(raw, headers)
    assert 400 <= answer.status_code < 500, answer.text
    target.good_one_behind()


@FUZZ
@given(
    content=st.one_of(
        st.tuples(targets, literals).map(lambda t: hostile_body(f"file:{next(_counter)}", *t)),
        st.binary(min_size=1, max_size=300).map(lambda b: b"\xff" + b),
    )
)
def test_any_inbox_file_is_failed_or_delivered_and_never_stalls_the_next(
    target: Target, content: bytes
) -> None:
    inbox = SessionPaths(target.live.home, "hostile").inbox
    name = f"{time.time_ns()}-hostile{next(_counter)}.json"
    (inbox / "tmp" / name).write_bytes(content)
    (inbox / "tmp" / name).rename(inbox / "new" / name)
    good = f"good:{next(_counter)}"
    enqueue(inbox, from_dict(body(id=good, text=good)))
    target.live.wait(lambda: good in target.live.channel_ids(), timeout=20)
    target.good.append(good)
    target.live.wait(lambda: not any((inbox / "new").iterdir()) and not any((inbox / "cur").iterdir()))
    assert target.live.alive()
    if (inbox / "failed" / name).exists():
        assert (inbox / "failed" / f"{name}.reason").read_text().strip()


def test_every_good_response_was_pushed_exactly_once(target: Target) -> None:
    pushed = Counter(target.live.channel_ids())
    assert target.good and all(pushed[rid] == 1 for rid in target.good)
    assert target.live.bad_lines == []
    assert Path(target.live.home).exists()
