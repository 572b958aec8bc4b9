"""The CDF pictures: the points drawn, and nothing written when there is nothing to draw."""

from __future__ import annotations

from pathlib import Path

from mcp_cascade.ops.cdf import cdf_points, write_cdf_svg


def test_points_end_at_the_largest_value_with_fraction_one() -> None:
    points = cdf_points([5.0, 1.0, 3.0, 2.0, 4.0], points=2)
    assert points[0] == (1.0, 0.2) and points[-1] == (5.0, 1.0)
    assert [x for x, _ in points] == sorted(x for x, _ in points)


def test_nothing_to_draw_writes_nothing(tmp_path: Path) -> None:
    """`soak --scenario none --load --json` has no scenario latencies: it used to crash in pygal."""
    picture = tmp_path / "soak.svg"
    assert write_cdf_svg(picture, "empty", {}) is False
    assert write_cdf_svg(picture, "empty", {"a": [], "b": [0.0, -1.0]}) is False
    assert not picture.exists()
