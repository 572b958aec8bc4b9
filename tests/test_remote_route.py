"""Where a sender routes a session, read from the registry of a real nats-server."""

from __future__ import annotations

from pathlib import Path

import anyio
import nats as nats_client
import pytest

from mcp_cascade.config import load_config
from mcp_cascade.remote.registry import Registration, bucket, now
from tests.remote_helpers import nats, nats_env, needs_nats, remote_sender, two_homes

pytestmark = [pytest.mark.anyio, needs_nats]


async def test_a_session_of_another_host_read_moments_ago_is_routed_without_asking_again(
    tmp_path: Path,
) -> None:
    home_a, home_b = two_homes(tmp_path)
    async with nats(tmp_path) as server:
        nc = await nats_client.connect(server.url)
        try:
            kv = await bucket(nc.jetstream(), load_config(home_b, nats_env(server.url)).config)
            entry = Registration("far", "host-b", "node-b", 4242, "/w", "w", "", now(), "running")
            await kv.put("far", entry.to_json())
            async with remote_sender(home_a, server.url) as (sender, _):
                assert sender.remote is not None
                assert await sender.remote.place("far") == ("remote", "served on host-b (running)")
                await kv.delete("far")  # only a registry lookup could notice
                assert (await sender.remote.place("far"))[0] == "remote"
                assert await sender.remote.place("never-seen") == ("local", "not in the NATS registry")
                with anyio.fail_after(10):
                    while (await sender.remote.place("far"))[0] == "remote":  # noqa: ASYNC110 - ages out
                        await anyio.sleep(0.1)
        finally:
            await nc.close()
