#!/usr/bin/env bash
# Installs what Brabant's local stack and tests need on a fresh Debian machine, and nothing that
# is already there: PostgreSQL 15 (Debian), the npm packages (npm ci), the Apache
# Kafka broker jars and the schema registry (Maven Central), and for the dashboard's browser test
# Debian's chromium (BRABANT_SKIP_CHROMIUM=1 leaves it out). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
need_root() {
  if [ "$(id -u)" != 0 ]; then
    say "installing $* needs root: run 'sudo bash infra/setup.sh'"; exit 1
  fi
}

missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
# the dashboard's test drives a real headless Chromium (playwright-core pointed at Debian's)
if [ "${BRABANT_SKIP_CHROMIUM:-}" != 1 ]; then
  command -v chromium >/dev/null || missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
  need_root "${missing[*]}"
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts a default cluster on install; Brabant runs its own.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now postgresql >/dev/null 2>&1 || true
  fi
  pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund
fi

say "fetching Kafka and schema registry jars (first time only)"
node --import tsx infra/fetch.ts
say "Confluent's Python client for the wire-contract tests (first time only)"
bash infra/python-client.sh >/dev/null
say "ready"
