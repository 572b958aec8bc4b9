"""Which session an update is for, and what it becomes.

- a button tap: the session and request of the prompt its token names;
- ``yes CODE`` / ``no CODE``: the open permission prompt with that code;
- a reply to a bot message: the session that message was sent for;
- plain text: the chat's current session (chosen with ``/use``, else the live
  session that last wrote into the chat, else the newest live session).

Only allowlisted people get this far; a stranger's update is dropped (or, while
nobody is allowed yet, answered with a pairing code).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_cascade.bridge.access import Access
from mcp_cascade.bridge.ledger import Ledger, Prompt
from mcp_cascade.bridge.updates import Incoming, parse_button, parse_command, parse_verdict
from mcp_cascade.response import Response, from_dict, new_correlation_id
from mcp_cascade.sessions import SessionInfo, list_sessions
from mcp_cascade.validation import MAX_CALLBACK_BYTES

HELP = """\
This bot carries your answers to your Claude Code sessions.
• Tap a button under a question or a permission prompt.
• Reply to a message to answer the session that sent it.
• Anything else you write goes to the current session.
• "yes CODE" / "no CODE" answers a permission prompt.
/sessions lists running sessions; /use NAME picks the current one."""


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send ``response`` into ``session`` through the cascade."""

    response: Response
    session: str


@dataclass(frozen=True, slots=True)
class Say:
    """Answer the person directly (a message, or a toast for a tap); nothing reaches a session."""

    text: str


@dataclass(frozen=True, slots=True)
class Drop:
    """Ignore the update (a stranger); log and count it."""

    reason: str


Decision = Deliver | Say | Drop


def _fit_bytes(text: str, limit: int) -> str:
    data = text.encode()[:limit]
    return data.decode("utf-8", "ignore") or "option"


def answer_label(prompt: Prompt) -> str:
    """How a prompt's answer reads: the verdict of a permission prompt, the chosen option of a question."""
    if prompt.kind == "permission":
        return "✅ Allowed" if prompt.answer == "allow" else "❌ Denied"
    return f"→ {prompt.answer}"


class Router:
    """Decides what each update becomes; synchronous (call it from a worker thread)."""

    def __init__(
        self,
        home: Path,
        ledger: Ledger,
        access: Access,
        remote: Callable[[], list[SessionInfo]] = list,
    ) -> None:
        self.home = home
        self.ledger = ledger
        self.access = access
        self._remote = remote  # sessions other hosts serve (through NATS)

    def decide(self, inc: Incoming) -> Decision:
        """The decision for one update (its side effects on the ledger are idempotent)."""
        if not self.access.allowed(inc.user.id):
            code = (
                self.access.offer(inc.user.id, inc.chat_id, inc.user.username, inc.user.first_name)
                if inc.kind != "callback"
                else None
            )
            if code is None:
                return Drop(f"Telegram user {inc.user.id} is not allowed")
            return Say(
                "To let this chat answer your Claude Code sessions, run this on your machine:\n\n"
                f"mcp-cascade bridge pair {code}\n\nThe code expires in one hour."
            )
        self.ledger.seen(inc.chat_id)
        if inc.forum:
            self.ledger.forum(inc.chat_id)
        if inc.kind == "callback":
            return self._tap(inc)
        if inc.kind == "other" or inc.text is None:
            return Say("Only text, photos, documents, voice notes and button taps reach your sessions.")
        command = parse_command(inc.text)
        if command is not None and command[0] in ("start", "help", "sessions", "use"):
            return self._command(inc, *command)
        verdict = None if inc.forwarded else parse_verdict(inc.text)
        if verdict is not None:
            prompt = self.ledger.open_permission(inc.chat_id, verdict[1])
            if prompt is not None:
                return self._answer(inc, prompt, verdict[0])
        session: str | None = None
        request_id: str | None = None
        if inc.reply_to is not None:
            prompt = self.ledger.prompt_at(inc.chat_id, inc.reply_to)
            if prompt is not None and prompt.kind == "ask":
                marked = self.ledger.answer(prompt.token, inc.text, inc.response_id)
                if marked is not None and marked.answered_by == inc.response_id:
                    request_id = prompt.request_id
            session = self.ledger.session_of(inc.chat_id, inc.reply_to)
        if session is None and inc.thread is not None:
            session = self.ledger.topic_session(inc.chat_id, inc.thread)
        session = session or self.current(inc.chat_id)
        if session is None:
            return Say("No Claude Code session is running with mcp-cascade, so there is nobody to tell.")
        return Deliver(
            self._response(inc, session, type="message", text=inc.text, request_id=request_id), session
        )

    def _tap(self, inc: Incoming) -> Decision:
        button = parse_button(inc.callback_data)
        prompt = self.ledger.prompt(button.token) if button else None
        if button is None or prompt is None or prompt.kind != ("ask" if button.kind == "q" else "permission"):
            return Say("This button is no longer valid.")
        if prompt.kind == "permission":
            return self._answer(inc, prompt, "allow" if button.choice == "a" else "deny")
        index = int(button.choice) if button.choice.isdigit() else -1
        if not 0 <= index < len(prompt.options):
            return Say("This button is no longer valid.")
        return self._answer(inc, prompt, prompt.options[index], index)

    def _answer(self, inc: Incoming, prompt: Prompt, answer: str, index: int | None = None) -> Decision:
        marked = self.ledger.answer(prompt.token, answer, inc.response_id)
        if marked is None:
            return Say("This button is no longer valid.")
        if marked.answered_by != inc.response_id:
            return Say(f"Already answered: {answer_label(marked)}")
        if prompt.kind == "permission":
            response = self._response(
                inc, prompt.session, type="permission", request_id=prompt.request_id, behavior=answer
            )
        else:
            response = self._response(
                inc,
                prompt.session,
                type="callback",
                request_id=prompt.request_id,
                callback_data=_fit_bytes(answer, MAX_CALLBACK_BYTES),
                text=answer,
                meta={"option_index": str(index)},
            )
        return Deliver(response, prompt.session)

    def _response(self, inc: Incoming, session: str, **fields: Any) -> Response:
        body: dict[str, Any] = {
            "id": inc.response_id,
            "user": {
                k: v
                for k, v in (
                    ("id", inc.user.id),
                    ("username", inc.user.username),
                    ("first_name", inc.user.first_name),
                )
                if v is not None
            },
            "timestamp": inc.timestamp,
            "correlation_id": new_correlation_id(),
            "chat_id": inc.chat_id,
            "message_id": inc.message_id,
            "session": session,
        }
        body.update({k: v for k, v in fields.items() if v is not None})
        return from_dict(body)

    # --- sessions -----------------------------------------------------------------------------

    def live(self) -> list[SessionInfo]:
        """Running sessions of every host, newest first."""
        running = [info for _, info in list_sessions(self.home) if info is not None and info.alive]
        local = {info.session_id for info in running}
        running += [info for info in self._remote() if info.session_id not in local]
        return sorted(running, key=lambda s: s.started_at, reverse=True)

    def current(self, chat_id: int) -> str | None:
        """The session plain text from this chat goes to."""
        route = self.ledger.route(chat_id)
        live = self.live()
        if route is not None and (route.chosen or any(s.session_id == route.session for s in live)):
            return route.session
        if live:
            return live[0].session_id
        return route.session if route is not None else None

    def _command(self, inc: Incoming, name: str, arg: str) -> Say:
        if name in ("start", "help"):
            return Say(HELP)
        if name == "sessions":
            live = self.live()
            if not live:
                return Say("No session is running.")
            current = self.current(inc.chat_id)
            lines = [
                f"{n}. {'▶' if s.session_id == current else '•'} {describe(s)}"
                + (f" on {s.host}" if s.host else "")
                for n, s in enumerate(live, 1)
            ]
            return Say(
                "Running sessions:\n" + "\n".join(lines) + "\n\nPick one with /use NAME or /use NUMBER."
            )
        return self._use(inc, arg)

    def _use(self, inc: Incoming, name: str) -> Say:
        if not name:
            return Say("Usage: /use NAME (see /sessions)")
        known = [d for d, _ in list_sessions(self.home)] + [s.session_id for s in self._remote()]
        live = self.live()
        labels = {s.session_id for s in live if s.label == name}
        # A number picks from the /sessions list (two windows of one folder differ only by their suffix).
        numbered = [live[int(name) - 1].session_id] if name.isdigit() and 0 < int(name) <= len(live) else []
        matches = (
            [d for d in known if d == name]
            or numbered
            or [d for d in known if d.startswith(name)]
            or sorted(labels)
        )
        if not matches:
            return Say(f"No session {name!r}; /sessions lists them.")
        if len(matches) > 1:
            return Say(f"{name!r} matches several sessions: {', '.join(matches)}")
        self.ledger.choose(inc.chat_id, matches[0])
        return Say(f"Now talking to {matches[0]}.")


def describe(info: SessionInfo) -> str:
    """A session as a person tells two windows apart: id, folder, when it started, its process."""
    started = info.started_at[:16].replace("T", " ") or "?"
    return f"{info.session_id}: {info.label or '?'} in {info.cwd or '?'}, started {started}, pid {info.pid}"
