#!/usr/bin/env bash
# schemathesis against a real `auditstore serve`: builds the binary, makes a
# data directory with an operator token, organizations on each plan and some
# events, starts `serve` on a free port, runs schemathesis against
# /api/openapi.json with the operator's bearer token, and stops the server.
#
# The tool comes from requirements-ci.txt (exact versions, --require-hashes)
# in a venv under target/. One worker: CPython 3.11 can fail parsing in
# parallel threads ("AST constructor recursion depth mismatch"). Environment:
#   SCHEMATHESIS_EXAMPLES  examples per operation and phase (default 150)
#   SCHEMATHESIS_VENV      the venv (default target/schemathesis-venv)
#   AUDITSTORE_BIN         a binary to use instead of building one
#   SCHEMATHESIS_SEED      a seed to replay a run (its summary prints the seed)
#   SCHEMATHESIS_CHECKS    the checks (default: not_a_server_error,
#                          status_code_conformance, response_schema_conformance,
#                          content_type_conformance; `all` adds the strict
#                          positive/negative data checks)
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
want=$(sed -n 's/^schemathesis==\([^ ]*\).*/\1/p' requirements-ci.txt)
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $want\$"; then
    echo "== installing schemathesis $want into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --require-hashes -r requirements-ci.txt
fi

if [ -z "${AUDITSTORE_BIN:-}" ]; then
    echo "== cargo build --bin auditstore"
    cargo build --quiet --bin auditstore
    AUDITSTORE_BIN=target/debug/auditstore
fi
bin=$AUDITSTORE_BIN

work=$(mktemp -d)
data=$work/data
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        wait "$pid" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The data: one organization per plan, events in each, an export request.
as_of=2026-08-01T12:00:00Z
token=$("$bin" --data-dir "$data" --json token create --operator --name schemathesis |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
for org_plan in org-00:server org-01:performance org-02:free org-03:scale; do
    "$bin" --data-dir "$data" --json org set "${org_plan%%:*}" --plan "${org_plan##*:}" >/dev/null
done
python3 - "$work/events.jsonl" <<'EOF'
import json, sys, uuid
with open(sys.argv[1], "w") as out:
    for i in range(400):
        org = f"org-0{i % 4}"
        out.write(json.dumps({
            "id": str(uuid.UUID(int=i + 1)),
            "action": ["user.logged_in", "workflow.job.start", "context.create"][i % 3],
            "actor": {"id": f"user-{i % 7}", "type": "user"},
            "target": {"id": f"project-{i % 5}", "type": "project"},
            "occurred_at": f"2026-07-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
            "scope": {"id": org, "type": "organization"},
            "success": i % 9 != 0,
        }) + "\n")
EOF
"$bin" --data-dir "$data" --json ingest "$work/events.jsonl" >/dev/null

"$bin" --data-dir "$data" --as-of "$as_of" serve --listen 127.0.0.1:0 >"$work/serve.out" &
pid=$!
for _ in $(seq 1 100); do
    grep -q '^listening on ' "$work/serve.out" 2>/dev/null && break
    sleep 0.1
done
base=$(sed -n 's/^listening on //p' "$work/serve.out")
[ -n "$base" ] || { echo "serve did not start"; exit 1; }
echo "== serve at $base"
curl_json() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()' "$1"; }
curl_json "$base/healthz"

echo "== schemathesis $want"
status=0
"$venv/bin/schemathesis" run "$base/api/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --checks "${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance}" \
    --phases examples,coverage,fuzzing \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-150}" \
    ${SCHEMATHESIS_SEED:+--seed "$SCHEMATHESIS_SEED"} \
    --generation-database none \
    --workers 1 \
    --request-timeout 30 \
    --no-color || status=$?

kill -TERM "$pid"
wait "$pid" || { echo "serve exited non-zero after SIGTERM"; status=1; }
pid=
exit "$status"
