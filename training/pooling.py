"""Pooling settings on a loaded model: the mode, whether the instruction prefix is pooled, the padding side.

KURE pools over the text only, not the `query: ` prefix: sentence-transformers' Pooling does that
with `include_prompt=False` (the prompt's token count travels with each batch, in training too).
Decoder embedding models (Qwen3-Embedding, e5-mistral) take the last token's hidden state: with
left padding every sequence ends in a real token, and a causal model with rotary positions encodes
a left-padded text as it encodes it alone. All three are saved with the model (Pooling config,
tokenizer config), so `SentenceTransformer(path)` pools the same way without pipe.
"""

from __future__ import annotations

from typing import Any, Literal

from pipe_embed.pipeline.core.errors import ConfigError


def tokenizer_of(model: Any) -> Any:
    """The text tokenizer of a sentence-transformers model (a multimodal processor's own tokenizer)."""
    processor = model[0].processor if hasattr(model[0], "processor") else model.tokenizer
    return getattr(processor, "tokenizer", processor)


def pooler_of(model: Any) -> Any | None:
    """The model's Pooling module, if it has one."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    return next((m for m in model if isinstance(m, Pooling)), None)


def configure_pooling(model: Any, *, pooling: str = "model", pool_prompt: bool | None = None,
                      padding_side: Literal["auto", "left", "right"] = "auto", model_name: str = "") -> None:
    """Set the pooling mode, prompt pooling and padding side on `model` (None/"model"/"auto": as it is).

    `padding_side` auto pads on the left when the model pools the last token, and then makes sure
    the tokenizer has a pad token (decoder tokenizers often have only an end-of-text token).
    """
    pooler = pooler_of(model)
    if pooler is None and (pooling != "model" or pool_prompt is not None):
        field = "pooling" if pooling != "model" else "pool_prompt"
        raise ConfigError(f"field '{field}': the model {model_name or '(in memory)'} has no Pooling module to "
                          "configure")
    if pooler is not None:
        if pooling != "model":
            pooler.pooling_mode = pooling
        if pool_prompt is not None:
            pooler.include_prompt = pool_prompt
    last_token = pooler is not None and "lasttoken" in _modes(pooler.pooling_mode)
    side = ("left" if last_token else None) if padding_side == "auto" else padding_side
    if side is None:
        return
    tokenizer = tokenizer_of(model)
    tokenizer.padding_side = side
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"field 'padding_side': the tokenizer of {model_name or 'the model'} has neither a "
                              "pad nor an end-of-text token to pad with",
                              hint="pass a tokenizer that defines one with --tokenizer")
        tokenizer.pad_token = tokenizer.eos_token


def _modes(mode: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return (mode,) if isinstance(mode, str) else tuple(mode)


__all__ = ["configure_pooling", "pooler_of", "tokenizer_of"]
