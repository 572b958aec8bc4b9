"""Who may answer: the allowlist, and pairing for the first user.

While nobody is allowed yet, a person who writes to the bot gets a short code;
``mcp-cascade bridge pair CODE`` on the machine adds them to
``$HOME/bridge/allowlist.json`` (atomically). The running bridge reads the
allowlist on every update, so the pairing takes effect at once, and it tells the
person they are paired. Once someone is allowed, strangers get no answer at all.
Codes expire after an hour; pending codes live in ``$HOME/bridge/pairing.json``,
read and written under a lock (:mod:`mcp_cascade.locks`) shared with the ``pair`` command.

Strangers cannot jam pairing: each person has one live code (repeated while it
lasts) and gets at most ``CODES_PER_USER`` codes an hour; when ``MAX_PENDING``
people are waiting, the oldest code gives way to the newcomer, so the owner
always gets a code, at once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mcp_cascade import locks
from mcp_cascade.config import Config
from mcp_cascade.durable import atomic_write_json, read_json
from mcp_cascade.errors import CascadeError
from mcp_cascade.receive.outbound import ALLOWLIST, allowed_users

PAIRING = Path("bridge") / "pairing.json"
_PAIRING_LOCK = Path("bridge") / "pairing.lock"
CODE_TTL_S = 3600.0
MAX_PENDING = 16
CODES_PER_USER = 3
# No 0/o, 1/l/i: a code is read off a phone screen and typed on a keyboard.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
CODE_LENGTH = 6


class PairingError(CascadeError):
    """A pairing code that is unknown or expired."""


@dataclass(frozen=True, slots=True)
class Pairing:
    """A person waiting to be paired (or just paired)."""

    code: str
    user_id: int
    chat_id: int
    username: str | None
    first_name: str | None
    created_at: float

    def label(self) -> str:
        """How to name the person on the command line."""
        name = f"@{self.username}" if self.username else (self.first_name or "")
        return f"{name} (user id {self.user_id})".strip()


@contextmanager
def _locked(home: Path) -> Iterator[dict[str, Any]]:
    """pairing.json read-modify-write under an exclusive flock; the dict is written back on exit."""
    directory = locks.private_dir(home / _PAIRING_LOCK.parent)
    with locks.take(directory, _PAIRING_LOCK.name, wait_s=float("inf")):
        data = read_json(home / PAIRING)
        state: dict[str, Any] = data if isinstance(data, dict) else {}
        state.setdefault("pending", {})
        state.setdefault("paired", [])
        state.setdefault("issued", {})
        before = repr(state)
        yield state
        if repr(state) != before:
            atomic_write_json(home / PAIRING, state)


def _expire(state: dict[str, Any], now: float) -> None:
    state["pending"] = {
        code: p for code, p in state["pending"].items() if now - float(p.get("created_at", 0)) < CODE_TTL_S
    }
    issued = {
        user: [t for t in times if now - float(t) < CODE_TTL_S] for user, times in state["issued"].items()
    }
    state["issued"] = {user: times for user, times in issued.items() if times}


def pair(home: Path, code: str, now: float | None = None) -> Pairing:
    """Approve a pending code: add its person to the allowlist. Raises PairingError naming the problem."""
    now = time.time() if now is None else now
    wanted = code.strip().lower()
    with _locked(home) as state:
        raw = state["pending"].get(wanted)
        _expire(state, now)
        if wanted not in state["pending"]:
            reason = "has expired (codes last one hour)" if raw else "is not pending"
            raise PairingError(f"code {code.strip()!r} {reason}; send the bot a message to get a fresh one")
        pairing = Pairing(**state["pending"].pop(wanted))
        listed = read_json(home / ALLOWLIST)
        users = (
            [u for u in (listed or {}).get("users", []) if isinstance(u, int)]
            if isinstance(listed, dict)
            else []
        )
        if pairing.user_id not in users:
            users.append(pairing.user_id)
        atomic_write_json(home / ALLOWLIST, {"users": users})
        state["paired"].append(asdict(pairing))
    return pairing


class Access:
    """The bridge's side: allowlist checks, codes for the first user, and news of approved pairings."""

    def __init__(self, home: Path, config: Callable[[], Config]) -> None:
        self.home = home
        self._config = config

    def users(self) -> frozenset[int]:
        """Everyone allowed right now (config ``allow`` plus paired users)."""
        return allowed_users(self.home, self._config())

    def allowed(self, user_id: int) -> bool:
        """Whether this Telegram user may answer."""
        return user_id in self.users()

    def offer(
        self,
        user_id: int,
        chat_id: int,
        username: str | None,
        first_name: str | None,
        now: float | None = None,
    ) -> str | None:
        """A pairing code for a stranger, while nobody is allowed yet (the same code while it lasts)."""
        if self.users():
            return None
        now = time.time() if now is None else now
        with _locked(self.home) as state:
            _expire(state, now)
            for code, pending in state["pending"].items():
                if pending.get("user_id") == user_id:
                    return str(code)
            issued = state["issued"].setdefault(str(user_id), [])
            if len(issued) >= CODES_PER_USER:
                return None  # this person's codes keep being pushed out: wait out the hour
            while len(state["pending"]) >= MAX_PENDING:
                oldest = min(state["pending"], key=lambda c: float(state["pending"][c]["created_at"]))
                del state["pending"][oldest]
            code = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))
            state["pending"][code] = asdict(Pairing(code, user_id, chat_id, username, first_name, now))
            issued.append(now)
        return code

    def take_paired(self) -> list[Pairing]:
        """Pairings approved since the last call (to welcome them)."""
        if not (self.home / PAIRING).exists():
            return []
        with _locked(self.home) as state:
            done = [Pairing(**p) for p in state["paired"]]
            state["paired"] = []
        return done
