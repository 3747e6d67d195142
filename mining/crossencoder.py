"""Optional cross-encoder check: rescore surviving candidates, drop those judged positive.

All (anchor, candidate) pairs of all queries go to the cross-encoder in one batched `predict`
call (sorted by length by the library), together with each anchor's positive. A candidate the
cross-encoder scores at least as high as the anchor's positive (minus a margin) is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipe_embed.pipeline.core.errors import PipeError


def load_cross_encoder(name_or_path: str, device: str | None = None) -> Any:
    """Load a sentence-transformers CrossEncoder offline; failure is one clear line."""
    import os
    from pathlib import Path

    from sentence_transformers import CrossEncoder

    from pipe_embed.pipeline.core.models import resolve_model

    resolved = resolve_model(name_or_path)
    local = Path(resolved).is_dir()
    try:
        return CrossEncoder(resolved, device=device, num_labels=1,
                            local_files_only=local or os.environ.get("HF_HUB_OFFLINE") == "1")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipeError(f"cannot load cross-encoder '{name_or_path}': {first}",
                        hint="pass a local cross-encoder directory with --cross-encoder") from exc


def cross_encoder_drops(model: Any, anchors: Sequence[str], positives: Sequence[str], texts: Sequence[str],
                        cand_ids: np.ndarray, survivors: np.ndarray, *, margin: float = 0.0,
                        batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(drop mask, candidate scores, positive scores): drop where ce(candidate) >= ce(positive) - margin."""
    rows, cols = np.nonzero(survivors)
    pairs = [(anchors[r], texts[cand_ids[r, c]]) for r, c in zip(rows.tolist(), cols.tolist())]
    pairs += list(zip(anchors, positives))
    if not pairs:
        return np.zeros(survivors.shape, dtype=bool), np.zeros(survivors.shape, np.float32), np.zeros(0, np.float32)
    scores = np.asarray(model.predict(pairs, batch_size=batch_size, show_progress_bar=False,
                                      convert_to_numpy=True), dtype=np.float32).reshape(len(pairs), -1)[:, -1]
    cand_scores = np.full(survivors.shape, -np.inf, dtype=np.float32)
    cand_scores[rows, cols] = scores[: len(rows)]
    pos_scores = scores[len(rows):]
    drops = np.zeros(survivors.shape, dtype=bool)
    drops[rows, cols] = cand_scores[rows, cols] >= pos_scores[rows] - margin
    return drops, cand_scores, pos_scores
