"""The fake Bot API's forum topics, reactions and files (a part of :class:`FakeTelegram`).

Forum topics: a chat made a forum with :meth:`Forum.make_forum` accepts
``createForumTopic``, ``editForumTopic``, ``closeForumTopic`` and
``reopenForumTopic``; ``message_thread_id`` of a missing or deleted topic is a
400 "message thread not found", of a closed one a 400 "TOPIC_CLOSED".
Reactions: ``setMessageReaction`` takes one emoji of Telegram's set, unless the
chat has reactions turned off. Files: the person sends photos, documents and
voice notes (:meth:`Forum.send_file`); ``getFile`` gives a path that
``/file/bot<token>/<path>`` serves; the bot's ``sendPhoto``/``sendDocument``
uploads are kept with their bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_cascade.reactions import REACTIONS
from mcp_cascade.testing.fake_types import ApiError, BotMessage, FakeUser

FileKind = Literal["photo", "document", "voice"]


@dataclass
class Topic:
    """A forum topic as the fake keeps it."""

    chat_id: int
    thread: int
    name: str
    closed: bool = False
    deleted: bool = False
    renames: list[str] = field(default_factory=list)


@dataclass
class ForumState:
    """Topics, reactions and files of the fake."""

    forums: set[int] = field(default_factory=set)
    topics: dict[tuple[int, int], Topic] = field(default_factory=dict)
    no_reactions: set[int] = field(default_factory=set)
    reactions: dict[tuple[int, int], list[tuple[float, str]]] = field(default_factory=dict)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    next_file: int = 1
    token: str | None = None


class Forum:
    """Mixed into FakeTelegram; relies on its message ids, update queue and change notification."""

    forum: ForumState

    def _message_id(self, chat_id: int) -> int:
        raise NotImplementedError

    def _push_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _stored(self, message: BotMessage) -> None:
        raise NotImplementedError

    # --- the person's side ------------------------------------------------------------------

    def make_forum(self, chat_id: int, *, reactions: bool = True) -> None:
        """Turn the (negative) ``chat_id`` into a forum supergroup, optionally without reactions."""
        self.forum.forums.add(chat_id)
        if not reactions:
            self.forum.no_reactions.add(chat_id)

    def disable_reactions(self, chat_id: int) -> None:
        """Reactions are turned off in this chat (setMessageReaction answers REACTION_INVALID)."""
        self.forum.no_reactions.add(chat_id)

    def delete_topic(self, chat_id: int, thread: int) -> None:
        """Someone deleted the topic in Telegram."""
        self.forum.topics[(chat_id, thread)].deleted = True

    def topics(self, chat_id: int) -> list[Topic]:
        """The chat's topics, oldest first (deleted ones too, marked)."""
        return [t for (c, _), t in sorted(self.forum.topics.items()) if c == chat_id]

    def reactions(self, chat_id: int, message_id: int) -> list[str]:
        """Every reaction the bot set on the message, in order."""
        return [emoji for _, emoji in self.forum.reactions.get((chat_id, message_id), [])]

    def chat_of(self, chat_id: int) -> dict[str, Any]:
        """The Bot API Chat object."""
        if chat_id > 0:
            return {"id": chat_id, "type": "private"}
        chat: dict[str, Any] = {"id": chat_id, "type": "supergroup", "title": "Claude Code"}
        if chat_id in self.forum.forums:
            chat["is_forum"] = True
        return chat

    def person_message(
        self, user: FakeUser, chat_id: int, thread: int | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Push a message update from ``user`` (``body`` adds text, caption, photo, ...)."""
        message: dict[str, Any] = {
            "message_id": self._message_id(chat_id),
            "date": int(time.time()),
            "chat": self.chat_of(chat_id),
            "from": user.to_api(),
            **body,
        }
        if thread is not None:
            message["message_thread_id"] = thread
            message["is_topic_message"] = True
        return self._push_update("message", message)

    def send_file(
        self,
        user: FakeUser,
        kind: FileKind,
        data: bytes,
        *,
        name: str = "file.bin",
        mime: str = "application/octet-stream",
        caption: str | None = None,
        chat_id: int | None = None,
        thread: int | None = None,
    ) -> dict[str, Any]:
        """The person sends a photo, a document or a voice note."""
        file_id = f"F{self.forum.next_file:06d}"
        self.forum.next_file += 1
        folder = {"photo": "photos", "document": "documents", "voice": "voice"}[kind]
        self.forum.files[file_id] = (data, f"{folder}/{file_id}_{name}")
        meta: dict[str, Any] = {"file_id": file_id, "file_unique_id": file_id + "u", "file_size": len(data)}
        body: dict[str, Any]
        if kind == "photo":
            body = {"photo": [{**meta, "width": 640, "height": 480}]}
        elif kind == "voice":
            body = {"voice": {**meta, "duration": 3, "mime_type": mime}}
        else:
            body = {"document": {**meta, "file_name": name, "mime_type": mime}}
        if caption is not None:
            body["caption"] = caption
        return self.person_message(user, user.id if chat_id is None else chat_id, thread, body)

    # --- the Bot API ------------------------------------------------------------------------

    def check_thread(self, chat_id: int, thread: Any) -> int | None:
        """The message_thread_id of a send, checked like Telegram does."""
        if thread is None:
            return None
        topic = self.forum.topics.get((chat_id, int(thread)))
        if topic is None or topic.deleted:
            raise ApiError(400, "Bad Request: message thread not found")
        if topic.closed:
            raise ApiError(400, "Bad Request: TOPIC_CLOSED")
        return topic.thread

    def _topic(self, params: dict[str, Any]) -> Topic:
        chat_id = int(params.get("chat_id", 0))
        topic = self.forum.topics.get((chat_id, int(params.get("message_thread_id", 0))))
        if topic is None or topic.deleted:
            raise ApiError(400, "Bad Request: TOPIC_ID_INVALID")
        return topic

    async def _create_topic(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params.get("chat_id", 0))
        name = str(params.get("name") or "")
        if chat_id not in self.forum.forums:
            raise ApiError(400, "Bad Request: the chat is not a forum")
        if not 1 <= len(name) <= 128:
            raise ApiError(
                400, "Bad Request: TOPIC_TITLE_EMPTY" if not name else "Bad Request: TOPIC_TITLE_TOO_LONG"
            )
        thread = self._message_id(chat_id)  # a topic's id is the id of its service message
        self.forum.topics[(chat_id, thread)] = Topic(chat_id, thread, name)
        return {"message_thread_id": thread, "name": name, "icon_color": 7322096}

    async def _edit_topic(self, params: dict[str, Any]) -> bool:
        topic = self._topic(params)
        name = params.get("name")
        if name is None or name == topic.name:
            raise ApiError(400, "Bad Request: TOPIC_NOT_MODIFIED")
        topic.name = str(name)
        topic.renames.append(topic.name)
        return True

    async def _close_topic(self, params: dict[str, Any]) -> bool:
        topic = self._topic(params)
        if topic.closed:
            raise ApiError(400, "Bad Request: TOPIC_NOT_MODIFIED")
        topic.closed = True
        return True

    async def _reopen_topic(self, params: dict[str, Any]) -> bool:
        topic = self._topic(params)
        if not topic.closed:
            raise ApiError(400, "Bad Request: TOPIC_NOT_MODIFIED")
        topic.closed = False
        return True

    async def _set_reaction(self, params: dict[str, Any]) -> bool:
        chat_id, message_id = int(params.get("chat_id", 0)), int(params.get("message_id", 0))
        reaction = params.get("reaction") or []
        if not isinstance(reaction, list) or len(reaction) > 1:
            raise ApiError(400, "Bad Request: REACTIONS_TOO_MANY")
        emojis = [r.get("emoji") for r in reaction if isinstance(r, dict) and r.get("type") == "emoji"]
        if len(emojis) != len(reaction) or any(e not in REACTIONS for e in emojis):
            raise ApiError(400, "Bad Request: REACTION_INVALID")
        if chat_id in self.forum.no_reactions:
            raise ApiError(400, "Bad Request: REACTION_INVALID")
        log = self.forum.reactions.setdefault((chat_id, message_id), [])
        log.extend((time.monotonic(), str(e)) for e in emojis)
        return True

    async def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = str(params.get("file_id", ""))
        if file_id not in self.forum.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        data, path = self.forum.files[file_id]
        if len(data) > 20 * 1024 * 1024:
            raise ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": f"{file_id}u",
            "file_size": len(data),
            "file_path": path,
        }

    def file_bytes(self, path: str) -> bytes | None:
        """The content served at ``/file/bot<token>/<path>``."""
        for data, stored in self.forum.files.values():
            if stored == path:
                return data
        return None

    def upload(self, kind: Literal["photo", "document"], params: dict[str, Any]) -> BotMessage:
        """The bot's sendPhoto / sendDocument, kept with the bytes it uploaded."""
        chat_id = int(params.get("chat_id", 0))
        thread = self.check_thread(chat_id, params.get("message_thread_id"))
        upload = params.get("_files", {}).get(kind)
        if upload is None:
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        name, data = upload
        file_id = f"B{self.forum.next_file:06d}"
        self.forum.next_file += 1
        self.forum.files[file_id] = (data, f"bot/{file_id}_{name}")
        message = BotMessage(
            chat_id,
            self._message_id(chat_id),
            str(params.get("caption") or ""),
            thread=thread,
            file={"kind": kind, "file_id": file_id, "name": name, "size": len(data), "data": data},
        )
        self._stored(message)
        return message

    async def _send_photo(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.upload("photo", params).to_api()

    async def _send_document(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.upload("document", params).to_api()

    async def _download(self, request: Request) -> Response:
        if self.forum.token is not None and request.path_params["token"] != self.forum.token:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        data = self.file_bytes(request.path_params["path"])
        if data is None:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        return Response(data, media_type="application/octet-stream")
