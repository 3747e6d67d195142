"""The wordnet source on a tiny database written here, and on the real one when installed."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipe_embed.crawlers.stage import GLOSSARY_FILE, run_crawl
from pipe_embed.crawlers.wordnet import (
    find_wordnet_dir,
    gloss_definition,
    lemma_text,
    parse_data_file,
)
from pipe_embed.pipeline.core.errors import PipeError

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n" \
         "  2 Princeton University under the following license. WordNet 3.0 Copyright 2006  \n"
NOUN = HEADER + (
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known or inferred to have "
    "its own distinct existence (living or nonliving)  \n"
    "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 000 | a member of the genus Canis; "
    "\"the dog barked all night\"  \n"
    "09999999 05 n 01 quote_only 0 000 | \"an example and nothing else\"  \n"
)
ADJ = HEADER + "00001740 00 a 02 able(a) 0 capable(p) 0 000 | (usually followed by `to') having the means; \"able to swim\"  \n"
REAL = Path("/usr/share/wordnet")


@pytest.fixture()
def tiny_wordnet(tmp_path: Path) -> Path:
    root = tmp_path / "wn"
    root.mkdir()
    (root / "data.noun").write_text(NOUN)
    (root / "data.adj").write_text(ADJ)
    (root / "index.noun").write_text("not read\n")
    return root


def test_line_pieces():
    assert lemma_text("Canis_familiaris") == "Canis familiaris"
    assert lemma_text("capable(p)") == "capable"
    assert gloss_definition('a member of the genus Canis; "the dog barked all night"') == "a member of the genus Canis"
    assert gloss_definition('"only an example"') == ""


def test_parse_data_file_rows():
    page = parse_data_file(NOUN.encode())
    assert page.revision == "3.0"
    rows = [(e.term, e.definition, e.aliases, e.section, e.anchor, e.pos) for e in page.entries]
    assert rows[0] == ("entity", "that which is perceived or known or inferred to have its own distinct "
                       "existence (living or nonliving)", [], "noun.Tops", "00001740-n", "noun")
    assert [r[0] for r in rows[1:]] == ["dog", "domestic dog", "Canis familiaris"]
    assert rows[2][2] == ["dog", "Canis familiaris"]
    assert rows[2][3] == "noun.animal"
    assert page.dropped == {"gloss without definition": 1}


def test_wordnet_source_through_the_stage(store, make_config, tiny_wordnet):
    outcome = run_crawl(store, make_config(sources=["wordnet"], wordnet_dir=str(tiny_wordnet)))
    with open(outcome.artifact.file(GLOSSARY_FILE), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["term"], r["pos"], r["page"]) for r in rows] == [
        ("entity", "noun", "data.noun"), ("dog", "noun", "data.noun"), ("domestic dog", "noun", "data.noun"),
        ("Canis familiaris", "noun", "data.noun"), ("able", "adj", "data.adj"), ("capable", "adj", "data.adj")]
    assert rows[4]["definition"] == "(usually followed by `to') having the means"
    assert rows[4]["license"].startswith("WordNet 3.0 license")
    # the same files elsewhere are the same content: a cache hit
    copy = tiny_wordnet.parent / "copy"
    copy.mkdir()
    for path in tiny_wordnet.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert run_crawl(store, make_config(sources=["wordnet"], wordnet_dir=str(copy))).cached


def test_missing_wordnet_dir_names_it(tmp_path: Path):
    with pytest.raises(PipeError, match="no WordNet data"):
        find_wordnet_dir(str(tmp_path))


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "data.noun").is_file(), reason="WordNet is not installed at /usr/share/wordnet")
def test_real_wordnet_row_count(store, make_config):
    outcome = run_crawl(store, make_config(sources=["wordnet"], wordnet_dir=str(REAL)))
    stats = outcome.artifact.stats
    assert 206_000 < stats["rows"] < 208_000  # (lemma, synset) pairs; 206,944 with Debian's wordnet-base
    synsets = set()
    with open(outcome.artifact.file(GLOSSARY_FILE), newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            synsets.add(row["anchor"])
    # WordNet 3.0 has 117,659 synsets; 17 of them repeat another synset's lemma and gloss exactly,
    # and those exact duplicates are dropped (34 rows)
    assert 117_600 < len(synsets) <= 117_659
    assert stats["dropped"].get("duplicate", 0) < 100
