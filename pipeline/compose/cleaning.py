"""Text cleaning for glossary entries: pure functions, no I/O.

Crawled and hand-made glossaries carry HTML, entities, citation marks and odd whitespace; every
text is cleaned the same way so that duplicates and ids compare equal.
"""

from __future__ import annotations

import html
import re
import unicodedata

_TAG = re.compile(r"<[^>]{0,2000}>")
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


def clean_text(text: str) -> str:
    """NFC, HTML tags and entities removed, control characters and citation marks dropped,
    whitespace collapsed."""
    if not text:
        return ""
    text = html.unescape(_TAG.sub(" ", text)) if ("<" in text or "&" in text) else text
    text = _INVISIBLE.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\u00a0", " ")
    text = _CITATION.sub("", text)
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
