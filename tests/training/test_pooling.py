"""Pooling without the instruction prefix (KURE), and last-token pooling with left padding on a tiny decoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.config import TrainConfig
from pipe_embed.training.pooling import configure_pooling, pooler_of, tokenizer_of
from pipe_embed.training.train import MODEL_DIR, prepare_model, run_train
from tests.training.tiny_decoder import build_tiny_decoder

PROMPT = "query: "


@pytest.fixture(scope="module")
def tiny_decoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_decoder(tmp_path_factory.mktemp("decoder"))


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_pool_prompt_false_means_over_the_text_tokens_only(tiny_model_path: Path, tmp_path: Path) -> None:
    config = TrainConfig(model=str(tiny_model_path), device="cpu", query_prompt=PROMPT, pool_prompt=False)
    model = prepare_model(config, "cpu")
    assert pooler_of(model).include_prompt is False
    text = "rook a chess piece"
    tokens = model.encode([PROMPT + text], output_value="token_embeddings")[0].numpy()
    prompt_tokens = len(tokenizer_of(model)(PROMPT)["input_ids"]) - 1  # [CLS] + the prompt, not [SEP]
    assert 2 < prompt_tokens < len(tokens)
    by_hand = unit(tokens[prompt_tokens:].mean(axis=0))
    assert np.allclose(model.encode_query([text])[0], by_hand, atol=1e-6)
    with_prompt = unit(tokens.mean(axis=0))  # what the default (prompt pooled too) gives
    assert not np.allclose(by_hand, with_prompt, atol=1e-3)
    # saved into the model: plain sentence-transformers pools the same way
    from sentence_transformers import SentenceTransformer

    model.save(str(tmp_path / "m"), create_model_card=False)
    again = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert np.allclose(again.encode_query([text])[0], by_hand, atol=1e-6)


def test_pool_prompt_unset_keeps_the_models_setting(tiny_model_path: Path) -> None:
    model = prepare_model(TrainConfig(model=str(tiny_model_path), device="cpu"), "cpu")
    assert pooler_of(model).include_prompt is True
    pooler_of(model).include_prompt = False
    configure_pooling(model)  # every setting "as the model has it"
    assert pooler_of(model).include_prompt is False


def test_training_excludes_the_prompt_too(store: Store, tiny_model_path: Path, mine_artifact,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's batches carry the prompt length, so the prompt is left out while training as well."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    seen: list[tuple[bool, int | None]] = []
    original = Pooling.forward

    def spy(self, features, **kwargs):
        if torch.is_grad_enabled():
            length = features.get("prompt_length")
            seen.append((self.include_prompt, None if length is None else int(torch.as_tensor(length).flatten()[0])))
        return original(self, features, **kwargs)

    monkeypatch.setattr(Pooling, "forward", spy)
    config = TrainConfig(model=str(tiny_model_path), device="cpu", batch_size=4, max_steps=1, eval_steps=0,
                         patience=0, eval_base=False, query_prompt=PROMPT, pool_prompt=False, warmup_ratio=0.0)
    art = run_train(store, config, mine_artifact.ref).artifact
    prompt_tokens = len(tokenizer_of(prepare_model(config, "cpu"))(PROMPT)["input_ids"]) - 1
    assert (False, prompt_tokens) in seen  # the anchors' batch: pooled without its prompt tokens
    assert (False, None) in seen  # the documents' batch has no prompt
    saved = json.loads((art.file(MODEL_DIR) / "1_Pooling" / "config.json").read_text())
    assert saved["include_prompt"] is False


def test_last_token_pooling_pads_left_and_pools_the_last_real_token(tiny_decoder_path: Path, tmp_path: Path) -> None:
    config = TrainConfig(model=str(tiny_decoder_path), device="cpu", pooling="lasttoken")
    model = prepare_model(config, "cpu")
    tokenizer = tokenizer_of(model)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == tokenizer.eos_token == "</s>"
    texts = ["rook", "a chess piece that moves along ranks and files"]
    features = model.tokenize(texts)
    mask = features["attention_mask"]
    assert mask[0, 0] == 0 and mask[:, -1].all()  # the short text is padded on the left
    with torch.no_grad():
        out = model.forward(dict(features))
    last = out["token_embeddings"][:, -1]  # the hidden state of each text's last real token (its </s>)
    assert torch.allclose(out["sentence_embedding"], torch.nn.functional.normalize(last, dim=-1), atol=1e-6)
    # padding does not change a text's vector: the short text alone gives the same
    alone = model.encode(texts[:1])[0]
    assert np.allclose(out["sentence_embedding"][0].numpy(), alone, atol=1e-5)
    # saved into the model: plain sentence-transformers pads and pools the same way
    model.save(str(tmp_path / "m"), create_model_card=False)
    from sentence_transformers import SentenceTransformer

    again = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    assert tokenizer_of(again).padding_side == "left" and pooler_of(again).pooling_mode == "lasttoken"
    assert np.allclose(again.encode(texts), out["sentence_embedding"].numpy(), atol=1e-5)


def test_padding_side_can_be_forced_and_a_model_without_pooling_says_so(tiny_decoder_path: Path) -> None:
    model = prepare_model(TrainConfig(model=str(tiny_decoder_path), device="cpu", pooling="lasttoken",
                                      padding_side="right"), "cpu")
    assert tokenizer_of(model).padding_side == "right"
    mean = prepare_model(TrainConfig(model=str(tiny_decoder_path), device="cpu"), "cpu")
    assert pooler_of(mean).pooling_mode == "mean" and tokenizer_of(mean).pad_token is None  # untouched
    from sentence_transformers import SentenceTransformer

    bare = SentenceTransformer(modules=[mean[0]], device="cpu")
    with pytest.raises(ConfigError, match="'pool_prompt'.*no Pooling"):
        configure_pooling(bare, pool_prompt=False)


def test_a_decoder_trains_with_last_token_pooling(store: Store, tiny_decoder_path: Path, mine_artifact) -> None:
    from sentence_transformers import SentenceTransformer

    config = TrainConfig(model=str(tiny_decoder_path), device="cpu", batch_size=4, max_steps=2, lr=1e-3,
                         eval_steps=0, patience=0, eval_base=False, pooling="lasttoken")
    art = run_train(store, config, mine_artifact.ref).artifact
    assert art.metrics["train"]["steps"] == 2
    trained = SentenceTransformer(str(art.file(MODEL_DIR)), device="cpu")
    assert tokenizer_of(trained).padding_side == "left" and pooler_of(trained).pooling_mode == "lasttoken"
    assert trained.encode(["rook", "a piece that moves diagonally across the board"]).shape == (2, 32)
