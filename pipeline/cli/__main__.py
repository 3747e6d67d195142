"""`python -m pipe_embed.pipeline.cli`: the same as the `pipe` command (e.g. under torch.distributed.run)."""

from pipe_embed.pipeline.cli import main

main()
