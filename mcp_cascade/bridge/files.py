"""Files both ways: what a person sends is saved for the session; what a session attaches is checked.

Inbound, a photo, document or voice note is downloaded (Telegram's Bot API
serves at most 20 MB; ``file_max_bytes`` may lower that), written 0600 into
``sessions/<id>/files/`` under the home, and the response carries its local
path, MIME type and size in ``meta`` (``file_path``, ``file_mime``,
``file_size``, ``file_kind``) so Claude can open it. Outbound, the ``reply``
tool names files relative to the session's folder; a path that leaves the
folder (``..``, an absolute path elsewhere, a symlink out) is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mcp_cascade.bridge.updates import Attachment
from mcp_cascade.durable import BINARY, NOFOLLOW, fsync_file
from mcp_cascade.errors import CascadeError
from mcp_cascade.sessions import SessionPaths

BOT_API_DOWNLOAD_LIMIT = 20 * 1024 * 1024
BOT_API_UPLOAD_LIMIT = 50 * 1024 * 1024
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FileRefused(CascadeError):
    """A file the bridge will not carry (outside the session's folder, missing, too large)."""


def save(home: Path, session: str, message_id: int, file: Attachment, data: bytes) -> Path:
    """Write ``data`` 0600 under the session's ``files/`` directory; returns the path."""
    folder = SessionPaths(home, session).dir / "files"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = _UNSAFE.sub("_", file.name).strip("._") or file.kind
    path = folder / f"{message_id}-{name[:100]}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW | BINARY, 0o600)
    try:
        os.write(fd, data)
        fsync_file(fd)  # F_FULLFSYNC on macOS
    finally:
        os.close(fd)
    return path


def meta(path: Path, file: Attachment, size: int) -> dict[str, str]:
    """The response meta that tells the session where the file is."""
    return {"file_path": str(path), "file_mime": file.mime, "file_size": str(size), "file_kind": file.kind}


def attachment(cwd: str, name: str) -> Path:
    """``name`` (relative to the session's folder ``cwd``) resolved, checked to stay inside it."""
    root = Path(cwd).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise FileRefused(f"{name!r} is outside the session's folder {root}")
    if not path.is_file():
        raise FileRefused(f"{name!r} is not a file in {root}")
    if path.stat().st_size > BOT_API_UPLOAD_LIMIT:
        raise FileRefused(f"{name!r} is over Telegram's {BOT_API_UPLOAD_LIMIT // 2**20} MB upload limit")
    return path
