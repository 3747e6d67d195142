"""A tiny random decoder-only (Llama) sentence-transformer built in-process: last-token pooling, no hub."""

from __future__ import annotations

from pathlib import Path

from tests.tiny_model import SAMPLE_TEXTS


def build_tiny_decoder(path: str | Path, texts: list[str] = SAMPLE_TEXTS, *, hidden: int = 32, seed: int = 0) -> Path:
    """Write a 2-layer random Llama with a word-level tokenizer that appends `</s>`, pooled on the last
    token (as decoder embedding models are); returns the sentence-transformers model directory."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, processors
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    path = Path(path)
    raw = path / "_hf"
    raw.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in texts for w in t.lower().split()} | {"query", ":", "passage"})
    vocab = {tok: i for i, tok in enumerate(["<unk>", "<s>", "</s>", *words])}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", model_max_length=64)  # no pad token, as Llama's
    tokenizer.save_pretrained(raw)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=None)
    LlamaModel(config).save_pretrained(raw)
    transformer = models.Transformer(str(raw), max_seq_length=64)
    dim = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    pooling = models.Pooling(dim(), pooling_mode="mean")  # a wrong default on purpose: pipe sets lasttoken
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    out = path / "tiny-decoder"
    model.save(str(out), create_model_card=False)
    return out
