"""``mcp-cascade send`` as a script would run it: a subprocess, a receipt on stdout, an exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mcp_cascade.testing import ServeProcess
from tests.cascade_helpers import meta_tier, seen
from tests.other_user import attacker_argv, needs_second_uid

pytestmark = pytest.mark.anyio


async def send(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("MCP_CASCADE_HOME", None)
    command = [sys.executable, "-m", "mcp_cascade", "send", "--home", str(home), *args]
    with anyio.fail_after(30):
        result = await anyio.run_process(command, env=env, check=False)
    return subprocess.CompletedProcess(
        command, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


async def test_send_delivers_through_tier_1_and_prints_the_receipt(home: Path) -> None:
    async with ServeProcess(home, "cli-ok") as serve:
        await serve.wait_session()
        await serve.initialize()
        done = await send(home, "--session", "cli-ok", "--text", "ship it", "--id", "cli:1", "--user-id", "7")
        assert done.returncode == 0, done.stderr
        receipt = json.loads(done.stdout)
        assert receipt["status"] == "delivered"
        assert receipt["tier"] == 1
        assert receipt["response_id"] == "cli:1"
        assert receipt["attempts"][0]["outcome"] == "ok"
        assert done.stderr == ""  # nothing worth a look at the default log level
        await serve.wait_channel(1)
        assert meta_tier(serve, "cli:1") == "1"
        assert serve.channel()[0]["params"]["content"] == "ship it"
        again = await send(home, "--session", "cli-ok", "--text", "ship it", "--id", "cli:1")
        assert json.loads(again.stdout)["status"] == "delivered"  # a duplicate: already there
        assert seen(serve) == {"cli:1": 1}


async def test_send_answers_a_permission_prompt(home: Path) -> None:
    async with ServeProcess(home, "cli-perm") as serve:
        await serve.wait_session()
        await serve.initialize()
        done = await send(home, "--session", "cli-perm", "--permission", "abcde", "--behavior", "deny")
        assert done.returncode == 0, done.stderr
        (note,) = await serve.wait_channel(1, method="notifications/claude/channel/permission")
        assert note["params"] == {"request_id": "abcde", "behavior": "deny"}


async def test_send_queues_for_a_session_that_is_not_running(home: Path) -> None:
    done = await send(home, "--session", "cli-later", "--callback", "opt:2")
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert (receipt["status"], receipt["tier"]) == ("queued", 3)
    assert len(list((home / "sessions" / "cli-later" / "inbox" / "new").iterdir())) == 1


async def test_send_exits_non_zero_with_a_clear_message_when_nothing_took_it(home: Path) -> None:
    done = await send(
        home, "--session", "cli-none", "--text", "x", "--tier", "webhook", "--overall-timeout-ms", "200"
    )
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "failed"
    assert "mcp-cascade send: not delivered to cli-none: session not running" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--session", "cli-x", "--permission", "abcde"], "--permission needs --behavior"),
        (["--session", "cli-x", "--text", "x", "--behavior", "allow"], "only goes with --permission"),
        (["--session", "Not Valid", "--text", "x"], "$.session"),
        (["--session", "cli-x", "--callback", "x" * 65], "$.callback_data"),
        (["--session", "cli-x", "--text", "x", "--webhook-timeout-ms", "0"], "webhook_timeout_ms"),
    ],
)
async def test_send_rejects_bad_input_with_exit_code_2_and_names_the_problem(
    home: Path, args: list[str], message: str
) -> None:
    done = await send(home, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr
    assert "Traceback" not in done.stderr


async def test_send_reads_the_answer_from_stdin_or_a_file_keeping_it_out_of_ps(
    home: Path, tmp_path: Path
) -> None:
    """Finding 7: ``--text`` puts the answer on the command line, where ``ps`` shows it to every user."""
    secret_answer = "the deploy password is hunter2\nsecond line"
    answer_file = tmp_path / "answer.txt"
    answer_file.write_text("from a file\n")
    env = dict(os.environ)
    env.pop("MCP_CASCADE_HOME", None)
    async with ServeProcess(home, "cli-stdin") as serve:
        await serve.wait_session()
        await serve.initialize()
        command = [sys.executable, "-m", "mcp_cascade", "send", "--home", str(home), "--session", "cli-stdin"]
        with anyio.fail_after(30):
            piped = await anyio.run_process(
                [*command, "--text-file", "-", "--id", "cli:stdin"],
                input=(secret_answer + "\n").encode(),
                env=env,
            )
        assert secret_answer not in " ".join(piped.args if isinstance(piped.args, list) else [])
        done = await send(home, "--session", "cli-stdin", "--text-file", str(answer_file), "--id", "cli:file")
        assert done.returncode == 0, done.stderr
        missing = await send(home, "--session", "cli-stdin", "--text-file", str(tmp_path / "none"))
        await serve.wait_channel(2)
    assert [n["params"]["content"] for n in serve.channel()] == [secret_answer, "from a file"]
    assert missing.returncode == 2 and "text-file" in missing.stderr and "cannot read" in missing.stderr


@needs_second_uid
async def test_another_user_running_ps_sees_a_text_answer_but_not_one_read_from_stdin(home: Path) -> None:
    """Finding 7: ``send --text`` showed the answer to every account; ``--text-file -`` keeps it in a pipe."""
    env = dict(os.environ)
    base = [sys.executable, "-m", "mcp_cascade", "send", "--home", str(home), "--tier", "file"]
    seen = {}
    for how, extra in (("stdin", ["--text-file", "-"]), ("argv", ["--text", "argv-answer-visible"])):
        answer = "stdin-answer-hidden" if how == "stdin" else "argv-answer-visible"
        async with await anyio.open_process([*base, "--session", "away", *extra], env=env) as sender:
            sender.send_signal(signal.SIGSTOP)  # held while the other account looks (its argv is set)
            ps = await anyio.run_process(attacker_argv("ps", "-ww", "-eo", "args"))
            seen[how] = answer in ps.stdout.decode()
            sender.send_signal(signal.SIGCONT)
            assert sender.stdin is not None
            await sender.stdin.send(answer.encode())
            await sender.stdin.aclose()
            with anyio.fail_after(30):
                assert await sender.wait() == 0
    assert seen == {"stdin": False, "argv": True}
