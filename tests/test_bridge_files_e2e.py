"""Files both ways, end to end (fake Bot API → bridge → serve).

A photo from the person reaches the session as a response whose meta names a
0600 file under the session's home, byte for byte; the reply tool attaches a
file from the session's folder, and a path that leaves the folder is refused
with nothing sent.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mcp_cascade.testing import ServeProcess
from mcp_cascade.testing.fake_api import FakeTelegram
from tests.bridge_helpers import ALICE, allow, bridge, greet, tool_json

pytestmark = pytest.mark.anyio
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def saved(meta: dict[str, str]) -> tuple[Path, bytes, int]:
    """The file a response's meta names: its path, content and permission bits."""
    path = Path(meta["file_path"])
    return path, path.read_bytes(), stat.S_IMODE(path.stat().st_mode)


async def test_a_photo_reaches_the_session_as_a_readable_file_and_a_reply_attaches_one(
    home: Path, tmp_path: Path, fake: FakeTelegram
) -> None:
    allow(home, ALICE.id)
    folder = tmp_path / "proj-a"
    folder.mkdir()
    (folder / "chart.png").write_bytes(PNG)
    (tmp_path / "outside.txt").write_text("not yours")
    async with ServeProcess(home, "proj-a", cwd=folder) as a, bridge(home, fake):
        await a.wait_session()
        await a.initialize()
        await greet(fake)

        fake.send_file(ALICE, "photo", PNG, caption="what is this?")
        fake.send_file(ALICE, "document", b"a,b\n1,2\n", name="data.csv", mime="text/csv")
        fake.send_file(ALICE, "voice", b"OggS" + b"\x00" * 500, mime="audio/ogg")
        photo, document, voice = await a.wait_channel(3)
        assert photo["params"]["content"] == "what is this?"
        meta = photo["params"]["meta"]
        path, content, mode = saved(meta)
        assert content == PNG and path.is_relative_to(home / "sessions" / "proj-a") and mode == 0o600
        assert (meta["file_mime"], meta["file_size"], meta["file_kind"]) == (
            "image/jpeg",
            str(len(PNG)),
            "photo",
        )
        doc = document["params"]["meta"]
        assert saved(doc)[1] == b"a,b\n1,2\n" and doc["file_mime"] == "text/csv"
        spoken = voice["params"]["meta"]
        assert saved(spoken)[1].startswith(b"OggS") and (spoken["file_kind"], spoken["file_mime"]) == (
            "voice",
            "audio/ogg",
        )

        said = tool_json(
            await a.call_tool("reply", {"chat_id": ALICE.id, "text": "here", "files": ["chart.png"]})
        )
        sent = [m for m in fake.messages(ALICE.id) if m.message_id in said["message_ids"] and m.file]
        assert len(sent) == 1 and sent[0].file is not None
        assert sent[0].file["kind"] == "photo" and sent[0].file["data"] == PNG
        assert sent[0].file["name"] == "chart.png"

        before = len(fake.messages(ALICE.id))
        refused = await a.call_tool("reply", {"chat_id": ALICE.id, "text": "x", "files": ["../outside.txt"]})
        assert refused.get("isError") and "outside the session's folder" in refused["content"][0]["text"]
        assert len(fake.messages(ALICE.id)) == before
