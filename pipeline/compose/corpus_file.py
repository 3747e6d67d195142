"""The corpus file of id-based data (LexDPR): JSONL of `{"id", "text"}` that query rows name by id.

Query rows `{"query_text", "positive_passages": [ids], "hard_negatives": [ids]}` refer to it; the
ids are the user's (text, or whole numbers read as text) and stay the ids of those documents in every
artifact. A row without an id or a text, a value of the wrong type, or one id given two different
texts names file and line. Columns named in `group_cols` (e.g. the law an article belongs to) are
kept per document so that mine can draw same-group negatives.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.errors import InputError
from pipe_embed.pipeline.core.pairs import as_text, describe_value, is_missing, iter_jsonl, require_file

ID_FIELDS = ("id", "_id")  # `_id` is BEIR's corpus.jsonl


@dataclass
class CorpusFile:
    """Documents by the user's id, in file order, with the line each came from."""

    path: Path
    texts: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    groups: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> carried columns it has
    group_keys: list[str] = field(default_factory=list)  # carried columns present in the file

    def __len__(self) -> int:
        return len(self.texts)

    def lookup(self, ident: str, path: Path, line: int, column: str) -> str:
        """The raw text of a document id, or an error naming the row that refers to it."""
        text = self.texts.get(ident)
        if text is None:
            raise InputError(path, f"column '{column}': unknown id {ident!r}: not in the corpus file {self.path}",
                             line=line, hint="fix the id, or give the corpus file that holds it with --corpus-file")
        return text


def id_value(value: Any, path: Path, line: int, column: str) -> str:
    """An id as text: a string, or a whole number (JSON ids are often numbers)."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    what = "an empty id" if isinstance(value, str) else describe_value(value)
    raise InputError(path, f"column '{column}': expected an id (text or a whole number), got {what}", line=line)


def id_list(value: Any, path: Path, line: int, column: str) -> list[str]:
    """Ids from a list of ids, or from one id; a missing value is no ids."""
    if value is None or (not isinstance(value, (list, tuple, str)) and is_missing(value)):
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [id_value(item, path, line, column) for item in items]


def group_value(value: Any, path: Path, line: int, column: str) -> str:
    """A group cell as text: strings as they are, numbers written out, missing as ""."""
    if isinstance(value, str):
        return value.strip()
    if value is None or is_missing(value):
        return ""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return str(math.trunc(value)) if float(value).is_integer() else str(value)
    raise InputError(path, f"column '{column}': expected text or a number to group by, got {describe_value(value)}",
                     line=line)


def read_corpus_file(path: str | Path, group_cols: Sequence[str] = ()) -> CorpusFile:
    """Read a JSONL corpus of `{"id" (or "_id"), "text"}` rows, keeping the `group_cols` present."""
    path = require_file(path, "corpus file")
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise InputError(path, f"unsupported corpus file type '{path.suffix or '(none)'}'",
                         hint='the corpus file is JSONL: one {"id": ..., "text": ...} per line')
    corpus = CorpusFile(path)
    for number, obj in iter_jsonl(path, "corpus file"):
        id_field = next((f for f in ID_FIELDS if f in obj), None)
        if id_field is None or "text" not in obj:
            missing = "id" if id_field is None else "text"
            raise InputError(path, f"corpus row without '{missing}' (fields: {', '.join(obj) or 'none'})",
                             line=number, hint='write {"id": ..., "text": ...} per line')
        ident = id_value(obj[id_field], path, number, id_field)
        text = as_text(obj["text"], path, number, "text")
        if ident in corpus.texts:
            if corpus.texts[ident] != text:
                raise InputError(path, f"id {ident!r} is given again with another text (first on line "
                                 f"{corpus.lines[ident]})", line=number, hint="ids must name one document each")
            continue
        corpus.texts[ident] = text
        corpus.lines[ident] = number
        groups = {c: group_value(obj[c], path, number, c) for c in group_cols if c in obj}
        if groups:
            corpus.groups[ident] = groups
            corpus.group_keys.extend(c for c in groups if c not in corpus.group_keys)
    if not corpus.texts:
        raise InputError(path, "the corpus file has no rows", hint='one {"id": ..., "text": ...} per line')
    return corpus
