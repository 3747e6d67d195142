"""Source `wordnet`: every (lemma, gloss) pair of a WordNet 3.0 database directory, with part of speech.

Reads the `data.noun`, `data.verb`, `data.adj`, `data.adv` files (Debian's wordnet-base installs
them at /usr/share/wordnet): one row per lemma of each synset (about 117k synsets, 207k rows). The
definition is the gloss without its quoted examples; the synset's other lemmas become `aliases`,
its lexicographer file (noun.artifact, verb.motion, …) the `section`, `offset-pos` the `anchor`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from pipe_embed.crawlers.base import Entry, PageRef, ParsedPage, SourceOptions
from pipe_embed.pipeline.core.errors import PipeError

NAME = "wordnet"
PARSER_VERSION = 1
LICENSE = "WordNet 3.0 license (Princeton University)"
DATA_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
POS_NAMES = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
SEARCH_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/local/WordNet-3.0/dict",
               "/usr/share/wordnet/dict", "~/nltk_data/corpora/wordnet", "/usr/share/nltk_data/corpora/wordnet")
# WordNet 3.0's lexicographer files, by number (the `lexnames` file, which Debian does not ship).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change",
    "verb.cognition", "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social",
    "verb.stative", "verb.weather", "adj.ppl",
)
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")
_EXAMPLES = re.compile(r';\s*"')
_VERSION = re.compile(rb"WordNet (\d+(?:\.\d+)*)")


def find_wordnet_dir(configured: str = "") -> Path:
    """The WordNet database directory: the configured one, $WORDNET_DIR, or a usual install place."""
    candidates = [configured] if configured else [os.environ.get("WORDNET_DIR", ""),
                                                   os.path.join(os.environ.get("WNHOME", ""), "dict"), *SEARCH_DIRS]
    for candidate in candidates:
        if not candidate or candidate == "dict":
            continue
        path = Path(candidate).expanduser()
        if any((path / name).is_file() for name in DATA_FILES):
            return path
    if configured:
        raise PipeError(f"{configured}: no WordNet data.noun/data.verb/data.adj/data.adv files there",
                        hint="point --wordnet-dir at a WordNet 3.0 'dict' directory")
    raise PipeError("no WordNet database found", hint="install it (apt-get install wordnet-base) "
                    "or pass --wordnet-dir DIR holding data.noun etc.")


def lemma_text(word: str) -> str:
    """A data-file word as text: underscores to spaces, adjective position markers dropped."""
    return _ADJ_MARKER.sub("", word).replace("_", " ").strip()


def gloss_definition(gloss: str) -> str:
    """The definition part of a gloss: everything before the first quoted example."""
    gloss = gloss.strip()
    if gloss.startswith('"'):
        return ""
    match = _EXAMPLES.search(gloss)
    definition = gloss[:match.start()] if match else gloss
    return definition.strip().rstrip(";").strip()


def iter_synsets(lines: Iterator[str], lexnames: tuple[str, ...] = LEXNAMES) -> Iterator[tuple[str, str, str, list[str], str]]:
    """(offset, pos letter, lexname, lemmas, gloss) for each synset line of a data file."""
    for line in lines:
        if not line or line.startswith(" ") or line.startswith("\t"):
            continue  # the licence header
        head, sep, gloss = line.partition(" | ")
        fields = head.split()
        if len(fields) < 4:
            continue
        try:
            lex_number = int(fields[1])
            count = int(fields[3], 16)
        except ValueError:
            continue
        words = [lemma_text(w) for w in fields[4:4 + 2 * count:2]]
        lexname = lexnames[lex_number] if 0 <= lex_number < len(lexnames) else str(lex_number)
        yield fields[0], fields[2], lexname, [w for w in words if w], gloss.strip() if sep else ""


def parse_data_file(content: bytes) -> ParsedPage:
    """Rows of one WordNet data file: one per (lemma, synset)."""
    page = ParsedPage(license=LICENSE)
    version = _VERSION.search(content[:4096])
    page.revision = version.group(1).decode() if version else ""
    lines = content.decode("utf-8", "replace").splitlines()
    for offset, pos, lexname, lemmas, gloss in iter_synsets(iter(lines)):
        definition = gloss_definition(gloss)
        if not definition:
            page.drop("gloss without definition", len(lemmas))
            continue
        for lemma in lemmas:
            others = [other for other in lemmas if other != lemma]
            page.entries.append(Entry(term=lemma, definition=definition, aliases=others, section=lexname,
                                      anchor=f"{offset}-{pos}", pos=POS_NAMES.get(pos, pos)))
    if not page.entries:
        page.warnings.append("no synsets in this file (is it a WordNet data.* file?)")
    return page


class WordNet:
    """The WordNet 3.0 glossary read from local database files."""

    name = NAME
    license = LICENSE
    parser_version = PARSER_VERSION
    needs_html = False

    def pages(self, config: SourceOptions) -> list[PageRef]:
        root = find_wordnet_dir(config.wordnet_dir)
        return [PageRef(NAME, name, str(root / name), "", local=True)
                for name in DATA_FILES if (root / name).is_file()]

    def parse(self, ref: PageRef, content: bytes, config: SourceOptions) -> ParsedPage:
        return parse_data_file(content)
