"""Glossary sources, one module per source, registered by name (crawlers.registry).

- `http`: the polite client (robots.txt, rate limit, retries, revalidated cache, size limit)
- `mediawiki`: the definition-list glossary parser; `htmltext`: clean text out of HTML
- `wikipedia_glossary`, `url` (+ `html`), `wordnet`: the sources
- `stage`: `pipe crawl` — fetch, fingerprint by content, parse, write the crawl artifact
"""
