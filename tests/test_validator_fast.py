"""The fast validator (jsonschema-rs) never lets through what the reference validator rejects."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_cascade.validation import _reference, validate

VALID: dict[str, Any] = {
    "id": "tg:1:2",
    "type": "message",
    "user": {"id": 7, "username": "ann"},
    "timestamp": "2026-01-02T03:04:05.678Z",
    "correlation_id": "0d816b58-9759-4ad8-a1a5-c0d78980e272",
    "text": "yes",
}
KEYS = [*VALID, "callback_data", "request_id", "behavior", "chat_id", "message_id", "session", "meta", "x"]
ODD_INTS = st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**200, 0, -1])
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | ODD_INTS
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None), max_size=80)
    | st.sampled_from(["message", "callback", "permission", "allow", "deny", "a\n", "2026-01-02 03:04:05Z"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["id", "k", "username"]), inner)
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4), st.sets(st.sampled_from(list(VALID))))
def test_fast_and_reference_validators_agree(changes: dict[str, Any], removed: set[str]) -> None:
    data = {k: v for k, v in {**VALID, **changes}.items() if k not in removed}
    reference_ok = not any(True for _ in _reference().iter_errors(data))
    assert (validate(data) == []) <= reference_ok  # nothing the reference rejects is accepted
    if reference_ok:  # and nothing it accepts is refused for a schema reason
        assert all(e.path in ("$.callback_data", "$.timestamp") for e in validate(data))
