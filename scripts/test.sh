#!/usr/bin/env bash
# Install everything the test suite needs, then run it. This is the README's test command and
# exactly what CI runs (.ci/run). Safe to re-run: installed pieces are skipped quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

# WordNet 3.0 (Debian's wordnet-base) backs the real-scale crawler test; skipped if apt is unavailable.
if [ ! -f /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wordnet-base >/dev/null; } \
    || echo "note: could not install wordnet-base; the real-WordNet test will be skipped"
fi

# torch first, pinned to the CPU build, so that nothing later pulls a multi-GB CUDA build.
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[dev]"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
set +e
python3 -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
