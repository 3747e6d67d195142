"""The README's main job (scripts/main.sh) end to end on a tiny budget: the real chain of commands.

crawl --dry-run -> compose -> mine bm25 -> mine faiss -> train -> iterate -> report, run by the very
script a user runs (without its install step: the `pipe` of this environment is on PATH), with the
tiny in-process model instead of all-MiniLM-L6-v2 so that it takes seconds per stage.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tiny_config(path: Path, model: Path) -> Path:
    """The main job's settings, with the tiny model and a budget of a few steps."""
    path.write_text(f"""
[compose]
dev_fraction = 0.1
test_fraction = 0.1

[mine]
model = "{model}"
num_negatives = 2
range_max = 10

[train]
model = "{model}"
batch_size = 16
max_steps = 2
eval_steps = 0
query_max_length = 16
passage_max_length = 32

[iterate]
model = "{model}"
rounds = 2
""")
    return path


@pytest.mark.slow
def test_main_script_runs_the_whole_chain_and_prints_absolute_results(tmp_path: Path, tiny_model_path: Path):
    config = tiny_config(tmp_path / "pipe.toml", tiny_model_path)
    data = tmp_path / "data"
    env = {**os.environ, "PIPE_NO_INSTALL": "1", "PIPE_MAIN_CONFIG": str(config), "PIPE_DATA_DIR": str(data),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "main.sh")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    lines = result.stdout.strip().splitlines()
    best = next(line for line in lines if line.startswith("Best model"))
    model_dir = Path(best.split(": ", 1)[1])
    assert model_dir.is_absolute() and (model_dir / "config.json").is_file()
    report = Path(next(line for line in lines if line.startswith("Report:")).split(": ", 1)[1])
    assert report.is_absolute() and report.is_file() and "<html" in report.read_text().lower()
    for stage in ("crawl", "compose", "mine", "train", "eval", "iterate", "report"):
        assert any((data / stage).iterdir()), f"no {stage} artifact"

    # The loaded model is a plain sentence-transformers model.
    from sentence_transformers import SentenceTransformer

    vectors = SentenceTransformer(str(model_dir), device="cpu").encode(["rook", "bishop"])
    assert vectors.shape[0] == 2

    # Running it again is all cache hits.
    again = subprocess.run(["bash", str(ROOT / "scripts" / "main.sh")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "wrote" not in again.stderr and again.stderr.count("up to date") >= 7
