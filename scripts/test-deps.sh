#!/usr/bin/env bash
# Installs the servers the test suite starts for itself (on free ports), when missing:
# redis-server, PostgreSQL's initdb/pg_ctl, iproute2 for the network-namespace test, and
# Debian's chromium, which Playwright drives for the dashboard's tests (no browser download),
# and kubectl, whose built-in kustomize renders the Kubernetes manifests.
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v ip >/dev/null || missing+=(iproute2)
command -v chromium >/dev/null || missing+=(chromium)
command -v kubectl >/dev/null || missing+=(kubectl)  # renders deploy/kubernetes (kustomize)
command -v nats-server >/dev/null || missing+=(nats-server)  # JetStream, for tests/streams
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing test servers: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
