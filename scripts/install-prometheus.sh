#!/usr/bin/env bash
# Installs Prometheus (Debian's `prometheus` package, 2.42 on bookworm) for the integration test
# that has a real Prometheus remote-write to Strata. Safe to run again: it does nothing when
# `prometheus` and `promtool` are already on PATH.
#
# The package would start a Prometheus service on :9090; the test runs its own instance on a free
# port, so the install keeps services from starting and stops any Prometheus it started anyway.
set -euo pipefail

log() { echo "install-prometheus: $*" >&2; }

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  log "prometheus and promtool are already installed ($(command -v prometheus))"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    # -n: never wait for a password on a terminal that CI does not have.
    sudo=(sudo -n)
    log "not root: using sudo"
  else
    log "error: installing packages needs root, and sudo is not available; run this script as root"
    exit 1
  fi
fi
command -v apt-get >/dev/null || { log "error: apt-get not found; install Prometheus 2.42 (prometheus and promtool) by hand"; exit 1; }

# env, not export: sudo would drop an exported variable.
apt_get() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" </dev/null; }

# Prometheus processes that exist before the install are someone else's and are left alone.
before=$(pgrep -x prometheus || true)

# policy-rc.d answering 101 tells invoke-rc.d (which the postinst calls) not to start the service.
# An existing one (containers ship one) is the machine's and is kept as it is.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  log "writing a temporary $policy so that the package does not start its service"
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  own_policy=1
fi
cleanup() {
  if [ "$own_policy" = 1 ]; then
    log "removing the temporary $policy"
    "${sudo[@]}" rm -f "$policy"
  fi
}
trap cleanup EXIT

install_pkg() { apt_get install --no-install-recommends prometheus; }
if ! apt-cache show prometheus >/dev/null 2>&1; then
  log "the package lists do not know prometheus: running apt-get update"
  apt_get update
  log "installing prometheus"
  install_pkg
else
  log "installing prometheus"
  # Package lists can be old enough that the mirror no longer has the version they name.
  if ! install_pkg; then
    log "install failed: running apt-get update and trying once more"
    apt_get update
    install_pkg
  fi
fi

# Stop any Prometheus the install started despite the policy (a systemd unit, for instance).
if [ -d /run/systemd/system ] && systemctl is-active --quiet prometheus.service 2>/dev/null; then
  log "stopping prometheus.service, which the install started"
  "${sudo[@]}" systemctl stop prometheus.service || true
fi
for pid in $(pgrep -x prometheus || true); do
  if ! grep -qx "$pid" <<<"$before"; then
    log "stopping the prometheus service the install started (pid $pid)"
    "${sudo[@]}" kill "$pid" || true
  fi
done

for tool in prometheus promtool; do
  command -v "$tool" >/dev/null || { log "error: $tool is not on PATH after the install"; exit 1; }
done
log "installed: $(prometheus --version 2>&1 | head -n 1)"
