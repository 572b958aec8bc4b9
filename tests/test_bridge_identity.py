"""serve sends nothing to a bridge that cannot prove who it is (finding 2); the bridge API refuses replays."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_cascade.errors import SignatureError
from mcp_cascade.receive.outbound import BRIDGE_JSON
from mcp_cascade.sessions import SessionPaths
from mcp_cascade.signing import Replays
from tests.bridge_helpers import sessions, tool_json
from tests.other_user import attacker_argv, attacker_python, needs_second_uid
from tests.test_send_cli import send

pytestmark = pytest.mark.anyio
QUESTION = "Deploy with token sk-live-do-not-leak?"

# Another account's listener on a port it took over. It plays every trick open to it without the
# secret: it echoes each request's own body and signature headers back, and answers ask_user with
# a request id of its choosing.
_IMPOSTOR = r"""
import http.server, json, sys
port, log = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with open(log, "ab") as f:
            f.write(self.path.encode() + b" " + body + b"\n")
        if self.path != "/api/hello":
            body = json.dumps({"request_id": "chosen-by-attacker", "message_id": 1}).encode()
        self.send_response(200)
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            self.send_header(name, self.headers.get(name, ""))
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), H)
print("ready", flush=True)
server.serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def impostor(shared: Path) -> Iterator[tuple[int, Path, int]]:
    """The other account's listener; yields its port, the log of what it received and its pid."""
    port, log = _free_port(), shared / "impostor.log"
    script = shared / "impostor.py"
    script.write_text(_IMPOSTOR)
    script.chmod(0o644)  # whatever this process's umask (cli.main sets 077), the other account reads it
    child = subprocess.Popen(
        attacker_argv(attacker_python(), str(script), str(port), str(log)), stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        yield port, log, child.pid
    finally:
        child.kill()
        child.wait(timeout=10)


def _publish(home: Path, pid: int, port: int) -> None:
    (home / "bridge").mkdir(mode=0o700, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    info = {"protocol": 1, "pid": pid, "api_url": url, "health_url": url + "/health"}
    (home / BRIDGE_JSON).write_text(json.dumps(info))


async def _ask_and_status(home: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    async with sessions(home, "victim") as (serve,):
        asked = await serve.call_tool("ask_user", {"question": QUESTION, "options": ["yes", "no"]})
        status = tool_json(await serve.call_tool("cascade_status", {}))
    return asked, status


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (as a SIGKILLed bridge's pid in bridge.json)."""
    probe = subprocess.Popen(["true"])
    probe.wait()
    return probe.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A live process of ours that is not a bridge (as after pid reuse)."""
    ours = subprocess.Popen(["sleep", "60"])
    yield ours.pid
    ours.kill()
    ours.wait()


@needs_second_uid
@pytest.mark.parametrize(
    ("pid", "why"),
    [
        # The bridge crashed (bridge.json names a dead pid), and another account took its port.
        ("dead_pid", "not running"),
        # The same with the pid reused by a process of ours: only the signed challenge tells.
        ("live_pid", "not signed with this home's secret"),
    ],
)
async def test_a_bridge_port_taken_by_another_user_never_gets_a_question(
    home: Path, impostor: tuple[int, Path, int], pid: str, why: str, request: pytest.FixtureRequest
) -> None:
    """Finding 2: questions (and permission previews) go only to a bridge that proved itself."""
    port, log, _ = impostor
    _publish(home, request.getfixturevalue(pid), port)
    asked, status = await _ask_and_status(home)
    assert asked.get("isError") and why in asked["content"][0]["text"], asked
    received = log.read_bytes().decode() if log.exists() else ""
    assert QUESTION not in received
    assert all(line.startswith("/api/hello ") for line in received.splitlines())
    assert status["bridge"]["verified"] is False and why in status["bridge"]["reason"]


def test_a_request_id_is_accepted_once_within_the_window() -> None:
    now = [1000.0]
    replays = Replays(cap=3, clock=lambda: now[0])
    replays.first_use("out:a")
    with pytest.raises(SignatureError, match="already used"):
        replays.first_use("out:a")
    now[0] += 601  # past twice the tolerance: the timestamp check refuses it by then
    replays.first_use("out:a")
    for name in ("b", "c", "d"):
        replays.first_use("out:" + name)
    replays.first_use("out:a")  # the cap evicted the oldest


@needs_second_uid
async def test_answers_never_go_to_a_session_port_held_by_another_users_process(
    home: Path, impostor: tuple[int, Path, int]
) -> None:
    """The same attack the other way: session.json names a live pid, but another account's."""
    port, log, pid = impostor
    paths = SessionPaths(home, "victim")
    paths.dir.mkdir(parents=True)
    url = f"http://127.0.0.1:{port}"
    info = {
        "protocol": 1,
        "session_id": "victim",
        "pid": pid,
        "webhook_url": url + "/webhook/bridge-response",
    }
    paths.session_json.write_text(json.dumps({**info, "health_url": url + "/health"}))
    answer = "the answer only the session may read"
    done = await send(home, "--session", "victim", "--text", answer, "--id", "tg:1:1")
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert receipt["status"] == "queued" and receipt["tier"] == 3
    assert not log.exists() or answer not in log.read_text()
