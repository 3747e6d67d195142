"""Glossary sources, one module per source, registered by name (crawlers.registry).

Imports go one way, bottom to top:
- `base`: the shapes every source shares (PageRef, Entry, ParsedPage, Source, SourceOptions);
  `http`: the polite client (robots.txt, rate limit, retries, deadlines, revalidated cache, size limit)
- `mediawiki`: the definition-list glossary parser; `htmltext`: clean text out of HTML
- `wikipedia_glossary`, `url` (+ `html`), `wordnet`, `dictd`: the sources; `registry`: sources by name
- `config`: CrawlConfig; `fetch`: get every page, sum up failures
- `stage`: `pipe crawl` — fetch, fingerprint by content, parse, write the crawl artifact
"""
