"""Deterministic train/dev/test assignment by anchor, so no term lands in two splits."""

from __future__ import annotations

import hashlib

from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.pairs import normalize_key


def split_of(anchor: str, dev_fraction: float, test_fraction: float, seed: int) -> str:
    """The split of an anchor: a hash of (seed, normalised anchor) mapped to [0, 1) and cut.

    A threshold on a per-anchor hash keeps each anchor in its split when the glossary grows.
    """
    if dev_fraction < 0 or test_fraction < 0 or dev_fraction + test_fraction >= 1:
        raise ConfigError("dev_fraction and test_fraction must be >= 0 and sum to less than 1")
    digest = hashlib.sha256(f"{seed}:{normalize_key(anchor)}".encode("utf-8")).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    if point < test_fraction:
        return "test"
    if point < test_fraction + dev_fraction:
        return "dev"
    return "train"
