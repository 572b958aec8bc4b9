"""LiveConfig: reload on change or SIGHUP; a bad file is rejected and the old configuration stays."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_cascade.config import Config
from mcp_cascade.live_config import LiveConfig
from mcp_cascade.testing import ServeProcess
from mcp_cascade.watchers import BackendName
from tests.cascade_helpers import Recorder

pytestmark = pytest.mark.anyio


def write_config(home: Path, text: str) -> None:
    tmp = home / ".config.toml.tmp"
    tmp.write_text(text)
    tmp.rename(home / "config.toml")


def test_reload_applies_a_changed_file_and_reports_what_changed(home: Path) -> None:
    recorder = Recorder()
    live = LiveConfig(home, {}, observer=recorder)
    assert live.current.webhook_timeout_ms == 100
    write_config(home, "webhook_timeout_ms = 250\nsidecar_port = 8123\n")
    assert live.reload() is True
    assert live.current.webhook_timeout_ms == 250
    (event,) = recorder.named("config_reloaded")
    assert event.fields["changed"] == ["sidecar_port", "webhook_timeout_ms"]
    assert event.fields["on_restart"] == ["sidecar_port"]


def test_a_bad_file_is_rejected_with_a_log_line_and_the_old_configuration_stays(home: Path) -> None:
    recorder = Recorder()
    write_config(home, "bridge_timeout_ms = 700\n")
    live = LiveConfig(home, {}, observer=recorder)
    write_config(home, "bridge_timeout_ms = -5\n")
    assert live.reload() is False
    assert live.current.bridge_timeout_ms == 700
    (event,) = recorder.named("config_rejected")
    assert event.level == "error"
    assert event.reason is not None and "bridge_timeout_ms" in event.reason
    write_config(home, "no_such_key = 1\n")
    assert live.reload() is False
    write_config(home, "tier_order = [\n")
    assert live.reload() is False
    assert live.current.bridge_timeout_ms == 700


def test_environment_and_flags_still_win_over_the_reloaded_file(home: Path) -> None:
    live = LiveConfig(
        home, {"MCP_CASCADE_WEBHOOK_TIMEOUT_MS": "300", "PATH": "/bin"}, {"bridge_timeout_ms": 900}
    )
    write_config(home, "webhook_timeout_ms = 50\nbridge_timeout_ms = 60\nslow_after = 7\n")
    assert live.reload()
    assert live.current.webhook_timeout_ms == 300
    assert live.current.bridge_timeout_ms == 900
    assert live.current.slow_after == 7
    assert live.loaded.sources["webhook_timeout_ms"] == "env MCP_CASCADE_WEBHOOK_TIMEOUT_MS"


async def test_watch_reloads_when_config_toml_is_replaced_or_written_in_place(
    home: Path, backend: BackendName
) -> None:
    recorder = Recorder()
    live = LiveConfig(home, {"MCP_CASCADE_WATCHER": backend})
    async with anyio.create_task_group() as tg:
        await tg.start(live.watch, recorder)
        write_config(home, "breaker_threshold = 9\n")
        await recorder.wait_for(lambda: live.current.breaker_threshold == 9)
        (home / "config.toml").write_text("breaker_threshold = 11\n")
        await recorder.wait_for(lambda: live.current.breaker_threshold == 11)
        (home / "config.toml").unlink()
        await recorder.wait_for(lambda: live.current.breaker_threshold == 5)
        tg.cancel_scope.cancel()


async def test_watch_reloads_on_sighup(home: Path) -> None:
    recorder = Recorder()
    live = LiveConfig(home, {})
    (home / "config.toml").write_text("slow_after = 4\n")  # before the watch: no file event will come
    async with anyio.create_task_group() as tg:
        await tg.start(live.watch, recorder)
        assert live.current.slow_after == 3
        os.kill(os.getpid(), signal.SIGHUP)
        await recorder.wait_for(lambda: live.current.slow_after == 4)
        tg.cancel_scope.cancel()


async def test_a_second_watch_on_the_same_config_waits_instead_of_competing(
    home: Path, backend: BackendName
) -> None:
    recorder = Recorder()
    live = LiveConfig(home, {"MCP_CASCADE_WATCHER": backend})
    async with anyio.create_task_group() as tg:
        await tg.start(live.watch, recorder)
        await tg.start(live.watch, recorder)
        write_config(home, "slow_after = 6\n")
        await recorder.wait_for(lambda: live.current.slow_after == 6)
        assert len(recorder.named("config_reloaded")) == 1
        tg.cancel_scope.cancel()


async def test_serve_survives_sighup_and_its_inbox_watcher_takes_the_new_rescan_period(home: Path) -> None:
    async with ServeProcess(home, "live-a") as serve:
        info = await serve.wait_session()
        await serve.initialize()
        async with httpx.AsyncClient() as client:
            before = (await client.get(info.health_url + "/file")).json()
            assert before["rescan_every_s"] == 1.0
            (home / "config.toml").write_text('file_rescan_ms = 250\nlog_level = "debug"\n')
            serve.kill(signal.SIGHUP)
            with anyio.fail_after(10):
                # serve's stderr is a file: nothing signals a line appearing in it.
                while '"event":"config_reloaded"' not in serve.stderr_path.read_text():  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            after = (await client.get(info.health_url + "/file")).json()
        assert after["rescan_every_s"] == 0.25
        status = await serve.call_tool("cascade_status")
        assert not status.get("isError")
        assert serve.exit_code is None
        lines = [ln for ln in serve.stderr_path.read_text().splitlines() if "config_reloaded" in ln]
        assert '"on_restart":["log_level"]' in lines[0]  # read once at start-up: applies on restart
    assert serve.bad_lines == []


def test_subscribers_get_each_new_configuration_and_nothing_for_a_rejected_one(home: Path) -> None:
    live = LiveConfig(home, {})
    got: list[int] = []
    live.subscribe(lambda config: got.append(config.file_rescan_ms))
    write_config(home, "file_rescan_ms = 300\n")
    assert live.reload()
    write_config(home, "file_rescan_ms = 1\n")  # below the minimum
    assert not live.reload()
    assert live.reload() is False
    write_config(home, "file_rescan_ms = 300\n")
    assert live.reload()  # unchanged: nobody is called
    assert got == [300]


@pytest.mark.parametrize(
    "poison",
    [
        b"webhook_timeout_ms = 1e400\n",
        b'log_file = "\\ud800"\n',
        b'legacy_dir = "a\\u0000b"\n',
        b"webhook_timeout_ms = 99999999999999999999999999999999999999\n",
        b"\xff\xfe not UTF-8\n",
        b"allow = [1, 2, 3.5e300]\n",
    ],
)
def test_no_config_file_ends_the_reloader_and_the_old_configuration_stays(home: Path, poison: bytes) -> None:
    recorder = Recorder()
    live = LiveConfig(home, {}, observer=recorder)
    (home / "config.toml").write_bytes(poison)
    assert live.reload() is False
    assert live.current.webhook_timeout_ms == 100
    assert recorder.named("config_rejected")


def test_a_directory_in_place_of_config_toml_is_rejected_not_raised(home: Path) -> None:
    live = LiveConfig(home, {}, observer=Recorder())
    (home / "config.toml").mkdir()
    assert live.reload() is False


def test_a_failing_subscriber_neither_ends_the_reload_nor_starves_the_others(home: Path) -> None:
    recorder = Recorder()
    live = LiveConfig(home, {}, observer=recorder)
    seen: list[int] = []

    def broken(config: Config) -> None:
        raise RuntimeError("a subscriber's own bug")

    live.subscribe(broken)
    live.subscribe(lambda config: seen.append(config.webhook_timeout_ms))
    write_config(home, "webhook_timeout_ms = 250\n")
    assert live.reload() is True
    assert seen == [250]
    assert any("a subscriber's own bug" in (e.reason or "") for e in recorder.events)
