"""The audit trail: one file per home, appended by several processes at once, rotated by size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mcp_cascade.events import Event
from mcp_cascade.ops.audit import AuditTrail, read_audit

ROOT = Path(__file__).resolve().parent.parent
WRITER = """
import sys
from pathlib import Path
from mcp_cascade.ops.audit import AuditTrail
from mcp_cascade.events import Event

path, max_bytes, writer, count = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
trail = AuditTrail(path, max_bytes, "writer-" + writer)
sys.stdin.readline()  # start together
for seq in range(count):
    fields = {"writer": writer, "seq": seq, "pad": "x" * 120}
    trail.write(Event("received", response_id=f"{writer}:{seq}", fields=fields))
trail.close()
"""


def run_writers(path: Path, max_bytes: int, writers: int, count: int) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(max_bytes), str(w), str(count)],
            stdin=subprocess.PIPE,
            cwd=ROOT,
        )
        for w in range(writers)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()
    for p in procs:
        assert p.wait(timeout=120) == 0


def test_processes_appending_together_across_one_rotation_lose_and_tear_nothing(tmp_path: Path) -> None:
    writers, count = 6, 1500
    record = len(
        json.dumps(
            {"ts": 1795930766.763729, "component": "writer-0", "pid": 123456, "event": "received"}
            | {"response_id": "0:1499", "writer": "0", "seq": 1499, "pad": "x" * 120},
            separators=(",", ":"),
        )
    )
    total = writers * count * (record + 1)
    max_bytes = int(total * 0.6)  # exactly one rotation is due; a second rename would lose a generation
    path = tmp_path / "audit.jsonl"
    run_writers(path, max_bytes, writers, count)

    rotated = tmp_path / "audit.jsonl.1"
    assert rotated.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.lock"]
    lines = rotated.read_bytes().splitlines() + path.read_bytes().splitlines()
    records = [json.loads(line) for line in lines]  # a torn or interleaved line would not parse
    seen = sorted((int(r["writer"]), int(r["seq"])) for r in records)
    assert seen == [(w, s) for w in range(writers) for s in range(count)]
    # Each writer's records stay in its own order across the two files.
    for w in range(writers):
        mine = [int(r["seq"]) for r in records if int(r["writer"]) == w]
        assert mine == sorted(mine)
    assert len(list(read_audit(tmp_path))) == writers * count


def test_rotation_keeps_one_previous_generation_and_reading_skips_a_torn_last_line(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl", 4096, "serve")
    for n in range(200):
        trail.write(Event("pushed", response_id=f"r:{n}", tier=1, latency_ms=1.23456))
    trail.close()
    assert (tmp_path / "audit.jsonl").stat().st_size <= 4096
    assert (tmp_path / "audit.jsonl.1").stat().st_size <= 4096
    with (tmp_path / "audit.jsonl").open("ab") as fh:
        fh.write(b'{"ts": 1, "event": "recei')  # a crash mid-write
    ids = [r["response_id"] for r in read_audit(tmp_path)]
    assert ids == [f"r:{n}" for n in range(200 - len(ids), 200)]
    assert all(r["component"] == "serve" for r in read_audit(tmp_path))


def test_rotation_keeps_the_configured_generations_in_order_and_drops_the_oldest(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl", 4096, "serve", generations=4)
    for n in range(600):
        trail.write(Event("pushed", response_id=f"r:{n}", tier=1))
    trail.close()
    kept = sorted(p.name for p in tmp_path.glob("audit.jsonl*") if not p.name.endswith(".lock"))
    assert kept == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3", "audit.jsonl.4"]
    ids = [int(r["response_id"].split(":")[1]) for r in read_audit(tmp_path)]
    # Oldest generation first, no gap, ending with the newest record; only whole files were dropped.
    assert ids == list(range(600 - len(ids), 600))
    assert len(ids) > 4 * 4096 // 120


def test_a_record_carries_who_wrote_it_and_the_event_fields(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl", 1 << 20, "bridge")
    trail.write(
        Event(
            "failover",
            tier=3,
            response_id="tg:1:2",
            correlation_id="c-1",
            session="s",
            reason="HTTP 503",
            fields={"from_tier": 1, "to_tier": 3, "kind": "http_5xx"},
        )
    )
    trail.close()
    (record,) = read_audit(tmp_path)
    assert record["component"] == "bridge"
    assert record["event"] == "failover"
    assert (record["from_tier"], record["to_tier"], record["kind"]) == (1, 3, "http_5xx")
    assert record["reason"] == "HTTP 503"
    assert isinstance(record["pid"], int) and isinstance(record["ts"], float)
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == 0o600
