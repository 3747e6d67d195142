"""A tiny LexDPR-style data set: id-based queries and a corpus of articles grouped by law."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CORPUS: list[dict[str, Any]] = [
    {"id": "civil-1", "text": "A person acquires legal capacity at birth and loses it at death.", "law": "Civil Code"},
    {"id": "civil-2", "text": "A minor needs the consent of a legal guardian to enter into a contract.", "law": "Civil Code"},
    {"id": "civil-3", "text": "A contract concluded under duress may be rescinded by the coerced party.", "law": "Civil Code"},
    {"id": "civil-4", "text": "Ownership of movable property passes on delivery of the thing.", "law": "Civil Code"},
    {"id": "crim-1", "text": "Theft is the <b>taking</b> of movable property of another with intent to keep it.", "law": "Criminal Code"},
    {"id": "crim-2", "text": "Fraud is deceiving another person to obtain an unlawful financial gain.", "law": "Criminal Code"},
    {"id": "crim-3", "text": "An attempt to commit a felony is punishable even if the act is not completed.", "law": "Criminal Code"},
    {"id": 7, "text": "Self-defence against an unlawful attack is not a crime.", "law": "Criminal Code"},
    {"id": "tax-1", "text": "Income tax is levied on the worldwide income of residents.", "law": "Tax Act"},
    {"id": "tax-2", "text": "A company pays corporate tax on its annual profit.", "law": "Tax Act"},
    {"id": "tax-3", "text": "Value added tax is charged on the supply of goods and services.", "law": "Tax Act"},
]
QUERIES: list[dict[str, Any]] = [
    {"query_id": "q1", "query_text": "When does legal capacity begin?", "positive_passages": ["civil-1"],
     "hard_negatives": ["civil-2"]},
    {"query_id": "q2", "query_text": "Can a minor sign a contract?", "positive_passages": ["civil-2"], "hard_negatives": []},
    {"query_id": "q3", "query_text": "What is theft?", "positive_passages": ["crim-1"], "hard_negatives": ["crim-2", 7]},
    {"query_id": "q4", "query_text": "Is self-defence a crime?", "positive_passages": [7]},
    {"query_id": "q5", "query_text": "What is fraud?", "positive_passages": ["crim-2", "crim-3"]},
    {"query_id": "q6", "query_text": "How is income taxed?", "positive_passages": ["tax-1"]},
    {"query_id": "q7", "query_text": "When does ownership pass?", "positive_passages": ["civil-4"]},
    {"query_id": "q8", "query_text": "How are companies taxed?", "positive_passages": ["tax-2"]},
]
# civil-3 and tax-3 are no query's positive: they join the corpus as candidates all the same.


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_lexdpr(directory: Path, queries: list[dict[str, Any]] | None = None,
                 corpus: list[dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """queries.jsonl and corpus.jsonl in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    return (write_jsonl(directory / "queries.jsonl", QUERIES if queries is None else queries),
            write_jsonl(directory / "corpus.jsonl", CORPUS if corpus is None else corpus))
