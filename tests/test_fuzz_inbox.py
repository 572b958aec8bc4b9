"""Property-based fuzzing of the tier-3 inbox: whatever lands in new/, serve never crashes, hangs or loses.

A real serve subprocess watches the inbox. Each example drops a few generated
entries into ``new/`` (arbitrary bytes, JSON of any shape, almost-valid
responses, names of any characters, symlinks, fifos, folders), written in place
or renamed in, and then one good response through the producer library. The
properties: the good response is pushed exactly once, after the bad entries
were dealt with; every bad entry ends in ``failed/`` beside a non-empty
``.reason`` (or, when it happened to be a valid response, is pushed once);
``new/`` and ``cur/`` drain; serve stays up and writes only JSON-RPC on stdout.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_cascade.inbox import enqueue
from mcp_cascade.response import from_dict
from mcp_cascade.sessions import SessionPaths
from mcp_cascade.validation import MAX_BODY_BYTES
from tests.helpers import body
from tests.live import LiveServe

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
SESSION = "fuzz-inbox"
_counter = itertools.count()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
fields = st.sampled_from(
    [
        "id",
        "type",
        "text",
        "user",
        "timestamp",
        "callback_data",
        "request_id",
        "behavior",
        "session",
        "correlation_id",
        "meta",
        "chat_id",
        "extra",
    ]
)


@st.composite
def almost_valid(draw: st.DrawFn) -> bytes:
    """A valid body with a few fields removed or replaced by any JSON value."""
    data: dict[str, Any] = body(
        id=f"fz:{next(_counter)}", kind=draw(st.sampled_from(["message", "callback", "permission"]))
    )
    for _ in range(draw(st.integers(1, 3))):
        key = draw(fields)
        if draw(st.booleans()):
            data.pop(key, None)
        else:
            data[key] = draw(json_values)
    return json.dumps(data).encode()


contents = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    almost_valid(),
    st.just(b""),
    st.integers(MAX_BODY_BYTES - 10, MAX_BODY_BYTES + 100).map(lambda n: b'{"id": "' + b"x" * n + b'"}'),
)
# File names are bytes on Linux: any bytes but '/' and NUL, decoded as Python does (undecodable
# bytes become lone surrogates), so names that are not UTF-8 are drawn too.
odd_names = (
    st.binary(min_size=1, max_size=60)
    .filter(lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b".."))
    .map(os.fsdecode)
)
entries = st.tuples(
    st.one_of(odd_names, st.just("pattern")),  # a name of any characters, or <time_ns>-<id>.json
    st.sampled_from(["in place", "renamed in", "symlink", "fifo", "folder"]),
    contents,
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServe]:
    home = tmp_path_factory.mktemp("fuzz-inbox") / "home"
    home.mkdir(mode=0o700)
    # A file that is not JSON is failed at once (no settling window for in-place writers).
    (home / "config.toml").write_text("file_debounce_ms = 0\nfile_rescan_ms = 200\n")
    serve = LiveServe(home, SESSION)
    yield serve
    serve.close()


def _place(inbox: Path, name: str, how: str, data: bytes) -> None:
    target = inbox / "new" / name
    if how == "in place":
        target.write_bytes(data)
    elif how == "renamed in":
        staging = inbox / "tmp" / f"stage-{next(_counter)}"
        staging.write_bytes(data)
        staging.rename(target)
    elif how == "symlink":
        outside = inbox.parent / f"outside-{next(_counter)}.json"
        outside.write_bytes(data)
        target.symlink_to(outside)
    elif how == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()


def _verdicts(live: LiveServe) -> Counter[str]:
    method = "notifications/claude/channel/permission"
    return Counter(f["params"]["request_id"] for f in list(live.frames) if f.get("method") == method)


@FUZZ
@given(batch=st.lists(entries, min_size=1, max_size=3))
def test_bad_inbox_entries_end_in_failed_with_a_reason_and_never_cost_a_good_response(
    live: LiveServe, batch: list[tuple[str, str, bytes]]
) -> None:
    inbox = SessionPaths(live.home, SESSION).inbox
    placed: list[tuple[str, str, bytes]] = []
    for raw_name, how, data in batch:
        n = next(_counter)
        name = f"{time.time_ns()}-fz{n}.json" if raw_name == "pattern" else f"{n}{raw_name}"
        _place(inbox, name, how, data)
        placed.append((name, how, data))
    good = f"good:{next(_counter)}"
    enqueue(inbox, from_dict(body(id=good, text=good)))

    live.wait(lambda: good in live.channel_ids(), timeout=20)
    live.wait(lambda: not any((inbox / "new").iterdir()) and not any((inbox / "cur").iterdir()), timeout=20)

    assert live.alive()
    assert live.bad_lines == []
    pushed = Counter(live.channel_ids())
    assert pushed[good] == 1
    for name, how, data in placed:
        failed, reason = inbox / "failed" / name, inbox / "failed" / f"{name}.reason"
        if os.path.lexists(failed):
            assert reason.read_text().strip(), name
            continue
        # Not failed: it was a valid response, so it was pushed (generated ids repeat across examples:
        # a repeat is a duplicate, removed without a second push).
        value = json.loads(data)
        assert how in ("in place", "renamed in") and isinstance(value, dict), (name, how, data[:200])
        if value.get("type") == "permission":  # a verdict leaves as the permission notification
            assert _verdicts(live)[value["request_id"]] >= 1, (name, value)
        else:
            assert pushed[value["id"]] == 1, (name, value["id"])


def test_nothing_was_pushed_twice(live: LiveServe) -> None:
    assert [rid for rid, n in Counter(live.channel_ids()).items() if n > 1] == []
