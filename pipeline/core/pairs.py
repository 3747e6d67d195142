"""The data contract between stages: pairs files, the corpus file, stable ids, JSONL I/O.

A pairs row (`PairRow`) is `{"id", "anchor", "positive", "positives", "positive_ids", "hard_negatives", …}`:
one row per anchor; `positive` is its first positive, `positives` all of them (a term with several
definitions). Optional: `source`, `split`, `positive_score`, `negative_scores`, `negative_ids`,
`query_id` (id-based input) and `group` (carried columns such as section and page).
The train split lives in `pairs.jsonl`, held-out splits in `pairs.dev.jsonl` and `pairs.test.jsonl`;
`corpus.jsonl` holds `{"id", "text"[, "group"]}` for every positive so that negatives and caches refer
to ids. Ids are content hashes (`doc_id`), except that documents given with ids (a corpus file) keep
the user's ids. Every row of a file has the same keys and each key one JSON type, so the files load
with `datasets.load_dataset("json", data_files=...)`.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

from pipe_embed.pipeline.core.errors import InputError

SPLITS = ("train", "dev", "test")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
CORPUS_FILE = "corpus.jsonl"


class _PairRowRequired(TypedDict):
    """The keys every pairs row has, whatever wrote it."""

    anchor: str
    positive: str
    hard_negatives: list[str]


class PairRow(_PairRowRequired, total=False):
    """One row of a pairs file (see the module docstring); rows read from a user's file may carry other
    columns too, which the readers keep and this type does not name."""

    id: str
    positives: list[str]
    positive_ids: list[str]
    source: str
    split: str
    query_id: str
    negative_ids: list[str]
    negative_scores: list[float]
    positive_score: float
    group: dict[str, str]


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


def require_file(path: str | Path, what: str = "input file") -> Path:
    """The path if it is a readable regular file; else an InputError saying what it is instead."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a directory, not a file", hint=f"give the {what} itself (e.g. the files inside it)")
    if not path.exists():
        raise InputError(path, f"{what} not found")
    if not path.is_file():
        raise InputError(path, f"is not a regular file, so it cannot be read as a {what}")
    if not os.access(path, os.R_OK):
        raise InputError(path, f"cannot read the {what}: permission denied")
    return path


def utf8_error_at(path: str | Path) -> tuple[int, int] | None:
    """(line, column) of the first byte sequence that is not UTF-8, or None when the file is clean."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, exc.start + 1
    return None


def not_utf8(path: str | Path, line: int | None = None, column: int | None = None) -> InputError:
    """The error for a file that is not UTF-8, at the first bad byte (found when not given)."""
    if line is None:
        found = utf8_error_at(path)
        line, column = found if found else (None, None)
    where = f" (byte {column} of the line)" if column else ""
    return InputError(path, f"not UTF-8 text{where}", line=line,
                      hint="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")


def iter_lines(path: str | Path, what: str = "input file") -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file (a leading BOM dropped); a bad byte names file and line."""
    path = require_file(path, what)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(path, f"cannot open: {exc.strerror}") from None
    with fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise not_utf8(path, number, exc.start + 1) from None
            yield number, text


def _check_surrogates(obj: Any, path: Path, line: int) -> None:
    """JSON may escape half a UTF-16 pair (\\ud800): not text, and it breaks every later write."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(path, "holds a lone surrogate escape (\\ud800-\\udfff), which is not valid text",
                         line=line, hint="fix or remove that line") from None


def iter_jsonl(path: str | Path, what: str = "input file") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a malformed line names file and line."""
    path = Path(path)
    for number, line in iter_lines(path, what):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"malformed JSON ({exc.msg})", line=number,
                             hint="fix or remove that line") from None
        except RecursionError:
            raise InputError(path, "JSON nested too deeply", line=number) from None
        if not isinstance(obj, dict):
            raise InputError(path, f"expected a JSON object per line, got {describe_value(obj)}", line=number)
        if _SURROGATE_ESCAPE.search(line):
            _check_surrogates(obj, path, number)
        yield number, obj


def is_missing(value: Any) -> bool:
    """None, NaN, or pandas' NA/NaT: a cell without a value."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    try:
        return bool(value != value)  # NaN of any float type
    except (TypeError, ValueError):
        return False


def describe_value(value: Any) -> str:
    """A short description of a JSON/Parquet value for an error line: `a number (12)`."""
    name = type(value).__name__
    if isinstance(value, bool) or name in ("bool_", "bool"):
        kind = "a boolean"
    elif isinstance(value, numbers.Number) or hasattr(value, "dtype") and not hasattr(value, "__len__"):
        kind = "a number"
    elif isinstance(value, dict):
        kind = "an object"
    elif isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        kind = "a list"
    elif isinstance(value, str):
        kind = "text"
    else:
        kind = f"a {name}"
    shown = repr(value.tolist() if hasattr(value, "tolist") else value)
    return f"{kind} ({shown[:40] + '…' if len(shown) > 40 else shown})"


def as_text(value: Any, path: str | Path, line: int, column: str, hint: str | None = None) -> str:
    """A text cell: a string, or "" when missing (the row is then dropped and counted); else an error."""
    if isinstance(value, str):
        return value
    if is_missing(value):
        return ""
    raise InputError(path, f"column '{column}': expected text, got {describe_value(value)}", line=line,
                     hint=hint or "write it as a JSON string, or fix the column")


def as_texts(value: Any, path: str | Path, line: int, column: str, hint: str | None = None) -> list[str]:
    """A text or a list of texts; missing values become "" (counted as dropped), other types are errors."""
    if isinstance(value, str):
        return [value]
    if not hasattr(value, "__len__") and is_missing(value):
        return []
    items = value.tolist() if hasattr(value, "tolist") and not isinstance(value, (list, tuple)) else value
    if not isinstance(items, (list, tuple)):
        raise InputError(path, f"column '{column}': expected text or a list of texts, got {describe_value(value)}",
                         line=line, hint=hint or "write it as a JSON string or a list of strings")
    out = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, str):
            out.append(item)
        elif is_missing(item):
            out.append("")
        else:
            raise InputError(path, f"column '{column}': item {number}: expected text, got {describe_value(item)}",
                             line=line, hint=hint or "write it as a JSON string or a list of strings")
    return out


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All objects of a JSONL file."""
    return [obj for _, obj in iter_jsonl(path)]


def non_finite_field(value: Any, where: str = "") -> str | None:
    """The name (`negative_scores[2]`) of the first NaN/Infinity inside a JSON value, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = non_finite_field(item, f"{where}[{key}]" if isinstance(key, int) else
                                 (f"{where}.{key}" if where else str(key)))
        if found is not None:
            return found
    return None


def strict_json(row: Any, path: Path, line: int) -> str:
    """One row as strict JSON: a NaN or Infinity (which JSON cannot hold) is an error naming the field."""
    try:
        return json.dumps(row, ensure_ascii=False, allow_nan=False)
    except ValueError:
        name = non_finite_field(row)
        if name is None:
            raise
        raise InputError(path, f"field '{name}' is not a finite number (NaN or Infinity), which JSON cannot hold",
                         line=line, hint="a score came out undefined: check the model and the input texts") from None


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write rows as strict JSONL (UTF-8, one object per line, no NaN/Infinity) atomically; returns the row count."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(strict_json(row, path, count + 1) + "\n")
                count += 1
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return count


def _field(obj: dict[str, Any], *names: str) -> tuple[str | None, Any]:
    """The first of `names` present with a value, and that value (None, None when none is)."""
    for name in names:
        if obj.get(name) is not None:
            return name, obj[name]
    return None, None


def to_canonical(obj: dict[str, Any], path: Path, line: int) -> PairRow:
    """One row in canonical form, from canonical or FlagEmbedding (`query/pos/neg`) fields.

    A value of the wrong type (a number or an object where text belongs) names file, line and column.
    The row keeps the input's other columns, so it is built as a plain dict and typed once done.
    """
    if "anchor" in obj:
        anchor_col, positive_names, negative_names = "anchor", ("positives", "positive"), ("hard_negatives", "negatives")
    elif "query" in obj:
        anchor_col, positive_names, negative_names = "query", ("pos", "positive"), ("neg", "negative")
    elif "query_text" in obj or "positive_passages" in obj:
        raise InputError(path, "row is id-based (query_text, positive_passages ids): its texts are in a corpus file",
                         line=line, hint="compose it first: pipe compose --input FILE --corpus-file corpus.jsonl")
    else:
        raise InputError(path, f"row has neither 'anchor' nor 'query' (fields: {', '.join(obj)})",
                         line=line, hint="use anchor/positive/hard_negatives or query/pos/neg")
    anchor = as_text(obj[anchor_col], path, line, anchor_col)
    if not anchor.strip():
        raise InputError(path, f"column '{anchor_col}': empty anchor", line=line)
    pos_col, pos_value = _field(obj, *positive_names)
    positives = [p for p in as_texts(pos_value, path, line, pos_col or positive_names[0]) if p.strip()]
    neg_col, neg_value = _field(obj, *negative_names)
    negatives = [n for n in as_texts(neg_value, path, line, neg_col or negative_names[0]) if n.strip()]
    if not positives:
        raise InputError(path, "row has no positive", line=line)
    row: dict[str, Any] = dict(obj)  # any column of the input rides along: not only PairRow's keys
    for key in ("query", "pos", "neg", "negatives", "negative"):
        row.pop(key, None)
    row.update(anchor=anchor, positive=positives[0], positives=positives, hard_negatives=negatives)
    row.setdefault("id", anchor_id(anchor))
    if "positive_ids" in row:
        row["positive_ids"] = as_texts(row["positive_ids"], path, line, "positive_ids")
    else:
        row["positive_ids"] = [doc_id(p) for p in positives]
    return cast(PairRow, row)


def read_pairs(path: str | Path) -> list[PairRow]:
    """Read a pairs JSONL file (canonical or FlagEmbedding form) into canonical rows."""
    path = Path(path)
    return [to_canonical(obj, path, number) for number, obj in iter_jsonl(path, "pairs file")]


def read_corpus(path: str | Path) -> list[dict[str, Any]]:
    """Read a corpus JSONL file of `{"id", "text"}` rows (a numeric id is taken as its text)."""
    path = Path(path)
    rows = []
    for number, obj in iter_jsonl(path, "corpus file"):
        if "text" not in obj:
            raise InputError(path, "corpus row without 'text'", line=number)
        obj["text"] = as_text(obj["text"], path, number, "text")
        ident = obj.get("id")
        if isinstance(ident, int) and not isinstance(ident, bool):
            obj["id"] = str(ident)
        elif ident is None:
            obj["id"] = doc_id(obj["text"])
        else:
            obj["id"] = as_text(ident, path, number, "id")
        rows.append(obj)
    return rows


# -- Hugging Face datasets ------------------------------------------------------------------------
HF_STRING_LISTS = ("positives", "positive_ids", "hard_negatives", "negative_ids")
HF_FLOAT_LISTS = ("negative_scores",)
HF_FLOATS = ("positive_score",)


def _hf_feature(name: str, values: list[Any]) -> tuple[Any, Any]:
    """The datasets type of one column, and a converter when its values have no single JSON type."""
    import datasets

    present = [v for v in values if v is not None]
    if name in HF_STRING_LISTS:
        return datasets.Sequence(datasets.Value("string")), None
    if name in HF_FLOAT_LISTS:
        return datasets.Sequence(datasets.Value("float64")), None
    if name in HF_FLOATS:
        return datasets.Value("float64"), None
    if present and all(isinstance(v, dict) for v in present):
        keys = list(dict.fromkeys(k for v in present for k in v))
        if all(isinstance(x, str) or x is None for v in present for x in v.values()):
            return ({k: datasets.Value("string") for k in keys},
                    lambda v: None if v is None else {k: v.get(k) for k in keys})
    elif all(isinstance(v, str) for v in present):
        return datasets.Value("string"), None
    elif all(isinstance(v, bool) for v in present):
        return datasets.Value("bool"), None
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return datasets.Value("int64" if all(isinstance(v, int) for v in present) else "float64"), None
    elif all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in present):
        return datasets.Sequence(datasets.Value("string")), None
    return datasets.Value("string"), lambda v: None if v is None else json.dumps(v, ensure_ascii=False)


def hf_schema(rows: Sequence[Mapping[str, Any]]) -> tuple[Any, dict[str, list[Any]]]:
    """`datasets.Features` and columns of pairs (or corpus) rows: every row the same columns (None where
    absent), lists of texts typed as such even when every one is empty, a column of mixed types as JSON text."""
    import datasets

    columns = list(dict.fromkeys(k for row in rows for k in row))
    features, data = {}, {}
    for name in columns:
        values = [row.get(name) for row in rows]
        features[name], convert = _hf_feature(name, values)
        data[name] = [convert(v) for v in values] if convert else values
    return datasets.Features(features), data


def hf_features(*paths: str | Path) -> Any:
    """The `datasets.Features` of pipe's JSONL files, for loading several at once:

    `load_dataset("json", data_files={"train": …, "dev": …}, features=hf_features(train, dev))`.
    JSON cannot type an empty list, so a split whose lists are all empty would be read as null-typed
    and clash with the others; one file alone loads without it.
    """
    return hf_schema([row for path in paths for row in read_jsonl(path)])[0]
