"""Text cleaning for glossary entries: pure functions, no I/O.

Crawled and hand-made glossaries carry HTML, entities, citation marks and odd whitespace; every
text is cleaned the same way so that duplicates and ids compare equal.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter

# Element names of the HTML standard (current and obsolete ones still met in pages). Only these, in
# proper tag syntax, are tags: `<user@host>`, `x <- 3 > 0` and a term `<g>` are text and stay.
HTML_ELEMENTS = frozenset("""
a abbr acronym address applet area article aside audio b base basefont bdi bdo bgsound big blink
blockquote body br button canvas caption center cite code col colgroup data datalist dd del details
dfn dialog dir div dl dt em embed fieldset figcaption figure font footer form frame frameset h1 h2 h3
h4 h5 h6 head header hgroup hr html i iframe image img input ins isindex kbd keygen label legend li
link listing main map mark marquee math menu menuitem meta meter multicol nav nextid nobr noembed
noframes noscript object ol optgroup option output p param picture plaintext pre progress q rb rp
rt rtc ruby s samp script search section select slot small source spacer span strike strong style
sub summary sup svg table tbody td template textarea tfoot th thead time title tr track tt u ul var
video wbr xmp
""".split())
_NAMES = "|".join(sorted(HTML_ELEMENTS, key=len, reverse=True))
_ATTRIBUTE = r"""(?:\s+[^\s"'<>/=]+(?:\s*=\s*(?:"[^"<>]*"|'[^'<>]*'|[^\s"'=<>`]+))?)"""
_TAG = re.compile(rf"<(?:/(?:{_NAMES})\s*|(?:{_NAMES}){_ATTRIBUTE}{{0,50}}\s*/?)>|<!--.{{0,10000}}?-->",
                  re.IGNORECASE | re.DOTALL)
# A character reference with its semicolon: `&amp;`, `&#233;`, `&#xE9;` (never `&not` in `&notation`).
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
# The kinds of change clean_text counts (compose's `cleaning` stats).
CLEANING_CHANGES = ("html_tags_removed", "entities_decoded", "citations_removed", "control_chars_removed")
_CITATION = re.compile(
    r"\[(?:\d{1,4}|[a-z]|note \d+|nb \d+|citation needed|clarification needed|according to whom\?|"
    r"who\?|when\?|which\?|by whom\?|dubious[^\]]{0,40}|failed verification|better source needed|"
    r"page needed|verification needed|original research\?|edit)\]",
    re.IGNORECASE,
)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)])")
# Control characters (NUL, C0 and C1 controls other than whitespace), lone surrogates, and invisible
# marks that only split words (zero-width space, word joiner, a BOM inside the text).
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff\u200b\u2060\ufeff]")
_WHITESPACE = re.compile(r"\s+")


def _count(counts: Counter[str] | None, kind: str, n: int) -> None:
    if counts is not None and n:
        counts[kind] += n


def _decode_entity(match: re.Match[str]) -> str:
    return html.unescape(match.group(0))


def clean_text(text: str, counts: Counter[str] | None = None) -> str:
    """NFC, HTML tags (real element names only) and character references removed, control
    characters and citation marks dropped, whitespace collapsed; each kind of change is added to
    `counts` (html_tags_removed, entities_decoded, citations_removed, control_chars_removed)."""
    if not text:
        return ""
    if "<" in text:
        text, n = _TAG.subn(" ", text)
        _count(counts, "html_tags_removed", n)
    if "&" in text:
        decoded = 0

        def decode(match: re.Match[str]) -> str:
            nonlocal decoded
            value = _decode_entity(match)
            decoded += value != match.group(0)
            return value

        text = _ENTITY.sub(decode, text)
        _count(counts, "entities_decoded", decoded)
    text, n = _INVISIBLE.subn("", text)
    _count(counts, "control_chars_removed", n)
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\u00a0", " ")
    text, n = _CITATION.subn("", text)
    _count(counts, "citations_removed", n)
    text = _WHITESPACE.sub(" ", text).strip()
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def drop_reason(anchor: str, positive: str, *, min_anchor_chars: int, min_positive_chars: int,
                max_anchor_chars: int, max_positive_chars: int) -> str | None:
    """Why a cleaned (anchor, positive) row is dropped, or None to keep it."""
    if not anchor:
        return "empty_anchor"
    if not positive:
        return "empty_positive"
    if len(anchor) < min_anchor_chars:
        return "anchor_too_short"
    if len(positive) < min_positive_chars:
        return "positive_too_short"
    if len(anchor) > max_anchor_chars:
        return "anchor_too_long"
    if len(positive) > max_positive_chars:
        return "positive_too_long"
    return None
