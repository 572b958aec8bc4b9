"""What recording metrics costs on the hot path: signed POST → channel notification, metrics off vs on.

Two serve subprocesses, one started with ``--metrics false`` and one with
``--metrics true``, each with an MCP client attached. Requests alternate
between them so both see the same machine noise. Each sample is the time from
just before the POST to the arrival of its ``notifications/claude/channel``
frame on serve's stdout. The floor, measured in the same run, is an HTTP round
trip to the same sidecar that does no work (a 404). A second table gives the
in-process cost of one delivery's telemetry (the events of one response).

    python -m benchmarks.metrics_overhead [--n 400] [--warmup 50]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from mcp_cascade.events import Event
from mcp_cascade.response import make_response
from mcp_cascade.signing import Signer, load_or_create_secret
from mcp_cascade.telemetry import JsonLog, Metrics, Telemetry
from mcp_cascade.testing import ServeProcess


def summary(samples_ms: list[float]) -> str:
    """p50 / p90 / p99 / mean in milliseconds."""
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return (
        f"{pick(0.5):8.3f} {pick(0.9):8.3f} {pick(0.99):8.3f} {statistics.fmean(ordered):8.3f}"
        f"   n={len(ordered)}"
    )


async def one_round_trip(client: httpx.AsyncClient, serve: ServeProcess, url: str, signer: Signer) -> float:
    """Milliseconds from the POST to its channel notification."""
    response = make_response(type="message", user_id=1, text="benchmark")
    raw = response.to_json()
    headers = {**signer.headers(response.id, raw), "content-type": "application/json"}
    before = len(serve.channel())
    start = time.perf_counter()
    answer = await client.post(url, content=raw, headers=headers)
    if answer.status_code != 200:
        raise RuntimeError(f"POST answered {answer.status_code}: {answer.text}")
    notes = await serve.wait_channel(before + 1)
    received: float = notes[before]["_received"]
    return (received - start) * 1000


async def measure(n: int, warmup: int) -> None:
    """Run both serves and print the figures side by side."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        signer = Signer(load_or_create_secret(home))
        off = ServeProcess(home, "metrics-off", args=["--metrics", "false", "--log-level", "warning"])
        on = ServeProcess(home, "metrics-on", args=["--metrics", "true", "--log-level", "warning"])
        async with off, on, httpx.AsyncClient() as client:
            urls = {}
            for serve in (off, on):
                urls[serve.session] = (await serve.wait_session()).webhook_url
                await serve.initialize()
            floor_url = urls["metrics-on"].replace("/webhook/bridge-response", "/no-such-route")
            samples: dict[str, list[float]] = {"metrics-off": [], "metrics-on": [], "floor": []}
            for i in range(warmup + n):
                for serve in (off, on) if i % 2 else (on, off):
                    took = await one_round_trip(client, serve, urls[serve.session], signer)
                    if i >= warmup:
                        samples[serve.session].append(took)
                start = time.perf_counter()
                await client.get(floor_url)
                if i >= warmup:
                    samples["floor"].append((time.perf_counter() - start) * 1000)
            scrape = await client.get(urls["metrics-on"].replace("/webhook/bridge-response", "/metrics"))
            assert "mcp_cascade_responses_total" in scrape.text
    print("signed POST → channel notification (ms)")
    print(f"{'':24} {'p50':>8} {'p90':>8} {'p99':>8} {'mean':>8}")
    print(f"{'floor: HTTP 404 round trip':24} {summary(samples['floor'])}")
    print(f"{'--metrics false':24} {summary(samples['metrics-off'])}")
    print(f"{'--metrics true':24} {summary(samples['metrics-on'])}")
    delta = statistics.median(samples["metrics-on"]) - statistics.median(samples["metrics-off"])
    print(f"difference of medians: {delta * 1000:+.1f} µs")


def telemetry_cost(n: int) -> None:
    """The events one response produces in serve, through Telemetry with metrics off and on (µs)."""
    events = [
        Event("received", tier=1, response_id="r", correlation_id="c", session="s"),
        Event("durable", tier=1, response_id="r", correlation_id="c", session="s", latency_ms=0.2),
        Event("pushed", tier=1, response_id="r", correlation_id="c", session="s", latency_ms=0.5),
        Event(
            "http_request",
            latency_ms=0.6,
            level="debug",
            fields={"method": "POST", "route": "/w", "status": 200},
        ),
    ]
    print("\ntelemetry of one response in process (µs; logs to memory, no audit)")
    for label, metrics in (("--metrics false", None), ("--metrics true", Metrics())):
        telemetry = Telemetry(log=JsonLog(io.StringIO(), "warning"), audit=None, metrics=metrics)
        timings: list[float] = []
        for _ in range(n):
            start = time.perf_counter()
            for event in events:
                telemetry.emit(event)
            timings.append((time.perf_counter() - start) * 1e6)
        print(f"{label:24} p50 {statistics.median(timings):7.2f}   p99 {sorted(timings)[int(0.99 * n)]:7.2f}")
        telemetry.close()


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=400, help="measured round trips per configuration")
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    anyio.run(measure, args.n, args.warmup)
    telemetry_cost(20_000)


if __name__ == "__main__":
    main()
