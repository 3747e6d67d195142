"""A tiny random BERT sentence-transformer built in-process, for fast tests (no hub, no download)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SAMPLE_TEXTS = [
    "rook a chess piece that moves along ranks and files",
    "bishop a piece that moves diagonally across the board",
    "knight a piece that moves in an L shape and can jump",
    "pawn the least valuable piece moving forward one square",
    "castling a move of the king and a rook together",
    "checkmate a position in which the king is attacked and cannot escape",
    "gradient descent an optimisation method following the negative gradient",
    "overfitting when a model learns noise in the training data",
]


def tiny_vocab(texts: Iterable[str]) -> dict[str, int]:
    """A deterministic WordPiece vocab: special tokens, every word and every character (sorted).

    Built by hand rather than trained, because the tokenizers trainer breaks ties differently from
    one process to the next and the tests need the same model every time.
    """
    words = sorted({w for t in texts for w in t.lower().split()})
    chars = sorted({c for w in words for c in w})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars),
              *(w for w in words if len(w) > 1)]
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def build_tiny_model(path: str | Path, texts: Iterable[str] = SAMPLE_TEXTS, *, hidden: int = 32,
                     layers: int = 2, seed: int = 0) -> Path:
    """Write a random 2-layer BERT with a WordPiece vocab built from `texts`; returns its directory."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    raw = path / "_hf"
    raw.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(vocab=tiny_vocab(texts), do_lower_case=True)
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(raw)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=128)
    BertModel(config).save_pretrained(raw)
    transformer = models.Transformer(str(raw), max_seq_length=64)
    dim = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    pooling = models.Pooling(dim(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    out = path / "tiny-model"
    model.save(str(out))
    return out
