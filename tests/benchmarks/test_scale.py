"""The scale benchmark's smallest mode: every random-vector part at N = 2,000, and the cost-model arithmetic."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_scale  # noqa: E402


def test_fit_recovers_a_quadratic_and_scale_up_shows_its_arithmetic() -> None:
    points = {10_000: 1.0, 100_000: 100.0, 200_000: 400.0}
    assert bench_scale.fit(points)["exponent"] == pytest.approx(2.0, abs=1e-3)
    up = bench_scale.scale_up(points, 2.0)
    assert up["from_size"] == 200_000 and up["factor"] == 25.0 and up["seconds"] == 10_000.0


def test_smallest_mode_writes_every_part_and_the_cost_model(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    bench_scale.main(["--parts", "search,ann,select,worker", "--sizes", "2000", "--repeats", "1",
                      "--recall-sample", "50", "--out", str(out)])
    result = json.loads(out.read_text())
    assert set(result["parts"]) == {"search", "ann", "select", "worker"}
    for section in result["parts"].values():
        assert section["load_before"] and section["load_after"] and section["command"]
    search = result["parts"]["search"]["sizes"]["2000"]
    assert not search["extrapolated"] and set(search["k"]) == {"100", "30"}
    assert search["k"]["100"]["peak_rss_mb"] > 0
    ann = result["parts"]["ann"]["sizes"]["2000"]["kinds"]
    assert 0.0 <= ann["hnsw"]["sweep"][0]["recall@100"] <= 1.0 and ann["ivf"]["nlist"] >= 1
    model = result["cost_model_1m"]
    assert model["search_flat_k100"]["at_1m_wall"]["factor"] == 250_000.0  # (1M / 2,000)^2
    assert model["memory"]["vectors_one_side_gb"] == 1.536
    assert model["ray_worker_memory"]["per_worker_mb_by_workers"]["8"] > 0
    assert result["machine"]["cores"] >= 1
