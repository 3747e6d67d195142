"""`--method bm25`: lexical candidates, ranked by BM25 over the candidate texts (bm25s or rank_bm25)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipe_embed.mining.bm25 import TokenizerConfig, make_index, tokenize
from pipe_embed.mining.groups import Scorer, bm25_scorer
from pipe_embed.mining.methods.base import Context, Method, Retrieved
from pipe_embed.pipeline.core.config import option
from pipe_embed.pipeline.core.errors import ConfigError

OFF = ("", "none", "off", "false")  # a stopword list or stemmer given as one of these is switched off
# The stopword lists bm25s ships: a language name, or its two-letter code.
STOPWORDS = {"english": "en", "english_plus": "en_plus", "german": "de", "dutch": "nl", "french": "fr",
             "spanish": "es", "portuguese": "pt", "italian": "it", "russian": "ru", "swedish": "sv",
             "norwegian": "no", "chinese": "zh", "turkish": "tr", "korean": "ko", "danish": "da"}


def _off(value: str | None) -> str | None:
    """None for a switched-off setting ("none", "off", …), else the value."""
    return None if value is None or value.strip().lower() in OFF else value


def stemmer_languages() -> list[str]:
    """The languages PyStemmer stems (bm25s stems with it)."""
    import Stemmer

    return list(Stemmer.algorithms())


@dataclass
class BM25Params:
    """BM25 settings: the engine and its scoring, and how texts become terms."""

    bm25_backend: Literal["bm25s", "rank_bm25"] = option("bm25s", "BM25 engine: bm25s, or rank_bm25 (the slow reference).")
    bm25_method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = option("lucene", "bm25s scoring variant.")
    k1: float = option(1.5, "BM25 k1: term-frequency saturation (>= 0).")
    b: float = option(0.75, "BM25 b: document-length normalisation, from 0 (none) to 1 (full).")
    lowercase: bool = option(True, "Lowercase texts.")
    stopwords: str | None = option("english", "Stopword list: a language bm25s ships (english, german, french …), or none.")
    stemmer: str | None = option("english", "PyStemmer language (english, french, german …), or none.")

    def validate(self) -> None:
        """Check ranges and language names; raises ConfigError naming the field."""
        if self.k1 < 0:
            raise ConfigError(f"field 'k1': must be >= 0, got {self.k1}")
        if not 0 <= self.b <= 1:
            raise ConfigError(f"field 'b': must be between 0 and 1, got {self.b}")
        stopwords = _off(self.stopwords)
        if stopwords is not None and stopwords not in STOPWORDS and stopwords not in STOPWORDS.values():
            raise ConfigError(f"field 'stopwords': no stopword list for {stopwords!r}",
                              hint=f"choose none or one of {', '.join(STOPWORDS)}")
        stemmer = _off(self.stemmer)
        if stemmer is not None:
            import Stemmer

            try:
                Stemmer.Stemmer(stemmer)
            except KeyError:
                raise ConfigError(f"field 'stemmer': PyStemmer has no stemmer for {stemmer!r}",
                                  hint=f"choose none or one of {', '.join(stemmer_languages())}") from None

    def tokenizer(self) -> TokenizerConfig:
        """The tokenisation subset of the settings."""
        return TokenizerConfig(lowercase=self.lowercase, stopwords=_off(self.stopwords), stemmer=_off(self.stemmer))


def lexical(ctx: Context) -> Retrieved:
    """BM25 candidates of every anchor, with the index and the anchors' terms (for pair scores)."""
    start = time.perf_counter()
    params = ctx.params(BM25Params)
    tok = params.tokenizer()
    query_tokens = tokenize(ctx.anchors, tok)
    corpus_tokens = tokenize(ctx.corpus.texts, tok)
    index = make_index(corpus_tokens, params.bm25_backend, k1=params.k1, b=params.b, method=params.bm25_method)
    cands = index.search(query_tokens, ctx.k, batch_size=min(ctx.config.search_batch_size, 2048))
    ctx.seconds["bm25"] = time.perf_counter() - start
    return Retrieved(cands, bm25=index, query_tokens=query_tokens, seconds=ctx.seconds)


@dataclass(frozen=True)
class BM25Method(Method):
    """BM25 retrieval; scores are BM25 scores (so no default relative margin)."""

    def retrieve(self, ctx: Context) -> Retrieved:
        return lexical(ctx)

    def pair_scores(self, found: Retrieved, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return found.bm25.score_pairs(found.query_tokens, rows, ids)

    def scorer(self, ctx: Context, found: Retrieved) -> Scorer:
        return bm25_scorer(found.bm25, found.query_tokens or [])


METHOD = BM25Method("bm25", "lexical candidates ranked by BM25", BM25Params, uses=("bm25",))
