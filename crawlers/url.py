"""Sources `url` (any web page) and `html` (saved local pages): CSS selectors or the glossary parser.

Without selectors a page goes through the definition-list parser (crawlers.mediawiki), which suits
any page written with `<dl><dt><dd>`. With selectors, `term` and `definition` pick the elements:
inside each `item` container when one is given, else by document order (each term takes the
definitions that follow it up to the next term). `section` optionally names heading elements.

Selectors come from `--selectors "item=div.entry; term=h3; definition=p"` or a small YAML spec
(`--spec glossary.yaml`) holding the same keys plus optional `urls:` and `license:`; flags win.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bs4 import Tag
from soupsieve import SelectorSyntaxError

from pipe_embed.crawlers.base import Entry, PageRef, ParsedPage, SourceOptions
from pipe_embed.crawlers.htmltext import clean_text, normalize_space, soup_of
from pipe_embed.crawlers.http import strip_userinfo
from pipe_embed.crawlers.mediawiki import PARSER_VERSION as GLOSSARY_PARSER_VERSION
from pipe_embed.crawlers.mediawiki import page_license, page_revision, parse_glossary
from pipe_embed.pipeline.core.errors import ConfigError, InputError, PipeError

PARSER_VERSION = 1 + GLOSSARY_PARSER_VERSION
HTML_SUFFIXES = (".html", ".htm", ".xhtml", ".html.gz", ".htm.gz")
UNKNOWN_LICENSE = "unknown"


@dataclass(frozen=True)
class SelectorSpec:
    """CSS selectors for term and definition (and optionally entry container and section headings)."""

    term: str = ""
    definition: str = ""
    item: str = ""
    section: str = ""
    license: str = ""
    urls: tuple[str, ...] = field(default_factory=tuple)

    @property
    def active(self) -> bool:
        return bool(self.term and self.definition)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["urls"] = list(self.urls)
        return data


_SPEC_KEYS = {f.name for f in fields(SelectorSpec)}


def parse_selector_flags(text: str) -> dict[str, str]:
    """`"item=div.e; term=h3; definition=p"` -> {"item": …, "term": …, "definition": …}."""
    values: dict[str, str] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in {"term", "definition", "item", "section"}:
            raise ConfigError(f"field 'selectors': cannot read '{part}'",
                              hint='write "term=CSS; definition=CSS[; item=CSS][; section=CSS]"')
        values[key] = value.strip()
    return values


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """The keys of a YAML selector spec, checked."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "selector spec not found", hint="pass an existing YAML file to --spec")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise InputError(path, "not valid YAML", line=line + 1 if line is not None else None,
                         hint="fix the spec's syntax") from None
    if not isinstance(data, dict):
        raise InputError(path, "the spec must be a mapping (term:, definition:, …)")
    unknown = sorted(set(data) - _SPEC_KEYS)
    if unknown:
        raise InputError(path, f"unknown key '{unknown[0]}'", hint=f"known keys: {', '.join(sorted(_SPEC_KEYS))}")
    urls = data.get("urls") or []
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise InputError(path, "'urls' must be a list of addresses")
    data["urls"] = urls
    for key in _SPEC_KEYS - {"urls"}:
        if key in data and not isinstance(data[key], str):
            raise InputError(path, f"'{key}' must be a string")
    return data


def resolve_spec(config: SourceOptions) -> SelectorSpec:
    """The selector spec of a crawl: the spec file's keys, overridden by --selectors."""
    values: dict[str, Any] = {}
    if config.spec:
        values.update(load_spec_file(config.spec))
    if config.selectors:
        values.update(parse_selector_flags(config.selectors))
    spec = SelectorSpec(**{**values, "urls": tuple(values.get("urls", ()))})
    if bool(spec.term) != bool(spec.definition):
        missing = "definition" if spec.term else "term"
        raise ConfigError(f"selectors: '{missing}' is missing",
                          hint="give both term= and definition= selectors")
    probe = soup_of("<html></html>")
    for key in ("term", "definition", "item", "section"):
        selector = getattr(spec, key)
        if selector:
            try:
                probe.select(selector)
            except (SelectorSyntaxError, ValueError) as exc:
                raise ConfigError(f"selectors: {key}='{selector}' is not a valid CSS selector "
                                  f"({str(exc).splitlines()[0]})") from None
    return spec


def parse_with_selectors(raw: bytes, spec: SelectorSpec) -> ParsedPage:
    """Entries picked by CSS selectors (see the module docstring for how terms meet definitions)."""
    soup = soup_of(raw)
    page = ParsedPage(revision=page_revision(raw), license=page_license(raw))
    if soup.title is not None:
        page.title = normalize_space(soup.title.get_text())
    canonical = soup.find("link", rel="canonical")
    if canonical is not None and canonical.get("href"):
        page.canonical_url = str(canonical["href"])
    order = {id(el): i for i, el in enumerate(soup.find_all(True))}
    sections = sorted((order[id(el)], normalize_space(clean_text(el)))
                      for el in (soup.select(spec.section) if spec.section else []))
    section_keys = [k for k, _ in sections]

    def section_of(el: Tag) -> str:
        at = bisect.bisect_left(section_keys, order.get(id(el), 0))
        return sections[at - 1][1] if at > 0 else ""

    def add(term_el: Tag | None, def_els: list[Tag], anchor_el: Tag | None) -> None:
        if term_el is None:
            page.drop("definition without term", max(len(def_els), 1))
            return
        anchor = str(anchor_el.get("id") or term_el.get("id") or "") if anchor_el is not None else ""
        section = section_of(term_el)
        term = clean_text(term_el).rstrip(":").strip()
        if not term:
            page.drop("empty term")
            return
        if not def_els:
            page.drop("term without definition")
            return
        for def_el in def_els:
            definition = clean_text(def_el)
            if definition:
                page.entries.append(Entry(term=term, definition=definition, section=section, anchor=anchor))
            else:
                page.drop("empty definition")

    if spec.item:
        items = soup.select(spec.item)
        for item in items:
            add(item.select_one(spec.term), item.select(spec.definition), item)
        if not items:
            page.warnings.append(f"no element matches the item selector '{spec.item}'")
        return page

    terms = soup.select(spec.term)
    definitions = soup.select(spec.definition)
    if not terms:
        page.warnings.append(f"no element matches the term selector '{spec.term}'")
    marked = sorted([(order[id(el)], 0, el) for el in terms] + [(order[id(el)], 1, el) for el in definitions],
                    key=lambda x: (x[0], x[1]))
    current: Tag | None = None
    pending: list[Tag] = []
    orphans = 0
    for _, kind, el in marked:
        if kind == 0:
            if current is not None:
                add(current, pending, current)
            current, pending = el, []
        elif current is None:
            orphans += 1
        else:
            pending.append(el)
    if current is not None:
        add(current, pending, current)
    if orphans:
        page.drop("definition without term", orphans)
    return page


def _parse(content: bytes, spec: SelectorSpec, config: SourceOptions) -> ParsedPage:
    parsed = parse_with_selectors(content, spec) if spec.active else parse_glossary(content)
    parsed.license = config.license or spec.license or parsed.license or UNKNOWN_LICENSE
    return parsed


class UrlSource:
    """Any web pages (`--urls` or the spec's `urls:`), parsed with selectors or the glossary parser."""

    name = "url"
    license = UNKNOWN_LICENSE
    parser_version = PARSER_VERSION
    needs_html = True

    def pages(self, config: SourceOptions) -> list[PageRef]:
        spec = resolve_spec(config)
        urls = list(dict.fromkeys([*config.urls, *spec.urls]))
        if not urls:
            raise PipeError("the url source has no pages", hint="pass --urls URL[,URL…] or list urls: in --spec")
        if config.dry_run:
            raise PipeError("the url source needs the network; --dry-run has no sample for it",
                            hint="save the pages and use --sources html --input FILE instead")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"field 'urls': '{strip_userinfo(url)}' is not an http(s) address")
        return [PageRef(self.name, strip_userinfo(url), url, strip_userinfo(url)) for url in urls]

    def parse(self, ref: PageRef, content: bytes, config: SourceOptions) -> ParsedPage:
        return _parse(content, resolve_spec(config), config)


def html_files(inputs: list[str]) -> list[Path]:
    """The HTML files named by --input: files as given, directories searched for *.html(.gz)."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(HTML_SUFFIXES)))
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(path, "no such file or directory", hint="check the --input path")
    return list(dict.fromkeys(found))


class HtmlSource:
    """Saved local pages (`--input FILE|DIR`), parsed like `url` pages; no network."""

    name = "html"
    license = UNKNOWN_LICENSE
    parser_version = PARSER_VERSION
    needs_html = True

    def pages(self, config: SourceOptions) -> list[PageRef]:
        if not config.inputs:
            raise PipeError("the html source has no input", hint="pass --input FILE_OR_DIR[,…]")
        files = html_files(config.inputs)
        if not files:
            raise PipeError(f"no .html files under {', '.join(config.inputs)}")
        return [PageRef(self.name, path.name, str(path), path.resolve().as_uri(), local=True) for path in files]

    def parse(self, ref: PageRef, content: bytes, config: SourceOptions) -> ParsedPage:
        return _parse(content, resolve_spec(config), config)
