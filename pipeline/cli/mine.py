"""`pipe mine`: hard negatives for the train split by a mining method (bm25, faiss, hybrid …)."""

from __future__ import annotations

from typing import Any

from pipe_embed.mining.stage import MineConfig, run_mine, warm_cache
from pipe_embed.pipeline.cli.app import Shared, open_store, report, stage_command
from pipe_embed.pipeline.cli.inputs import data_ref
from pipe_embed.pipeline.cli.options import config_parameters, option_parameter, overrides
from pipe_embed.pipeline.core.config import load_config
from pipe_embed.pipeline.core.console import info
from pipe_embed.pipeline.core.errors import ConfigError


def mine(shared: Shared, values: dict[str, Any]) -> None:
    """Mine negatives into a mine artifact, or with --shard only pre-encode one shard into the cache."""
    store = open_store(shared)
    config = load_config(MineConfig, "mine", shared.config, overrides(MineConfig, values))
    shard, num_shards = values["shard"], values["num_shards"]
    if (shard is None) != (num_shards is None):
        raise ConfigError("--shard and --num-shards go together")
    source = data_ref(store, values["from_ref"], shared.config) or "compose@latest"
    if shard is not None and num_shards is not None:
        done = warm_cache(store, config, source, shard, num_shards)
        info(f"shard {shard + 1}/{num_shards}: encoded {done['anchors_encoded']} anchors and "
             f"{done['texts_encoded']} candidate texts into the cache; run `pipe mine` without --shard to finish")
        return
    report(run_mine(store, config, source, shared.force))


stage_command(
    "mine", "Mine hard negatives (bm25, faiss, hybrid …) with positive-aware false-negative filters; each "
            "method's own settings are in its panel.",
    [option_parameter("from_ref", str | None, None, "--from", metavar="REF", shown_default="compose@latest",
                      help="A compose artifact, a mine artifact to re-mine, or a pairs file (composed first)."),
     *config_parameters(MineConfig),
     option_parameter("shard", int | None, None, "--shard", help="Only encode shard i into the cache (no artifact)."),
     option_parameter("num_shards", int | None, None, "--num-shards", help="Number of encoding shards.")],
    mine, configs={"mine": MineConfig})
