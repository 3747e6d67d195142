#!/usr/bin/env bash
# The main job: install, then run the whole pipeline end to end, offline, on the bundled sample
# (a saved Wikipedia "Glossary of chess") with the bundled all-MiniLM-L6-v2. Re-running it is
# all cache hits. Set PIPE_DATA_DIR to keep the artifacts elsewhere than ./data.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q torch==2.13.0   # the CPU build first, so nothing pulls a CUDA build
python3 -m pip install -q -e .

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
CONFIG=data/sample/pipe.toml
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
echo "Best model (loads with SentenceTransformer(path)): $(pipe show iterate@latest | python3 -c 'import json,sys; print(json.load(sys.stdin)["best_model"])')"
echo "Report: $(pipe show --path report@latest)/index.html"
