#!/usr/bin/env bash
# The main job: install into a virtual environment (./.venv, made if missing), then run the whole
# pipeline end to end, offline, on the bundled sample (a saved Wikipedia "Glossary of chess") with
# the bundled all-MiniLM-L6-v2. Re-running it is all cache hits.
#   PIPE_DATA_DIR     where the artifacts go (default ./data)
#   PIPE_VENV         the virtual environment to use or make (default ./.venv)
#   PIPE_MAIN_CONFIG  the settings (default data/sample/pipe.toml)
#   PIPE_NO_INSTALL=1 use the `pipe` already on PATH (the smoke test does this)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PIPE_NO_INSTALL:-}" ]; then
  VENV="${PIPE_VENV:-.venv}"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  VENV="$(cd "$VENV" && pwd)"
  # Installed once per pyproject.toml: a rerun with the same dependencies skips pip altogether.
  STAMP="$VENV/.pipe-installed"
  WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] || [ ! -x "$VENV/bin/pipe" ]; then
    "$VENV/bin/python" -m pip install -q torch==2.13.0   # the CPU build first, so nothing pulls a CUDA build
    # the openvino extra: mine and eval encode faster on CPU (--backend auto checks its vectors against torch);
    # it brings only openvino, openvino-telemetry and numpy (no torchvision; torch and sentence-transformers unchanged)
    "$VENV/bin/python" -m pip install -q -e ".[openvino]"
    echo "$WANT" > "$STAMP"
  fi
  export PATH="$VENV/bin:$PATH"
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
CONFIG="${PIPE_MAIN_CONFIG:-data/sample/pipe.toml}"
SECONDS=0
set -x
pipe crawl --sources wikipedia_glossary --dry-run
pipe compose --from crawl@latest --config "$CONFIG"
pipe mine --method bm25 --config "$CONFIG"
pipe mine --method faiss --config "$CONFIG"
pipe train --from mine@latest --config "$CONFIG"
pipe iterate --rounds 3 --config "$CONFIG"
pipe report
set +x
echo
echo "Done in ${SECONDS} s."
echo "Best model (loads with SentenceTransformer(path)): $(pipe show iterate@latest | python3 -c 'import json,sys; print(json.load(sys.stdin)["best_model"])')"
echo "Report: $(pipe show --path report@latest)/index.html"
