#!/usr/bin/env bash
# Static checks, run by scripts/test.sh before pytest: ruff (bugs and import order) over the package,
# tests and benchmarks, and mypy over the package as it is imported (`pipe_embed.*`). The folders are
# mapped under one import name at install time, so mypy reads them through a tree of links that
# mirrors that mapping. Takes the python of the environment to use (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python3}"
ROOT="$(pwd)"
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")";; esac  # mypy runs from another folder
"$PY" -m ruff check pipeline mining training crawlers tests benchmarks
TREE="$(mktemp -d "${TMPDIR:-/tmp}/pipe-typecheck.XXXXXX")"
trap 'rm -rf "$TREE"' EXIT
mkdir -p "$TREE/pipe_embed"
for folder in pipeline mining training crawlers; do ln -s "$ROOT/$folder" "$TREE/pipe_embed/$folder"; done
(cd "$TREE" && "$PY" -m mypy --config-file "$ROOT/pyproject.toml" --cache-dir "$ROOT/.mypy_cache" -p pipe_embed)
