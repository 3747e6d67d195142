"""The `pipe` command line: the only package that imports typer. Each module adds one stage's commands."""

from __future__ import annotations

from pipe_embed.pipeline.cli import compose, crawl, iterate, mine, store_cmds, sweep, train  # noqa: F401  (each import registers its commands)
from pipe_embed.pipeline.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
