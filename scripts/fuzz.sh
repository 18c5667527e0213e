#!/usr/bin/env bash
# Fuzz a live `butler demo` with schemathesis from its own OpenAPI document.
# Fails (non-zero) on any 500 answer, and on any answer the document does not declare: an
# undocumented status or content type, or a body that does not match the declared schema.
# Usage: bash scripts/fuzz.sh [max examples per operation]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${BUTLER_VENV:-.venv}"
EXAMPLES="${1:-200}"
PORT="$("$VENV/bin/python" -c 'from butler.testing.processes import free_port; print(free_port())')"
WORKDIR="$(mktemp -d)"
"$VENV/bin/butler" demo --port "$PORT" --workdir "$WORKDIR" > "$WORKDIR/demo.log" 2>&1 &
DEMO=$!
trap 'kill "$DEMO" 2>/dev/null; wait "$DEMO" 2>/dev/null; rm -rf "$WORKDIR"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/v4/butlerping" >/dev/null && break
  sleep 0.2
done

# Schemathesis counts test cases; Butler's access log counts the requests they made.
answered() { grep -c ' -> [0-9][0-9][0-9] in ' "$WORKDIR/demo.log" || true; }
BEFORE="$(answered)"
STATUS=0
PYTHONPATH="scripts${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=fuzz_checks \
  "$VENV/bin/st" run "http://127.0.0.1:$PORT/documentation/json" \
  --checks no_internal_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$EXAMPLES" --workers 2 --no-color || STATUS=$?
echo "Requests answered by Butler during the run: $(( $(answered) - BEFORE ))"
exit "$STATUS"
