#!/usr/bin/env bash
# The README's test command, and exactly what CI runs (.ci/run): build a brand-new virtual
# environment in a temporary directory, install the CPU build of torch first, then the project with
# its test extras, and run the whole suite there. Nothing installed by hand on a machine can make
# it pass. Static checks (scripts/lint.sh: ruff, mypy) run first. Extra arguments go to pytest
# (e.g. `bash scripts/test.sh -m "not slow"`, the fast inner loop).
set -euo pipefail
cd "$(dirname "$0")/.."

# WordNet 3.0 (Debian's wordnet-base) and FOLDOC (dict-foldoc) back the real-scale crawler tests;
# they are skipped if apt is unavailable.
if { [ ! -f /usr/share/wordnet/data.noun ] || [ ! -f /usr/share/dictd/foldoc.index ]; } \
    && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wordnet-base dict-foldoc >/dev/null; } \
    || echo "note: could not install wordnet-base and dict-foldoc; the real-WordNet and FOLDOC tests will be skipped"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pipe-test.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
VENV="$WORK/venv"
echo "== new virtual environment: $VENV"
python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
# torch first, pinned to the CPU build, so that nothing later pulls a multi-GB CUDA build.
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q -e ".[dev]"
"$PY" -m pip check || echo "note: pip check reports a conflict above"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PATH="$VENV/bin:$PATH" PIPE_LOG_DIR="$WORK/logs"
echo "== static checks: ruff, mypy"
bash scripts/lint.sh "$PY"
echo "== tests"
set +e
"$PY" -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
