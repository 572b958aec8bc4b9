"""Who may answer: pairing the first user, the allowlist, the token and the one-bridge-per-token locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_cascade.bridge.access import CODE_TTL_S, CODES_PER_USER, MAX_PENDING, Access, PairingError, pair
from mcp_cascade.bridge.instance import (
    AlreadyRunning,
    TokenError,
    acquire,
    fingerprint,
    load_token,
)
from mcp_cascade.config import Config, load_config
from mcp_cascade.testing import random_token


def _access(home: Path, allow: tuple[int, ...] = ()) -> Access:
    config = Config.model_validate({"allow": list(allow)})
    return Access(home, lambda: config)


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "mcp_cascade", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_stranger_gets_one_code_and_pair_on_the_machine_allows_them(home: Path) -> None:
    access = _access(home)
    code = access.offer(1001, 1001, "bob", "Bob")
    assert code is not None and len(code) == 6
    assert access.offer(1001, 1001, "bob", "Bob") == code
    assert not access.allowed(1001)
    done = _cli("bridge", "pair", code.upper(), home=home)
    assert done.returncode == 0, done.stderr
    assert "@bob (user id 1001)" in done.stdout
    assert access.allowed(1001)
    assert json.loads((home / "bridge" / "allowlist.json").read_text()) == {"users": [1001]}
    assert (home / "bridge" / "allowlist.json").stat().st_mode & 0o777 == 0o600
    (welcome,) = access.take_paired()
    assert welcome.chat_id == 1001
    assert access.take_paired() == []


def test_once_someone_is_allowed_strangers_get_no_code(home: Path) -> None:
    assert _access(home, allow=(42,)).offer(1001, 1001, None, None) is None
    assert _access(home).offer(1001, 1001, None, None) is not None


def test_unknown_and_expired_codes_are_refused_with_a_reason(home: Path) -> None:
    access = _access(home)
    code = access.offer(1001, 1001, None, "Bob", now=1000.0)
    assert code is not None
    with pytest.raises(PairingError, match="has expired"):
        pair(home, code, now=1000.0 + CODE_TTL_S + 1)
    with pytest.raises(PairingError, match="is not pending"):
        pair(home, "zzzzzz")
    done = _cli("bridge", "pair", "zzzzzz", home=home)
    assert done.returncode == 2
    assert "is not pending" in done.stderr and "Traceback" not in done.stderr
    assert not access.allowed(1001)


def test_the_token_comes_from_the_environment_or_a_private_file(home: Path) -> None:
    token = random_token()
    assert load_token(home, {"TELEGRAM_BOT_TOKEN": token}) == token
    with pytest.raises(TokenError, match="TELEGRAM_BOT_TOKEN"):
        load_token(home, {})
    path = home / "bridge" / "token"
    path.parent.mkdir()
    path.write_text(token + "\n")
    path.chmod(0o644)
    with pytest.raises(TokenError, match="chmod 600") as loose:
        load_token(home, {})
    assert token not in str(loose.value)
    path.chmod(0o600)
    assert load_token(home, {}) == token


def test_a_second_bridge_for_the_same_home_or_token_is_refused(home: Path, tmp_path: Path) -> None:
    token = random_token()
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    held = acquire(home, token, env)
    try:
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}") as same_home:
            acquire(home, random_token(), env)
        other_home = tmp_path / "other"
        with pytest.raises(AlreadyRunning, match=f"bot token {fingerprint(token)}") as same_token:
            acquire(other_home, token, env)
        assert token not in str(same_home.value) + str(same_token.value)
    finally:
        held.release()
    acquire(home, token, env).release()


def test_the_allow_flag_and_config_add_to_paired_users(home: Path) -> None:
    loaded = load_config(home, {"MCP_CASCADE_ALLOW": "5,6"}, {})
    access = Access(home, lambda: loaded.config)
    assert access.users() == frozenset({5, 6})
    (home / "bridge").mkdir()
    (home / "bridge" / "allowlist.json").write_text('{"users": [7, "x"]}')
    assert access.users() == frozenset({5, 6, 7})


def test_strangers_writing_first_cannot_keep_the_owner_from_getting_a_code(home: Path) -> None:
    """Finding 6: five (or any number of) strangers took every code before the owner wrote."""
    config = Config.model_validate({})
    access = Access(home, lambda: config)
    now = 1000.0
    for stranger in range(1, 2 * MAX_PENDING):
        assert access.offer(stranger, stranger, None, "Stranger", now=now + stranger) is not None
    owner = access.offer(99, 99, "owner", "Owner", now=now + 100)
    assert owner is not None
    assert pair(home, owner, now=now + 101).user_id == 99


def test_one_person_gets_one_live_code_and_only_a_few_an_hour(home: Path) -> None:
    config = Config.model_validate({})
    access = Access(home, lambda: config)
    first = access.offer(7, 7, None, "Churner", now=0.0)
    assert access.offer(7, 7, None, "Churner", now=1.0) == first  # the same code while it lasts
    issued = {first}
    for n in range(CODES_PER_USER + 2):
        for newcomer in range(MAX_PENDING):  # push every pending code out
            access.offer(1000 + n * MAX_PENDING + newcomer, 1, None, None, now=2.0 + n)
        issued.add(access.offer(7, 7, None, "Churner", now=2.5 + n))
    assert len(issued - {None}) == CODES_PER_USER and None in issued
    assert access.offer(7, 7, None, "Churner", now=CODE_TTL_S + 10) is not None  # a new hour
