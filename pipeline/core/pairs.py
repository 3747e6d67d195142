"""The data contract between stages: pairs files, the corpus file, stable ids, JSONL I/O.

A pairs row is `{"id", "anchor", "positive", "positives", "positive_ids", "hard_negatives", …}`:
one row per anchor; `positive` is its first positive, `positives` all of them (a term with several
definitions). Optional: `source`, `split`, `positive_score`, `negative_scores`, `negative_ids`.
The train split lives in `pairs.jsonl`, held-out splits in `pairs.dev.jsonl` and `pairs.test.jsonl`;
`corpus.jsonl` holds `{"id", "text"}` for every positive so that negatives and caches refer to ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.errors import InputError

SPLITS = ("train", "dev", "test")
CORPUS_FILE = "corpus.jsonl"


def pairs_file(split: str = "train") -> str:
    """File name of a split's pairs inside an artifact."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return "pairs.jsonl" if split == "train" else f"pairs.{split}.jsonl"


def normalize_key(text: str) -> str:
    """The comparison form of a text: NFC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def doc_id(text: str) -> str:
    """Stable id of a corpus text: a hash of its exact (cleaned) content."""
    return "d" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def anchor_id(anchor: str) -> str:
    """Stable id of an anchor: a hash of its normalised form, so case variants share an id."""
    return "a" + hashlib.sha1(normalize_key(anchor).encode("utf-8")).hexdigest()[:16]


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a malformed line names file and line."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"malformed JSON ({exc.msg})", line=number,
                                 hint="fix or remove that line") from None
            if not isinstance(obj, dict):
                raise InputError(path, "expected a JSON object per line", line=number)
            yield number, obj


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All objects of a JSONL file."""
    return [obj for _, obj in iter_jsonl(path)]


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSONL (UTF-8, one object per line) atomically; returns the row count."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    count = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, path)
    return count


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def to_canonical(obj: dict[str, Any], path: Path, line: int) -> dict[str, Any]:
    """One row in canonical form, from canonical or FlagEmbedding (`query/pos/neg`) fields."""
    if "anchor" in obj:
        anchor = obj["anchor"]
        positives = _as_list(obj.get("positives") or obj.get("positive"))
        negatives = _as_list(obj.get("hard_negatives") or obj.get("negatives"))
    elif "query" in obj:
        anchor = obj["query"]
        positives = _as_list(obj.get("pos") or obj.get("positive"))
        negatives = _as_list(obj.get("neg") or obj.get("negative"))
    else:
        raise InputError(path, f"row has neither 'anchor' nor 'query' (fields: {', '.join(obj)})",
                         line=line, hint="use anchor/positive/hard_negatives or query/pos/neg")
    if not isinstance(anchor, str) or not anchor.strip():
        raise InputError(path, "empty or non-text anchor", line=line)
    if not positives:
        raise InputError(path, "row has no positive", line=line)
    row = dict(obj)
    for key in ("query", "pos", "neg", "negatives", "negative"):
        row.pop(key, None)
    row.update(anchor=anchor, positive=positives[0], positives=positives, hard_negatives=negatives)
    row.setdefault("id", anchor_id(anchor))
    row.setdefault("positive_ids", [doc_id(p) for p in positives])
    return row


def read_pairs(path: str | Path) -> list[dict[str, Any]]:
    """Read a pairs JSONL file (canonical or FlagEmbedding form) into canonical rows."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "pairs file not found")
    return [to_canonical(obj, path, number) for number, obj in iter_jsonl(path)]


def read_corpus(path: str | Path) -> list[dict[str, Any]]:
    """Read a corpus JSONL file of `{"id", "text"}` rows."""
    path = Path(path)
    rows = []
    for number, obj in iter_jsonl(path):
        if "text" not in obj:
            raise InputError(path, "corpus row without 'text'", line=number)
        obj.setdefault("id", doc_id(obj["text"]))
        rows.append(obj)
    return rows
