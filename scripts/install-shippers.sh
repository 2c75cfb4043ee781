#!/usr/bin/env bash
# Installs the real shippers the protocol tests send with, once, outside the clone: syslog-ng
# with its HTTP module and configuration library (Debian), and
# the OpenTelemetry Python SDK with its OTLP gRPC and HTTP exporters, Elasticsearch's Python
# client and python-logging-loki, from PyPI, into `$STRATA_SHIPPERS_VENV` or
# ~/.cache/strata-shippers; and the OpenTelemetry JS SDK with its OTLP HTTP exporters, from npm,
# into its `node/` directory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deb.sh "syslog-ng-core syslog-ng-mod-http syslog-ng-scl" syslog-ng \
  /usr/share/syslog-ng/include/scl/elasticsearch/elastic-http.conf
source scripts/venv-lib.sh
venv=${STRATA_SHIPPERS_VENV:-$HOME/.cache/strata-shippers}
check='import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, elasticsearch, logging_loki'
if ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; }; then
  make_venv "$venv"
  "$venv/bin/pip" install -q opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-grpc==1.45.2 \
    opentelemetry-exporter-otlp-proto-http==1.45.2 elasticsearch==9.5.1 python-logging-loki==0.3.1
  "$venv/bin/python" -c "$check"
fi
node_packages=(@opentelemetry/api@1.9.1 @opentelemetry/api-logs@0.223.1 @opentelemetry/resources@2.12.1
  @opentelemetry/sdk-logs@0.223.1 @opentelemetry/sdk-metrics@2.12.1
  @opentelemetry/exporter-logs-otlp-http@0.223.1 @opentelemetry/exporter-metrics-otlp-http@0.223.0)
if [ ! -d "$venv/node/node_modules/@opentelemetry/exporter-metrics-otlp-http" ]; then
  if ! command -v npm >/dev/null; then
    scripts/install-deb.sh "nodejs npm" node npm
  fi
  mkdir -p "$venv/node"
  [ -f "$venv/node/package.json" ] || echo '{"private": true}' > "$venv/node/package.json"
  (cd "$venv/node" && npm install --no-audit --no-fund --loglevel=error "${node_packages[@]}")
fi
