"""The pooled client (long-lived senders) and the one-shot client (``mcp-cascade send``) read every
answer and every fault of a real sidecar the same way, so the walk cannot tell which one it has."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_cascade.response import make_response
from mcp_cascade.send._http import Client, Exchanged, LazyClient, OneShotClient
from mcp_cascade.signing import Signer, load_or_create_secret
from mcp_cascade.testing import ServeProcess
from mcp_cascade.testing.faults import Fault, FaultProxy
from mcp_cascade.wire import WEBHOOK_PATH, webhook_request

pytestmark = pytest.mark.anyio

BUDGET_S = 0.3


async def exchanges(client: Client, proxy: FaultProxy, signer: Signer, tag: str) -> dict[str, Exchanged]:
    """What ``client`` reports for one POST under each fault, and once nobody listens."""
    seen: dict[str, Exchanged] = {}
    await proxy.listen()
    try:
        for fault in (Fault.PASS, Fault.HTTP_503, Fault.RESET, Fault.BLACKHOLE, "refused"):
            if fault == "refused":
                await proxy.refuse()
            else:
                proxy.set(fault)
            response = make_response(type="message", user_id=1, text="x", id=f"{tag}:{fault}", session="s")
            body, headers = webhook_request(signer, response)
            seen[fault] = await client.exchange(proxy.url(WEBHOOK_PATH), body, headers, BUDGET_S)
    finally:
        await client.aclose()
    return seen


async def test_both_clients_report_an_answer_a_refusal_a_reset_and_silence_alike(home: Path) -> None:
    async with ServeProcess(home, "s") as serve:
        info = await serve.wait_session()
        await serve.initialize()
        signer = Signer(load_or_create_secret(home))
        host, port = info.webhook_url.split("//")[1].split("/")[0].split(":")
        async with FaultProxy(host, int(port)) as proxy:
            pooled = await exchanges(LazyClient(), proxy, signer, "pooled")
            oneshot = await exchanges(OneShotClient(), proxy, signer, "one-shot")
    for seen in (pooled, oneshot):
        assert seen[Fault.PASS][:3] == ("ok", "", 200)
        assert seen[Fault.PASS][3]["status"] == "delivered"
        assert seen[Fault.HTTP_503] == (
            "ok",
            "",
            503,
            {"status": "unavailable", "error": "cannot persist: injected fault"},
        )
        assert seen[Fault.RESET][0] == "error" and seen[Fault.RESET][2:] == (None, None)
        assert seen[Fault.BLACKHOLE] == ("timeout", "no answer within 300 ms", None, None)
        assert seen["refused"][0] == "refused"
    # A reset's reason is each library's own wording; a refusal's is anyio's under both.
    assert pooled["refused"] == oneshot["refused"]
