#!/usr/bin/env bash
# The side-by-side comparison (BENCHMARKS.md, benches/results.json).
# Installs PostgreSQL from the distribution's packages when it is missing, for
# the server rows; extra arguments go to the harness (--records N, --quick, …).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL (server rows)…" >&2
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq postgresql >/dev/null \
      || echo "PostgreSQL could not be installed; its rows will be skipped" >&2
  fi
fi
exec cargo run --profile bench -p raiz-benches --bin compare -- "$@"
