"""Reading glossary tables (CSV, TSV, JSONL, Parquet) into raw (anchor, positives, negatives) rows.

Columns are detected from well-known names (term/definition, anchor/positive, query/pos(/neg),
question/answer, lemma/gloss) or taken as two unnamed columns; a malformed row, or a value of the
wrong type (a number or an object where text belongs), names file, line and column. A missing value
(JSON null, an empty cell) is kept as "" so that compose drops the row and counts it.

Id-based JSONL (LexDPR: `query_text`, `positive_passages` and `hard_negatives` as ids) is resolved
against the corpus file (pipe_embed.pipeline.compose.corpus_file), keeping the ids on the row. Columns
named in `group_cols` (section, page, …) ride along in `RawRow.group` for same-group negatives.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.compose.corpus_file import CorpusFile, group_value, id_list, id_value
from pipe_embed.pipeline.core.errors import InputError
from pipe_embed.pipeline.core.pairs import as_text, as_texts, iter_jsonl, not_utf8, require_file

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
ID_QUERY, ID_POSITIVES, ID_NEGATIVES = "query_text", "positive_passages", ("hard_negatives", "negative_passages")
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
    positive_ids: list[str] | None = None  # the user's document ids (id-based input), parallel to positives
    negative_ids: list[str] | None = None
    query_id: str | None = None
    group: dict[str, str] = field(default_factory=dict)  # carried columns (group_cols) of this row


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


def _parse_negatives(value: Any, path: Path, line: int, column: str) -> list[str]:
    """Negatives from a list, or from a CSV cell holding a JSON list or a single text."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            value = parsed
    return [v for v in as_texts(value, path, line, column) if v.strip()]


def _source(value: Any, default: str, path: Path, line: int) -> str:
    text = as_text(value, path, line, "source", hint="the source column holds text (a name)")
    return text or default


def read_rows(path: str | Path, anchor_col: str | None = None, positive_col: str | None = None,
              source: str | None = None, *, group_cols: Sequence[str] = (),
              corpus: CorpusFile | None = None) -> Iterator[RawRow]:
    """Yield the raw rows of one input file; malformed rows and wrong types raise InputError with file:line.

    `group_cols` present in the file are carried in `RawRow.group`; `corpus` resolves id-based rows.
    """
    path = require_file(path)
    fmt = file_format(path)
    src = source or path.name
    if fmt in ("csv", "tsv"):
        yield from _read_delimited(path, "\t" if fmt == "tsv" else ",", anchor_col, positive_col, src, group_cols)
    elif fmt == "jsonl":
        yield from _read_jsonl(path, anchor_col, positive_col, src, group_cols, corpus)
    else:
        yield from _read_parquet(path, anchor_col, positive_col, src, group_cols)


def _group_columns(columns: Sequence[str], group_cols: Sequence[str]) -> dict[str, str]:
    """Carried column name -> the header's spelling of it (matched case-insensitively)."""
    lowered = {str(c).strip().lower(): c for c in columns}
    return {g: lowered[g.lower()] for g in group_cols if g.lower() in lowered}


def is_id_based(obj: dict[str, Any]) -> bool:
    """A LexDPR-style row: the query as `query_text`, the positives as corpus ids."""
    return ID_QUERY in obj or ID_POSITIVES in obj


def _id_row(obj: dict[str, Any], path: Path, number: int, src: str, group_cols: Sequence[str],
            corpus: CorpusFile | None) -> RawRow:
    """One id-based row, its ids resolved to the corpus file's texts (an unknown id names file:line)."""
    if corpus is None:
        raise InputError(path, f"id-based rows ('{ID_QUERY}', '{ID_POSITIVES}' as ids) need the corpus file "
                         "their ids refer to", line=number,
                         hint='pass --corpus-file corpus.jsonl (one {"id": ..., "text": ...} per line)')
    if ID_QUERY not in obj:
        raise InputError(path, f"row has no '{ID_QUERY}' field (fields: {', '.join(obj)})", line=number,
                         hint=f"an id-based file has '{ID_QUERY}' and '{ID_POSITIVES}' on every row")
    anchor = as_text(obj[ID_QUERY], path, number, ID_QUERY)
    positive_ids = id_list(obj.get(ID_POSITIVES), path, number, ID_POSITIVES)
    neg_col = next((c for c in ID_NEGATIVES if obj.get(c) is not None), ID_NEGATIVES[0])
    negative_ids = id_list(obj.get(neg_col), path, number, neg_col)
    positives = [corpus.lookup(i, path, number, ID_POSITIVES) for i in positive_ids]
    negatives = [corpus.lookup(i, path, number, neg_col) for i in negative_ids]
    query_id = id_value(obj["query_id"], path, number, "query_id") if obj.get("query_id") is not None else None
    keys = list(dict.fromkeys([*(c for c in group_cols if c in obj), *corpus.group_keys]))
    own = {c: group_value(obj[c], path, number, c) for c in group_cols if c in obj}
    first = corpus.groups.get(positive_ids[0], {}) if positive_ids else {}
    group = {k: own.get(k) or first.get(k, "") for k in keys}  # else the first positive's group
    return RawRow(anchor, positives, negatives, _source(obj.get("source"), src, path, number), str(path), number,
                  positive_ids=positive_ids, negative_ids=negative_ids, query_id=query_id, group=group)


def _csv_error(path: Path, delimiter: str, exc: csv.Error, start: int, end: int) -> InputError:
    """A malformed record, reported on the line where it starts (where an unclosed quote opened)."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    if start < end or "end of data" in str(exc):
        runs_on = f", and the record runs on to line {end}" if end > start else ""
        return InputError(path, f"malformed {kind}: a quote opened on this line is not closed{runs_on} ({exc})",
                          line=start, hint='close the quote; a quote inside a quoted field is written ""')
    return InputError(path, f"malformed {kind}: {exc}", line=start, hint="check quoting on that line")


def _read_delimited(path: Path, delimiter: str, anchor_col: str | None, positive_col: str | None,
                    src: str, group_cols: Sequence[str] = ()) -> Iterator[RawRow]:
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(path, f"cannot open: {exc.strerror}") from None
    with fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        start = 1
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(path, "the file is empty", hint="add a header and rows")
            cols = detect_columns(header, path, anchor_col, positive_col)
            width = len(header)
            index = {name: i for i, name in enumerate(header)}
            if cols.headerless:
                yield RawRow(header[0], [header[1]], [], src, str(path), 1)
                index = {header[0]: 0, header[1]: 1}
            has_source = "source" in index
            carried = {g: index[c] for g, c in _group_columns(list(index), group_cols).items()}
            while True:
                start = reader.line_num + 1
                record = next(reader, None)
                if record is None:
                    break
                if not record:  # a blank line is no row
                    continue
                if all(not cell.strip() for cell in record):  # a row of empty cells: dropped and counted
                    yield RawRow("", [""], [], src, str(path), start)
                    continue
                if len(record) != width:
                    raise InputError(path, f"expected {width} fields, found {len(record)}", line=start,
                                     hint="quote fields that contain the delimiter, or fix the line")
                negatives = (_parse_negatives(record[index[cols.negative]], path, start, cols.negative)
                             if cols.negative else [])
                yield RawRow(record[index[cols.anchor]], [record[index[cols.positive]]], negatives,
                             record[index["source"]] if has_source and record[index["source"]] else src,
                             str(path), start, group={g: record[i].strip() for g, i in carried.items()})
        except csv.Error as exc:
            raise _csv_error(path, delimiter, exc, start, reader.line_num) from None
        except UnicodeDecodeError:
            raise not_utf8(path) from None


def _read_jsonl(path: Path, anchor_col: str | None, positive_col: str | None,
                src: str, group_cols: Sequence[str] = (), corpus: CorpusFile | None = None) -> Iterator[RawRow]:
    cols: ColumnMap | None = None
    id_based: bool | None = None
    for number, obj in iter_jsonl(path):
        if id_based is None:
            id_based = not (anchor_col or positive_col) and is_id_based(obj)
        if id_based:
            yield _id_row(obj, path, number, src, group_cols, corpus)
            continue
        if cols is None:
            cols = detect_columns(list(obj), path, anchor_col, positive_col)
            if cols.headerless:
                cols = ColumnMap(cols.anchor, cols.positive)
        if cols.anchor not in obj or cols.positive not in obj:
            missing = cols.anchor if cols.anchor not in obj else cols.positive
            raise InputError(path, f"row has no '{missing}' field (fields: {', '.join(obj)})",
                             line=number)
        anchor = as_text(obj[cols.anchor], path, number, cols.anchor)
        positives = as_texts(obj[cols.positive], path, number, cols.positive)
        negative = cols.negative or next((n for n in NEGATIVE_COLUMNS if n in obj
                                          and n not in (cols.anchor, cols.positive)), None)  # rows differ
        negatives = _parse_negatives(obj.get(negative), path, number, negative) if negative else []
        group = {g: group_value(obj.get(g), path, number, g) for g in group_cols if g in obj}
        yield RawRow(anchor, positives, negatives, _source(obj.get("source"), src, path, number),
                     str(path), number, group=group)
    if id_based is None:
        raise InputError(path, "the file has no rows")


def _read_parquet(path: Path, anchor_col: str | None, positive_col: str | None,
                  src: str, group_cols: Sequence[str] = ()) -> Iterator[RawRow]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise InputError(path, f"cannot read Parquet: {str(exc).splitlines()[0]}") from None
    cols = detect_columns([str(c) for c in frame.columns], path, anchor_col, positive_col)
    has_source = "source" in frame.columns
    carried = _group_columns([str(c) for c in frame.columns], group_cols)
    hint = "Parquet rows are counted from 1; the column must hold strings (or lists of strings)"
    for number, record in enumerate(frame.to_dict("records"), start=1):
        anchor = as_text(record[cols.anchor], path, number, cols.anchor, hint=hint)
        positives = as_texts(record[cols.positive], path, number, cols.positive, hint=hint)
        negatives = (_parse_negatives(record[cols.negative], path, number, cols.negative)
                     if cols.negative else [])
        source = _source(record["source"], src, path, number) if has_source else src
        group = {g: group_value(record[c], path, number, g) for g, c in carried.items()}
        yield RawRow(anchor, positives, negatives, source, str(path), number, group=group)
