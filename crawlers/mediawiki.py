"""Parse MediaWiki glossary pages (`<dl><dt><dd>` in all the markup generations) into entries.

Handles `dl.glossary` with `dt`/`dfn`/`dd` (the {{glossary}} templates), terms with several
numbered definitions (one entry each), images and reference marks inside the lists, plain
`<dl><dt><dd>` without classes, consecutive `dt`s sharing one `dd` (the later ones become aliases),
a term whose `dd` was split into the next list by a hatnote, and both the old
`<h2><span class="mw-headline">` and the new `<div class="mw-heading"><h2>` section headings.
Keeps the section, the term's anchor id and the page revision; strips citations, edit links and
images; leading "Also called X." / "Or X." sentences become `aliases` (and leave the definition
when something else remains). Works on any HTML page with definition lists, not only Wikipedia.
"""

from __future__ import annotations

import json
import re

from bs4 import BeautifulSoup, PageElement, Tag

from pipe_embed.crawlers.base import Entry, ParsedPage
from pipe_embed.crawlers.htmltext import (
    clean_text,
    element_text,
    normalize_space,
    soup_of,
    strip_noise,
)

PARSER_VERSION = 1

_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Sections whose lists are not glossary entries.
SKIP_SECTIONS = {
    "see also", "references", "notes", "further reading", "external links", "sources", "bibliography",
    "citations", "footnotes", "notes and references", "works cited", "general references",
    "references and notes", "explanatory notes", "contents",
}
# Containers whose lists are navigation or references, never entries.
_SKIP_CLASSES = {"navbox", "reflist", "references", "toc", "sidebar", "infobox", "mw-references-wrap",
                 "hatnote", "metadata", "catlinks", "vertical-navbox", "printfooter"}
_SKIP_IDS = {"toc", "catlinks", "footer", "mw-navigation", "siteSub", "jump-to-nav"}

_NUMBERING = re.compile(r"^\(?\d{1,2}[.)](?:\s+|$)")
_ALIAS_VERBS = r"(?:called|known as|also known as|referred to as|spelled|spelt|written|termed|named|abbreviated(?: as)?)"
_LEAD_ALIAS = re.compile(r"^(?:Also|Or)\b(?P<verb>\s+" + _ALIAS_VERBS + r")?\s*(?P<body>.+?)(?:\.(?=\s|$)|$)",
                         re.S)
_MID_ALIAS = re.compile(r"(?:(?<=[.;]\s)|^)Also\s+" + _ALIAS_VERBS + r"\s+(?P<body>.+?)(?:\.(?=\s|$)|$)", re.S)
_ALIAS_SPLIT = re.compile(r"\s*,\s*(?:and\s+|or\s+)?(?:sometimes\s+)?|\s+(?:or|and)\s+(?:sometimes\s+)?")
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.I)
_QUOTES = "\"'“”‘’«»"

_REVISION_PATTERNS = [
    re.compile(rb'"wgRevisionId"\s*:\s*(\d+)'),
    re.compile(rb'about="[^"]*/revision/(\d+)"'),
    re.compile(rb'id="t-permalink".{0,400}?oldid=(\d+)', re.S),
    re.compile(rb"oldid=(\d+)"),
]
_TITLE_PATTERN = re.compile(rb'"wgTitle"\s*:\s*"((?:[^"\\]|\\.)*)"')
_LICENSE_PATTERN = re.compile(rb"creativecommons\.org/licenses/(by(?:-sa|-nc|-nd|-nc-sa|-nc-nd)?)/(\d\.\d)")


def page_revision(raw: bytes) -> str:
    """The revision id a saved or served MediaWiki page states, or ''."""
    for pattern in _REVISION_PATTERNS:
        match = pattern.search(raw)
        if match:
            return match.group(1).decode("ascii")
    return ""


def page_license(raw: bytes) -> str:
    """The Creative Commons licence the page's footer names (e.g. 'CC BY-SA 3.0'), or ''."""
    match = _LICENSE_PATTERN.search(raw)
    if not match:
        return ""
    return f"CC {match.group(1).decode().upper()} {match.group(2).decode()}"


def is_truncated(raw: bytes) -> bool:
    """True for a full HTML document that never closes: the download or save was cut short."""
    head = raw[:65536].lower()
    if b"<html" not in head:
        return False
    return re.search(rb"</html\s*>", raw[-65536:], re.I) is None


def _cut_inside_definition(raw: bytes) -> bool:
    """Whether the last <dd> in a truncated document was never closed (its text is incomplete)."""
    lower = raw.lower()
    return lower.rfind(b"<dd") > lower.rfind(b"</dd>")


def content_root(soup: BeautifulSoup) -> Tag:
    """The article body: MediaWiki's parser output, else the main content, else the whole page."""
    for selector in ("#mw-content-text .mw-parser-output", ".mw-parser-output", "#mw-content-text",
                     "main", "#content", "body"):
        found = soup.select_one(selector)
        if found is not None:
            return found
    return soup


def _in_skipped_container(el: Tag, root: Tag) -> bool:
    for parent in el.parents:
        if parent is root or parent is None:
            return False
        if parent.name == "dl":
            return True  # a nested list: its text belongs to the enclosing entry
        classes = set(parent.get("class") or [])
        if classes & _SKIP_CLASSES or parent.get("id") in _SKIP_IDS:
            return True
    return False


def heading_text(heading: Tag) -> str:
    """A section heading's title without its [edit] link."""
    headline = heading.select_one(".mw-headline")
    target = headline if headline is not None else heading
    for edit in target.select(".mw-editsection"):
        edit.decompose()
    return element_text(target)


def _anchor_of(dt: Tag) -> str:
    """The term's anchor id: the dt's own id, else the first id inside it."""
    if dt.get("id"):
        return str(dt["id"])
    inner = dt.find(None, {"id": True})
    return str(inner["id"]) if inner is not None and inner["id"] else ""


def _clean_alias(text: str, term: str) -> str:
    text = normalize_space(text).strip(_QUOTES + " ,;:.")
    text = _ARTICLE.sub("", text).strip(_QUOTES + " ")
    if not text or len(text) > 80 or text.casefold() == term.casefold():
        return ""
    return text


def _marked_phrases(dd: Tag) -> list[str]:
    """Texts of the outermost bold/italic/dfn elements of a definition: where aliases are marked."""
    marks = ("b", "i", "dfn", "strong", "em")
    found = []
    for el in dd.find_all(marks):
        nested = False
        for parent in el.parents:
            if parent is dd:
                break
            if parent.name in marks:
                nested = True
                break
        if not nested and (text := element_text(el)):
            found.append(text)
    return found


def _aliases_in(body: str, marked: list[str], has_verb: bool) -> list[str]:
    """Aliases named in the body of an 'Also …' sentence: marked phrases, else split plain text."""
    inside = [m for m in marked if re.search(r"(?<!\w)" + re.escape(m) + r"(?!\w)", body)]
    if inside:
        return inside
    if has_verb:
        return [part for part in _ALIAS_SPLIT.split(body) if part]
    return []


def split_aliases(text: str, marked: list[str], term: str) -> tuple[str, list[str]]:
    """(definition, aliases): pull 'Also called X' / 'Or X' aliases; drop a leading alias sentence."""
    aliases: list[str] = []
    definition = text
    lead = _LEAD_ALIAS.match(text)
    if lead:
        found = _aliases_in(lead.group("body"), marked, bool(lead.group("verb")))
        if found:
            aliases.extend(found)
            rest = text[lead.end():].strip()
            if rest:
                definition = rest
    for mid in _MID_ALIAS.finditer(text):
        if lead and mid.start() == 0:
            continue
        aliases.extend(_aliases_in(mid.group("body"), marked, True))
    cleaned: list[str] = []
    for alias in aliases:
        alias = _clean_alias(alias, term)
        if alias and alias not in cleaned:
            cleaned.append(alias)
    return definition, cleaned


def term_text(dt: Tag) -> str:
    """A term's text without anchors, citation marks or a trailing colon."""
    return clean_text(dt).rstrip(":").strip()


def definition_text(dd: Tag, term: str) -> tuple[str, list[str]]:
    """(definition, aliases) of one dd: noise stripped, numbering removed, alias sentence split off."""
    strip_noise(dd)
    marked = _marked_phrases(dd)
    text = _NUMBERING.sub("", element_text(dd), count=1).strip()
    return split_aliases(text, marked, term)


class _Walker:
    """Walks headings and top-level definition lists in document order, pairing terms and definitions."""

    def __init__(self, page: ParsedPage) -> None:
        self.page = page
        self.section = ""
        self.skip_level: int | None = None
        self.pending: list[tuple[str, str]] = []  # a list's trailing terms still waiting for a dd
        self.terms: list[tuple[str, str]] = []  # the current group of dt (first = term, rest = aliases)
        self.defined = False  # whether the current group has had its dd
        self.lists = 0

    def heading(self, el: Tag) -> None:
        level = int(el.name[1])
        if self.skip_level is not None and level > self.skip_level:
            return
        self._drop_pending()
        text = heading_text(el)
        self.skip_level = level if text.casefold() in SKIP_SECTIONS else None
        self.section = text

    def _drop_pending(self) -> None:
        if self.pending:
            self.page.drop("term without definition", len(self.pending))
            self.pending = []

    def definition_list(self, dl: Tag) -> None:
        if self.skip_level is not None:
            return
        self.lists += 1
        carry, self.pending = self.pending, []
        self.terms, self.defined = [], False
        loose: list[PageElement] = []  # stray text/lists between a dt and the next dt (broken markup)
        for child in list(dl.children):
            if not (isinstance(child, Tag) and child.name in ("dt", "dd")):
                if self.terms and not self.defined:
                    loose.append(child)
                continue
            name = child.name
            if loose:
                if name == "dt":
                    self._loose_definition(loose)
                loose = []
            if name == "dt":
                if carry:  # the previous list's term did not get its definition here either
                    self.page.drop("term without definition", len(carry))
                    carry = []
                if self.defined:
                    self.terms, self.defined = [], False
                anchor = _anchor_of(child)
                term = term_text(child)
                if not term:
                    self.page.drop("empty term")
                    continue
                self.terms.append((term, anchor))
                continue
            if not self.terms and carry:
                self.terms, carry = carry, []
            main_term = self.terms[0][0] if self.terms else ""
            image_only = child.find("img") is not None
            definition, aliases = definition_text(child, main_term)
            if not definition:
                self.page.drop("image-only definition" if image_only else "empty definition")
                if self.terms:
                    self.defined = True  # the term had its dd, only an empty one
                continue
            self._add(definition, aliases)
        if loose:
            self._loose_definition(loose)
        if carry:
            self.page.drop("term without definition", len(carry))
        if self.terms and not self.defined:
            self.pending = self.terms

    def _add(self, definition: str, aliases: list[str]) -> None:
        if not self.terms:
            self.page.drop("definition without term")
            return
        main_term, anchor = self.terms[0]
        extra = [t for t, _ in self.terms[1:] if t.casefold() != main_term.casefold()]
        merged = list(dict.fromkeys(extra + aliases))
        self.page.entries.append(Entry(term=main_term, definition=definition, aliases=merged,
                                       section=self.section, anchor=anchor))
        self.defined = True

    def _loose_definition(self, nodes: list[PageElement]) -> None:
        """A definition written as bare text or a list right after a dt, without a dd."""
        wrapper = soup_of("<dd>" + "".join(str(n) for n in nodes) + "</dd>").find("dd")
        if wrapper is None or not self.terms or self.defined:
            return
        definition, aliases = definition_text(wrapper, self.terms[0][0])
        if definition:
            self._add(definition, aliases)

    def finish(self) -> None:
        self._drop_pending()


def parse_glossary(raw: bytes | str) -> ParsedPage:
    """Entries of a glossary page (MediaWiki or any HTML with definition lists)."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    soup = soup_of(data)
    page = ParsedPage(revision=page_revision(data), license=page_license(data))
    title = _TITLE_PATTERN.search(data)
    if title:
        try:
            page.title = json.loads(b'"' + title.group(1) + b'"')
        except ValueError:
            page.title = title.group(1).decode("utf-8", "replace")
    elif soup.title is not None:
        page.title = normalize_space(soup.title.get_text()).removesuffix(" - Wikipedia")
    canonical = soup.find("link", rel="canonical")
    if canonical is not None and canonical.get("href"):
        page.canonical_url = str(canonical["href"])

    root = content_root(soup)
    walker = _Walker(page)
    for el in root.find_all([*_HEADINGS, "dl"]):
        if _in_skipped_container(el, root):
            continue
        if el.name == "dl":
            walker.definition_list(el)
        elif el.name != "h1":
            walker.heading(el)
    walker.finish()

    if is_truncated(data):
        page.warnings.append("the HTML ends early (truncated); parsed as far as it goes")
        if page.entries and _cut_inside_definition(data):
            page.entries.pop()
            page.drop("cut off by truncation")
    if walker.lists == 0:
        page.warnings.append("no glossary markup (no <dl><dt><dd> definition lists) found")
    elif not page.entries:
        page.warnings.append("definition lists found but no term/definition pairs in them")
    return page
