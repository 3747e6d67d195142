"""Mining methods by name: `pipe mine --method NAME` and `[mine.NAME]` settings look them up here.

Each method is one module declaring `METHOD` (a `base.Method`); adding one is a new module plus one
line below, or `METHODS.register(...)` from a user's own code.
"""

from __future__ import annotations

from pipe_embed.mining.methods.base import Context, Method, Retrieved
from pipe_embed.pipeline.core.plugins import Registry

METHODS: Registry[Method] = Registry("mining method", "method", {
    "bm25": "pipe_embed.mining.methods.bm25:METHOD",
    "faiss": "pipe_embed.mining.methods.faiss:METHOD",
    "hybrid": "pipe_embed.mining.methods.hybrid:METHOD",
})

__all__ = ["METHODS", "Method", "Context", "Retrieved"]
