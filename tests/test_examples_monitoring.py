"""examples/prometheus and examples/grafana: accepted by promtool, and naming only metrics that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcp_cascade.ops.telemetry import Metrics
from mcp_cascade.testing import ServeProcess

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROMETHEUS = EXAMPLES / "prometheus"
DASHBOARD = EXAMPLES / "grafana" / "mcp-cascade.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)
METRIC = re.compile(r"\b((?:mcp_cascade|http_server)_[a-z0-9_]+)")
FAMILIES = (
    "mcp_cascade_responses_total",
    "mcp_cascade_delivery_latency_seconds",
    "mcp_cascade_failover_total",
    "mcp_cascade_breaker_state",
    "mcp_cascade_tier_up",
    "mcp_cascade_queue_depth",
    "mcp_cascade_oldest_pending_age_seconds",
    "mcp_cascade_inotify_overflows_total",
    "mcp_cascade_rescans_total",
)


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def exported_sample_names() -> set[str]:
    """Every sample name a process exports (counters' _total, histograms' _bucket/_count/_sum)."""
    metrics = Metrics()
    try:
        text = metrics.render().decode()
    finally:
        metrics.shutdown()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


@needs_promtool
def test_promtool_accepts_the_alert_rules_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@needs_promtool
@pytest.mark.anyio
async def test_promtool_accepts_the_scrape_config_with_targets_written_by_inspect(
    home: Path, tmp_path: Path
) -> None:
    config_dir = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS, config_dir)
    async with ServeProcess(home, "scraped") as serve:
        info = await serve.wait_session()
        with anyio.fail_after(60):
            wrote = await anyio.to_thread.run_sync(
                lambda: subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "mcp_cascade",
                        "inspect",
                        "targets",
                        "--home",
                        str(home),
                        "--write",
                        str(config_dir / "mcp-cascade-targets.json"),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
                )
            )
            assert wrote.returncode == 0, wrote.stderr
            checked = await anyio.to_thread.run_sync(
                lambda: promtool("check", "config", "prometheus.yml", cwd=config_dir)
            )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "WARNING" not in checked.stdout + checked.stderr
    (group,) = json.loads((config_dir / "mcp-cascade-targets.json").read_text())
    assert group["targets"] == [info.webhook_url.split("/")[2]]
    assert group["labels"] == {"component": "serve", "session": "scraped", "label": info.label}


def test_the_alert_rules_name_only_exported_metrics() -> None:
    exported = exported_sample_names()
    used = set(METRIC.findall((PROMETHEUS / "alerts.yml").read_text()))
    assert used, "no metric found in the rules"
    assert used <= exported, used - exported


def test_the_dashboard_loads_has_a_panel_per_metric_family_and_names_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    exported = exported_sample_names()
    assert used <= exported, used - exported
    for family in FAMILIES:
        assert any(name.startswith(family) for name in used), f"no panel shows {family}"
    assert any(name.startswith("http_server_request_duration_seconds") for name in used)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
