"""The candidate corpus of a mine run and, per anchor, the texts that may never be its negatives.

Candidates are every positive of the compose corpus plus an optional extra corpus file. Texts are
grouped by their normalised form (`normalize_key`) so that case/whitespace duplicates of a positive,
of the anchor, or of another definition of the same term are excluded together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipe_embed.mining.selection import Exclusions
from pipe_embed.pipeline.core.errors import InputError
from pipe_embed.pipeline.core.pairs import PairRow, as_text, doc_id, iter_jsonl, iter_lines, normalize_key


@dataclass
class CandidateCorpus:
    """Texts that can be negatives, with stable ids and normalised-text groups."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict)
    groups: dict[str, list[int]] = field(default_factory=dict)  # normalised text -> indices

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str, id_: str | None = None) -> int:
        """Add a text (once per id) and return its index."""
        id_ = id_ or doc_id(text)
        if id_ in self.position:
            return self.position[id_]
        index = len(self.texts)
        self.ids.append(id_)
        self.texts.append(text)
        self.position[id_] = index
        self.groups.setdefault(normalize_key(text), []).append(index)
        return index

    def index_of_text(self, text: str) -> int:
        """Index of a text, adding it when absent (a positive must always be in the corpus)."""
        return self.add(text)

    def group(self, text: str) -> list[int]:
        """Indices of every text that normalises like `text`."""
        return self.groups.get(normalize_key(text), [])


def read_extra_corpus(path: str | Path) -> list[dict[str, Any]]:
    """An extra corpus: JSONL of {"text", optional "id"} or plain text, one document per line.

    A bad file (missing, a directory, not UTF-8, a row whose text or id has the wrong type) is one
    InputError naming file, line and column.
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    if path.suffix.lower() == ".jsonl":
        for number, obj in iter_jsonl(path, "corpus file"):
            if "text" not in obj:
                raise InputError(path, f"corpus row without a 'text' field (fields: {', '.join(obj)})",
                                 line=number, hint='write {"text": "...", "id": "..."} per line')
            text = as_text(obj["text"], path, number, "text")
            ident = obj.get("id")
            if isinstance(ident, int) and not isinstance(ident, bool):
                ident = str(ident)
            elif ident is not None:
                ident = as_text(ident, path, number, "id", hint="an id is text or a whole number")
            if text.strip():
                rows.append({"id": ident or doc_id(text), "text": text})
    else:
        for _, line in iter_lines(path, "corpus file"):
            text = line.strip()
            if text:
                rows.append({"id": doc_id(text), "text": text})
    if not rows:
        raise InputError(path, "the corpus file holds no text", hint="one document per line, or JSONL with 'text'")
    return rows


def build_corpus(*sources: Iterable[dict[str, Any]]) -> CandidateCorpus:
    """One corpus from several `{"id", "text"}` sources; an id seen twice is kept once."""
    corpus = CandidateCorpus()
    for rows in sources:
        for row in rows:
            text = row.get("text")
            if isinstance(text, str) and text.strip():
                corpus.add(text, row.get("id"))
    return corpus


def term_definitions(rows: Iterable[PairRow]) -> dict[str, set[str]]:
    """Normalised anchor -> normalised texts of all its positives (across every split given)."""
    out: dict[str, set[str]] = {}
    for row in rows:
        key = normalize_key(row["anchor"])
        out.setdefault(key, set()).update(normalize_key(p) for p in row.get("positives") or [row["positive"]])
    return out


def positive_indices(rows: Sequence[PairRow], corpus: CandidateCorpus) -> list[list[int]]:
    """Corpus indices of each row's positives (by id when known, else by text; added if missing)."""
    out = []
    for row in rows:
        positives = row.get("positives") or [row["positive"]]
        ids: Sequence[str | None] = row.get("positive_ids") or [None] * len(positives)
        indices = []
        for text, id_ in zip(positives, ids):
            index = corpus.position.get(id_) if id_ else None
            if index is None:
                index = corpus.add(text, id_ or None)
            indices.append(index)
        out.append(indices)
    return out


def build_exclusions(rows: Sequence[PairRow], corpus: CandidateCorpus,
                     positives: Sequence[Sequence[int]],
                     definitions: dict[str, set[str]] | None = None) -> Exclusions:
    """Per row: its positives; duplicates of a positive or of the anchor; other definitions of the term."""
    definitions = definitions if definitions is not None else term_definitions(rows)
    duplicate: list[list[int]] = []
    other: list[list[int]] = []
    for row, pos in zip(rows, positives):
        own = {normalize_key(corpus.texts[i]) for i in pos}
        dup: list[int] = []
        for key in own | {normalize_key(row["anchor"])}:
            dup.extend(corpus.groups.get(key, []))
        oth: list[int] = []
        for key in definitions.get(normalize_key(row["anchor"]), set()) - own:
            oth.extend(corpus.groups.get(key, []))
        duplicate.append(dup)
        other.append(oth)
    return Exclusions.from_sets(positives, duplicate, other)


def as_index_array(lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Flatten per-row index lists into (row, index) arrays for vectorised scoring."""
    rows = np.repeat(np.arange(len(lists), dtype=np.int64), [len(x) for x in lists])
    flat = np.fromiter((i for x in lists for i in x), dtype=np.int64, count=int(sum(len(x) for x in lists)))
    return rows, flat


def reduce_min(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """The minimum value per row (rows without a value get NaN)."""
    out = np.full(n, np.inf, dtype=np.float64)
    np.minimum.at(out, rows, values)
    out[np.isinf(out)] = np.nan
    return out.astype(np.float32)
