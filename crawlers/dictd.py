"""Source `dictd`: every entry of a dictionary in the dictd format (Debian's dict-* packages).

A dictd dictionary is two files: `NAME.index`, one `headword<TAB>offset<TAB>length` line per
headword (numbers in dictd's base64), and `NAME.dict` or `NAME.dict.dz` (dictzip, which gzip reads),
the entries' text. Dictionaries are named (`--dictd foldoc`, looked up in $DICTD_DIR,
/usr/share/dictd and /usr/local/share/dictd) or given by path; with none named, every installed one
is read. Each dictionary is one page: its `.dict(.dz)` file, whose content hash versions the crawl
(the `.index` beside it is read at parse time).

An entry's first lines repeat its headword (FOLDOC lists every spelling there); the rest is the
definition, whitespace collapsed. Every index line pointing at the same text becomes one of the
entry's `aliases`. FOLDOC's conventions are read generically: `{cross reference}` braces become plain
text, a leading `<field>` marker becomes the `section`, a trailing `(1995-02-15)` date is dropped,
and numbered senses `1. … 2. …` give one row each. Entries (or senses) that only point elsewhere
("See {X}.") are dropped with a counted reason. The `00-database-*` entries are not rows: they give
the page's title and revision (`00-database-short`), address (`00-database-url`) and licence (what
`00-database-info` says).
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipe_embed.crawlers.base import Entry, PageRef, ParsedPage, SourceOptions
from pipe_embed.pipeline.core.errors import PipeError

NAME = "dictd"
PARSER_VERSION = 1
LICENSE = "as stated in the dictionary's 00-database-info entry"
SEARCH_DIRS = ("/usr/share/dictd", "/usr/local/share/dictd")
BODY_SUFFIXES = (".dict.dz", ".dict")
INDEX_SUFFIX = ".index"
META_PREFIXES = ("00-database-", "00database")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(B64)}
INSTALL_HINT = "install one (apt-get install dict-foldoc) or pass --dictd PATH to a NAME.index or NAME.dict(.dz) file"

_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_DATE = re.compile(r"\s*\(\d{4}-\d{2}-\d{2}\)$")
# A field marker; `}` or `<` closing one is a typo FOLDOC has a few of.
_MARKER = re.compile(r"^<(\w[\w ,./&'+-]*?)\s*[>}<]\s*")
# What may stand before a sense number: a field marker, /pronunciation/, [etymology], (aside), "quote".
_TOKEN = r"<[^<>]*>|/[^/\s][^/]*/|\[[^\[\]]*\]|\((?:[^()]|\([^()]*\))*\)|\"[^\"]*\""
_LEAD_TOKENS = re.compile(rf"(?:(?:{_TOKEN})[.,;:]?(?:\s+|$))*")
_FIRST_SENSE = re.compile(rf"^((?:(?:{_TOKEN})[.,;:]?\s+)*)1\.\s+")
_LIST_INTRO = re.compile(r"(?:[:,;]|\b[a-z]+)$")  # a paragraph stopping mid-sentence introduces a list
_LINK = re.compile(r"\{([^{}]*)\}")
_LINK_ADDRESS = re.compile(r"(.*?)\s*\(([^()\s]+)\)")
_XREF = re.compile(r"see(?:\s+also)?:?\s+\{[^{}]+\}(?:\s*(?:,|;|and|or)\s*\{[^{}]+\})*\s*\.?", re.IGNORECASE)
_PRONUNCIATION = re.compile(r"^(?:/[^/\s][^/]*/\s*)+")
_CITATIONS = re.compile(r"(?:\s*\[[^\[\]]*\])+$")
_LICENSES = re.compile(
    r"GNU (?:Free Documentation|(?:Lesser |Library )?General Public) Licen[cs]e"
    r"(?:,?\s+[Vv]ersion\s+\d+(?:\.\d+)*(?:,?\s+or\s+(?:\(at your option\)\s+)?any\s+later\s+version)?)?"
    r"|Creative Commons(?: [A-Z][\w-]*)+(?: \d+\.\d+)?"
    r"|(?<=the )public domain")


@dataclass(frozen=True)
class Dictionary:
    """One dictd dictionary on disk: its name and its two files."""

    name: str
    index: Path
    body: Path


@dataclass(frozen=True)
class IndexLine:
    """One line of a .index file: a headword and where its text is in the .dict file."""

    headword: str
    offset: int
    length: int
    line: int


def search_dirs() -> list[Path]:
    """Where dictionaries are looked up by name: $DICTD_DIR (a path list), then the usual install places."""
    configured = [d for d in os.environ.get("DICTD_DIR", "").split(os.pathsep) if d]
    return [Path(d).expanduser() for d in [*configured, *SEARCH_DIRS]]


def _strip_suffix(path: Path) -> Path:
    """`x/foldoc.index`, `x/foldoc.dict`, `x/foldoc.dict.dz` -> `x/foldoc`."""
    for suffix in (INDEX_SUFFIX, *BODY_SUFFIXES):
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def _at(base: Path) -> Dictionary | None:
    """The dictionary whose files are `base.index` and `base.dict.dz` (or `base.dict`), if both are there."""
    index = base.with_name(base.name + INDEX_SUFFIX)
    if not index.is_file():
        return None
    for suffix in BODY_SUFFIXES:
        body = base.with_name(base.name + suffix)
        if body.is_file():
            return Dictionary(base.name, index, body)
    return None


def dictionaries_in(directory: Path) -> list[Dictionary]:
    """Every complete dictionary (.index with its .dict or .dict.dz) in one directory, by name."""
    try:
        names = sorted(p.name[: -len(INDEX_SUFFIX)] for p in directory.glob("*" + INDEX_SUFFIX))
    except OSError:
        return []
    return [d for d in (_at(directory / name) for name in names) if d is not None]


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or os.sep in spec or spec.startswith(("~", ".")) \
        or spec.endswith((INDEX_SUFFIX, *BODY_SUFFIXES))


def find_dictionary(spec: str) -> list[Dictionary]:
    """The dictionary a `--dictd` value names: a name looked up in `search_dirs()`, a path to its
    .index or .dict(.dz) file (or to the name without a suffix), or a directory (every one in it)."""
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if path.is_dir():
            found = dictionaries_in(path)
            if not found:
                raise PipeError(f"{spec}: no dictd dictionary in this directory (NAME.index with NAME.dict.dz "
                                "or NAME.dict)", hint="point --dictd at a dictionary's .index or .dict(.dz) file")
            return found
        base = _strip_suffix(path)
        dictionary = _at(base)
        if dictionary is None:
            index = base.with_name(base.name + INDEX_SUFFIX)
            missing = [] if index.is_file() else [index.name]
            if not any(base.with_name(base.name + s).is_file() for s in BODY_SUFFIXES):
                missing.append(f"{base.name}.dict.dz (or {base.name}.dict)")
            raise PipeError(f"{spec}: not a dictd dictionary: {base.parent} has no {' and no '.join(missing)}",
                            hint="a dictd dictionary is NAME.index beside NAME.dict.dz "
                            "(or NAME.dict); point --dictd at one of them")
        return [dictionary]
    dirs = search_dirs()
    for directory in dirs:
        dictionary = _at(directory / spec)
        if dictionary is not None:
            return [dictionary]
    raise PipeError(f"dictd dictionary '{spec}' not found: looked for {spec}.index with {spec}.dict.dz or "
                    f"{spec}.dict in {', '.join(map(str, dirs))}",
                    hint=f"install it (on Debian/Ubuntu: apt-get install dict-{spec}), set $DICTD_DIR, "
                    "or pass --dictd PATH to its .index or .dict(.dz) file")


def find_dictionaries(specs: list[str]) -> list[Dictionary]:
    """The dictionaries to read: those named (in order, each once), or every installed one."""
    if specs:
        found = [d for spec in specs for d in find_dictionary(spec)]
    else:
        dirs = search_dirs()
        found = [d for directory in dirs for d in dictionaries_in(directory)]
        if not found:
            raise PipeError(f"no dictd dictionary found in {', '.join(map(str, dirs))}", hint=INSTALL_HINT)
        by_name: dict[str, Dictionary] = {}
        for dictionary in found:
            by_name.setdefault(dictionary.name, dictionary)  # a name once: the first place wins
        found = list(by_name.values())
    unique: dict[Path, Dictionary] = {}
    for dictionary in found:
        unique.setdefault(dictionary.body.resolve(), dictionary)
    return list(unique.values())


def decode_number(text: str) -> int:
    """A dictd base64 number (most significant digit first); ValueError when it is not one."""
    if not text:
        raise ValueError("empty")
    value = 0
    for char in text:
        digit = _B64_VALUE.get(char)
        if digit is None:
            raise ValueError(char)
        value = value * 64 + digit
    return value


def parse_index(text: str, where: str, body_size: int) -> list[IndexLine]:
    """The lines of a .index file; a malformed line is an error naming `where` and its line number."""
    lines = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) not in (3, 4):  # a 4th field, when there, is the headword as first written
            raise PipeError(f"{where}:{number}: expected 3 tab-separated fields (headword, offset, length), "
                            f"found {len(fields)}", hint="is this a dictd .index file? rebuild it with dictfmt")
        try:
            offset, length = decode_number(fields[1]), decode_number(fields[2])
        except ValueError:
            raise PipeError(f"{where}:{number}: offset {fields[1]!r} or length {fields[2]!r} is not a dictd "
                            "base64 number", hint="is this a dictd .index file? rebuild it with dictfmt") from None
        if offset + length > body_size:
            raise PipeError(f"{where}:{number}: '{fields[0]}' points past the end of the dictionary text "
                            f"(byte {offset + length} of {body_size})",
                            hint="the .index and .dict files do not belong together; reinstall or rebuild both")
        lines.append(IndexLine(fields[0], offset, length, number))
    return lines


def is_meta(headword: str) -> bool:
    """Whether a headword is one of dictfmt's `00-database-*` entries (name, info, url, flags)."""
    return headword.startswith(META_PREFIXES)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _key(text: str) -> str:
    return _collapse(text).casefold()


def split_header(text: str, headwords: list[str]) -> tuple[list[str], str]:
    """(the headword lines that open an entry, the rest): leading unindented lines that spell one of
    its headwords (a long one may wrap over lines)."""
    keys = {_key(h) for h in headwords}
    lines = text.split("\n")
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    forms: list[str] = []
    buffer: list[str] = []
    end = start
    for number in range(start, len(lines)):
        line = lines[number]
        if not line.strip() or line[0].isspace():
            break
        buffer.append(line)
        if _key(" ".join(buffer)) in keys:
            forms.append(_collapse(" ".join(buffer)))
            buffer = []
            end = number + 1
    return forms, "\n".join(lines[end:])


def _link(match: re.Match[str]) -> str:
    inner = match.group(1)
    if not inner or inner[0].isspace() or inner[-1].isspace():
        return match.group(0)  # `{}` or `{ code }`, not a reference
    address = _LINK_ADDRESS.fullmatch(inner)
    if address and re.search(r"[/.:]", address.group(2)):
        return address.group(1) or address.group(2)  # `{text (address)}` -> text; `{(address)}` -> address
    return inner


def plain_text(text: str) -> str:
    """`{cross reference}` braces as plain text, whitespace collapsed."""
    return _collapse(_LINK.sub(_link, _collapse(text)))


def strip_marker(text: str) -> tuple[str, str]:
    """(the leading `<field>` marker's content or "", the text after it and any marker repeated after it)."""
    match = _MARKER.match(text)
    if not match:
        return "", text
    section = match.group(1).strip()
    while match:
        text = text[match.end():]
        match = _MARKER.match(text)
    return section, text


def strip_date(text: str) -> str:
    """The text without its trailing `(YYYY-MM-DD)` update dates."""
    while True:
        stripped = _DATE.sub("", text)
        if stripped == text:
            return text.strip()
        text = stripped


def is_cross_reference(text: str) -> bool:
    """Whether a definition (marker and date already off) only points at other entries: `See {X}.`"""
    core = _CITATIONS.sub("", _PRONUNCIATION.sub("", text.strip())).strip()
    return bool(_XREF.fullmatch(core))


def _split_inline(paragraph: str, number: int) -> Iterator[tuple[int, str]]:
    """A paragraph holding senses `number.`, `number+1.` … after sentence ends, one by one."""
    while True:
        nxt = re.search(rf"(?<=[.!?\"')\]])\s+{number + 1}\.\s+(?=\S)", paragraph)
        if not nxt:
            yield number, paragraph
            return
        yield number, paragraph[:nxt.start()]
        paragraph = paragraph[nxt.end():]
        number += 1


def split_senses(text: str) -> tuple[str, list[str]]:
    """(the lead, the numbered senses) of a definition; ("", [text]) when it has no `1.`.

    Senses start at `1.`, either a paragraph's start or after a marker, pronunciation or aside that
    opens the first paragraph; each next number starts the next sense, at a paragraph start or after
    a sentence. A `1.` after a paragraph that stops mid-sentence ("…such that", "…:", "…,") starts a
    list, not senses."""
    paragraphs = [_collapse(p) for p in _PARAGRAPH.split(text)]
    paragraphs = [p for p in paragraphs if p]
    for position, paragraph in enumerate(paragraphs):
        match = _FIRST_SENSE.match(paragraph)
        if not match:
            continue
        if position and (match.group(1) or _LIST_INTRO.search(strip_date(paragraphs[position - 1]))):
            continue
        lead = " ".join([*paragraphs[:position], match.group(1)]).strip()
        senses: list[list[str]] = [[]]
        number = 1
        for later, part in enumerate([paragraph[match.end():], *paragraphs[position + 1:]]):
            start = re.match(rf"{number + 1}\.\s+", part) if later else None
            if start:
                number += 1
                senses.append([])
                part = part[start.end():]
            for sense_number, piece in _split_inline(part, number):
                if sense_number > number:
                    number = sense_number
                    senses.append([])
                senses[-1].append(piece)
        return lead, [" ".join(parts) for parts in senses]
    return "", [_collapse(text)]


def entry_rows(headwords: list[str], text: str, page: ParsedPage) -> list[Entry]:
    """The rows of one entry: its text under all its headwords, one row per numbered sense."""
    forms, rest = split_header(text, headwords)
    term = forms[0] if forms else headwords[0]
    aliases: dict[str, str] = {}
    for name in [*forms[1:], *headwords]:
        if _key(name) != _key(term):
            aliases.setdefault(_key(name), _collapse(name))
    lead, senses = split_senses(rest)
    section, lead = strip_marker(lead)
    lead = strip_date(lead)
    parts = [strip_marker(sense) for sense in senses]
    if lead and _LEAD_TOKENS.fullmatch(lead):
        own, first = parts[0]
        parts[0] = (own, f"{lead} {first}")  # a pronunciation or aside before `1.` belongs to the first sense
    elif lead:
        parts.insert(0, ("", lead))  # a definition before the numbered senses is a row of its own
    rows = []
    for own, body in parts:
        body = strip_date(body)
        if not body:
            page.drop("empty definition")
        elif is_cross_reference(body):
            page.drop("cross-reference only")
        else:
            rows.append(Entry(term=term, definition=plain_text(body), aliases=list(aliases.values()),
                              section=own or section))
    return rows


def _meta_text(headword: str, text: str) -> str:
    """A meta entry's text without its first line when that line repeats the meta headword."""
    first, _, rest = text.lstrip("\n").partition("\n")
    return _collapse(rest if first.strip() == headword else text)


def license_of(info: str) -> str:
    """The licence `00-database-info` states (its words, e.g. 'GNU Free Documentation License, Version 1.1
    or any later version'), or ""."""
    match = _LICENSES.search(_collapse(info))
    return match.group(0) if match else ""


def parse_dictionary(index_text: str, body: bytes, where: str = "index") -> ParsedPage:
    """Rows of one dictd dictionary: its .index text and its uncompressed .dict bytes."""
    page = ParsedPage()
    lines = parse_index(index_text, where, len(body))
    meta: dict[str, str] = {}
    entries: dict[tuple[int, int], list[str]] = {}
    for line in lines:
        if is_meta(line.headword):
            meta[line.headword] = _meta_text(line.headword, _text(body[line.offset:line.offset + line.length]))
        else:
            entries.setdefault((line.offset, line.length), []).append(line.headword)
    short = meta.get("00-database-short", "")
    revision = re.search(r"\s*\(([^()]*\d[^()]*)\)$", short)
    page.title = short[:revision.start()] if revision else short
    page.revision = revision.group(1) if revision else ""
    url = meta.get("00-database-url", "")
    page.canonical_url = url if re.match(r"(?:https?|ftp)://\S+$", url) else ""
    page.license = license_of(meta.get("00-database-info", ""))
    for (offset, length), headwords in sorted(entries.items()):
        page.entries.extend(entry_rows(headwords, _text(body[offset:offset + length]), page))
    if not page.entries:
        page.warnings.append("no entries in this dictionary")
    return page


def index_path(body: Path) -> Path:
    """The .index file beside a .dict or .dict.dz file."""
    base = _strip_suffix(body)
    return base.with_name(base.name + INDEX_SUFFIX)


def read_body(content: bytes, where: str) -> bytes:
    """A .dict file's text: dictzip (gzip) content uncompressed, plain content as it is."""
    if not content.startswith(b"\x1f\x8b"):
        return content
    try:
        return gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as exc:
        raise PipeError(f"{where}: cannot uncompress ({exc})",
                        hint="the .dict.dz file is damaged; reinstall the dictionary") from None


class Dictd:
    """Dictionaries in the dictd format, read from local files."""

    name = NAME
    license = LICENSE
    parser_version = PARSER_VERSION
    needs_html = False

    def pages(self, config: SourceOptions) -> list[PageRef]:
        return [PageRef(NAME, d.name, str(d.body), "", local=True) for d in find_dictionaries(config.dictd)]

    def parse(self, ref: PageRef, content: bytes, config: SourceOptions) -> ParsedPage:
        body = read_body(content, ref.location)
        index = index_path(Path(ref.location))
        try:
            index_text = _text(index.read_bytes())
        except OSError as exc:
            raise PipeError(f"{index}: cannot read ({exc.strerror or exc})",
                            hint="a dictd dictionary needs its .index file beside the .dict(.dz) file") from None
        return parse_dictionary(index_text, body, str(index))
