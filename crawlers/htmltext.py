"""Clean text out of HTML elements: drop citations, edit links, images and styles; keep math as TeX."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString

# Elements that never carry definition text: citation marks, edit links, images, styles, scripts.
NOISE = ", ".join([
    "sup.reference", "sup.noprint", ".mw-editsection", ".mw-cite-backlink", ".Inline-Template",
    "style", "script", "link", "meta", "noscript", "img", "figure", "figcaption", ".thumb",
    "span.anchor", ".mw-empty-elt", "audio", "video",
])
_BLOCK = {"p", "div", "li", "ul", "ol", "dl", "dd", "dt", "br", "table", "tr", "td", "th",
          "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr"}
_WS = re.compile(r"\s+")
_CITE_LEFTOVER = re.compile(r"\[(?:\d+|[a-z]|note \d+|citation needed|clarification needed|"
                            r"according to whom\?|when\?|who\?|by whom\?|dubious[^\]]*)\]", re.I)
_TEX_WRAPPER = re.compile(r"^\{\\displaystyle\s*(.*)\}$", re.S)


def soup_of(content: bytes | str) -> BeautifulSoup:
    """Parse HTML leniently with lxml (a truncated document parses as far as it goes)."""
    return BeautifulSoup(content, "lxml")


def _math_to_tex(el: Tag) -> None:
    """Replace MediaWiki math markup (MathML + fallback image) by its TeX source."""
    for math in el.select(".mwe-math-element"):
        tex = ""
        annotation = math.find("annotation", attrs={"encoding": "application/x-tex"})
        if annotation is not None:
            tex = annotation.get_text()
        else:
            img = math.find("img")
            tex = str(img.get("alt", "")) if img is not None else math.get_text()
        tex = tex.strip()
        match = _TEX_WRAPPER.match(tex)
        if match:
            tex = match.group(1).strip()
        math.replace_with(NavigableString(tex))


def strip_noise(el: Tag) -> Tag:
    """Remove citations, edit links, images and the like from an element, in place."""
    _math_to_tex(el)
    for junk in el.select(NOISE):
        junk.decompose()
    return el


def normalize_space(text: str) -> str:
    """Collapse runs of whitespace (incl. non-breaking spaces) to one space and trim."""
    return _WS.sub(" ", text.replace("\u00a0", " ").replace("\u200b", "")).strip()


def element_text(el: Tag) -> str:
    """The readable text of an element: block boundaries become spaces, leftover [1] marks go."""
    parts: list[str] = []
    for node in el.descendants:
        if isinstance(node, NavigableString):
            if not isinstance(node, PreformattedString):
                parts.append(str(node))
        elif isinstance(node, Tag) and node.name in _BLOCK:
            parts.append(" ")
    text = normalize_space("".join(parts))
    return normalize_space(_CITE_LEFTOVER.sub("", text))


def clean_text(el: Tag) -> str:
    """strip_noise then element_text."""
    return element_text(strip_noise(el))


def looks_like_html(content: bytes) -> bool:
    """Whether bytes look like an HTML document or fragment (for files without a content type)."""
    head = content[:4096].lstrip().lower()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if not head.startswith(b"<"):
        return False
    return any(tag in head for tag in (b"<html", b"<!doctype html", b"<head", b"<body", b"<dl", b"<div",
                                       b"<p", b"<meta", b"<section", b"<table", b"<h1", b"<h2"))
