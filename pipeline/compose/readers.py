"""Reading glossary tables (CSV, TSV, JSONL, Parquet) into raw (anchor, positives, negatives) rows.

Columns are detected from well-known names (term/definition, anchor/positive, query/pos(/neg),
question/answer, lemma/gloss) or taken as two unnamed columns; a malformed row names file and line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.errors import InputError
from pipe_embed.pipeline.core.pairs import iter_jsonl

KNOWN_COLUMNS: list[tuple[str, str]] = [
    ("term", "definition"),
    ("anchor", "positive"),
    ("query", "pos"),
    ("query", "positive"),
    ("question", "answer"),
    ("lemma", "gloss"),
    ("word", "definition"),
]
NEGATIVE_COLUMNS = ("neg", "negative", "negatives", "hard_negatives")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class ColumnMap:
    """Which columns hold the anchor, the positive(s) and optional negatives."""

    anchor: str
    positive: str
    negative: str | None = None
    headerless: bool = False


@dataclass
class RawRow:
    """One input row before cleaning, with where it came from."""

    anchor: str
    positives: list[str]
    negatives: list[str] = field(default_factory=list)
    source: str = ""
    path: str = ""
    line: int = 0


def expected_names() -> str:
    return ", ".join(f"{a}/{p}" for a, p in KNOWN_COLUMNS)


def detect_columns(columns: list[str], path: Path, anchor_col: str | None = None,
                   positive_col: str | None = None) -> ColumnMap:
    """Pick anchor/positive/negative columns from a header, or explain what was found."""
    lowered = {c.strip().lower(): c for c in columns}
    negative = next((lowered[n] for n in NEGATIVE_COLUMNS if n in lowered), None)
    if anchor_col or positive_col:
        missing = [c for c in (anchor_col, positive_col) if c and c not in columns and c.lower() not in lowered]
        if missing:
            raise InputError(path, f"column '{missing[0]}' not found (columns: {', '.join(columns)})",
                             hint="check --anchor-col/--positive-col")
        anchor = lowered.get(anchor_col.lower(), anchor_col) if anchor_col else None
        positive = lowered.get(positive_col.lower(), positive_col) if positive_col else None
        if anchor is None or positive is None:
            auto = _known_pair(lowered)
            if auto is None:
                raise InputError(path, "give both --anchor-col and --positive-col "
                                 f"(columns: {', '.join(columns)})")
            anchor = anchor or auto[0]
            positive = positive or auto[1]
        return ColumnMap(anchor, positive, negative if negative not in (anchor, positive) else None)
    auto = _known_pair(lowered)
    if auto is not None:
        return ColumnMap(auto[0], auto[1], negative)
    if len(columns) == 2:
        return ColumnMap(columns[0], columns[1], None, headerless=True)
    raise InputError(path, f"no anchor/positive columns among: {', '.join(columns)}",
                     hint=f"name them {expected_names()}, or pass --anchor-col and --positive-col")


def _known_pair(lowered: dict[str, str]) -> tuple[str, str] | None:
    for anchor, positive in KNOWN_COLUMNS:
        if anchor in lowered and positive in lowered:
            return lowered[anchor], lowered[positive]
    return None


def file_format(path: Path) -> str:
    """csv, tsv, jsonl or parquet from the file name; anything else is a clear error."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(path, f"unsupported file type '{path.suffix or '(none)'}'",
                         hint="use .csv, .tsv, .jsonl or .parquet")
    return fmt


def _as_texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, float) and value != value:  # NaN from pandas
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = value.tolist() if hasattr(value, "tolist") else value
        return [str(v) for v in items if v is not None]
    return [str(value)]


def _parse_negatives(value: Any) -> list[str]:
    """Negatives from a list, or from a CSV cell holding a JSON list or a single text."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
            if isinstance(parsed, list):
                return [str(v) for v in parsed]
        except json.JSONDecodeError:
            pass
    return [v for v in _as_texts(value) if v.strip()]


def read_rows(path: str | Path, anchor_col: str | None = None, positive_col: str | None = None,
              source: str | None = None) -> Iterator[RawRow]:
    """Yield the raw rows of one input file; malformed rows raise InputError with file:line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "input file not found")
    fmt = file_format(path)
    src = source or path.name
    if fmt in ("csv", "tsv"):
        yield from _read_delimited(path, "\t" if fmt == "tsv" else ",", anchor_col, positive_col, src)
    elif fmt == "jsonl":
        yield from _read_jsonl(path, anchor_col, positive_col, src)
    else:
        yield from _read_parquet(path, anchor_col, positive_col, src)


def _read_delimited(path: Path, delimiter: str, anchor_col: str | None, positive_col: str | None,
                    src: str) -> Iterator[RawRow]:
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(path, f"cannot open: {exc.strerror}") from None
    with fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(path, "the file is empty", hint="add a header and rows")
            cols = detect_columns(header, path, anchor_col, positive_col)
            width = len(header)
            index = {name: i for i, name in enumerate(header)}
            rows = reader
            if cols.headerless:
                first = RawRow(header[0], [header[1]], [], src, str(path), 1)
                yield first
                index = {header[0]: 0, header[1]: 1}
            has_source = "source" in index
            for record in rows:
                if not record or all(not cell.strip() for cell in record):
                    continue
                if len(record) != width:
                    raise InputError(path, f"expected {width} fields, found {len(record)}",
                                     line=reader.line_num,
                                     hint="quote fields that contain the delimiter, or fix the line")
                negatives = _parse_negatives(record[index[cols.negative]]) if cols.negative else []
                yield RawRow(record[index[cols.anchor]], [record[index[cols.positive]]], negatives,
                             record[index["source"]] if has_source and record[index["source"]] else src,
                             str(path), reader.line_num)
        except csv.Error as exc:
            raise InputError(path, f"malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}",
                             line=reader.line_num, hint="check quoting on that line") from None
        except UnicodeDecodeError:
            raise InputError(path, "not UTF-8 text", line=reader.line_num + 1,
                             hint="re-save the file as UTF-8") from None


def _read_jsonl(path: Path, anchor_col: str | None, positive_col: str | None,
                src: str) -> Iterator[RawRow]:
    cols: ColumnMap | None = None
    try:
        for number, obj in iter_jsonl(path):
            if cols is None:
                cols = detect_columns(list(obj), path, anchor_col, positive_col)
                if cols.headerless:
                    cols = ColumnMap(cols.anchor, cols.positive)
            if cols.anchor not in obj or cols.positive not in obj:
                missing = cols.anchor if cols.anchor not in obj else cols.positive
                raise InputError(path, f"row has no '{missing}' field (fields: {', '.join(obj)})",
                                 line=number)
            anchor = obj[cols.anchor]
            if not isinstance(anchor, str):
                raise InputError(path, f"'{cols.anchor}' must be text, got {type(anchor).__name__}",
                                 line=number)
            negatives = _parse_negatives(obj.get(cols.negative)) if cols.negative else []
            yield RawRow(anchor, _as_texts(obj[cols.positive]), negatives,
                         str(obj.get("source") or src), str(path), number)
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text", hint="re-save the file as UTF-8") from None
    if cols is None:
        raise InputError(path, "the file has no rows")


def _read_parquet(path: Path, anchor_col: str | None, positive_col: str | None,
                  src: str) -> Iterator[RawRow]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise InputError(path, f"cannot read Parquet: {str(exc).splitlines()[0]}") from None
    cols = detect_columns([str(c) for c in frame.columns], path, anchor_col, positive_col)
    has_source = "source" in frame.columns
    for number, record in enumerate(frame.to_dict("records"), start=1):
        anchor = record[cols.anchor]
        if not isinstance(anchor, str):
            raise InputError(path, f"'{cols.anchor}' must be text", line=number,
                             hint="Parquet rows are counted from 1")
        negatives = _parse_negatives(record[cols.negative]) if cols.negative else []
        yield RawRow(anchor, _as_texts(record[cols.positive]), negatives,
                     str(record["source"]) if has_source and record["source"] else src,
                     str(path), number)
