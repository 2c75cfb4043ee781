#!/usr/bin/env bash
# Installs a Debian package whose programs the integration tests and benchmarks run as real peers
# (Prometheus, VictoriaMetrics, vmalert), without letting the package start its service: the tests
# run their own instances on free ports. Safe to run again: it does nothing when every named
# program is already on PATH.
#
#   scripts/install-deb.sh <package> <binary>...   (the first binary is the package's service)
#
# <package> may name several packages, separated by spaces; a <binary> that is a path (it has a
# '/') is checked as a file, for packages that install a module rather than a program.
set -euo pipefail

package=${1:?usage: install-deb.sh <package> <binary>...}
shift
binaries=("$@")
[ ${#binaries[@]} -gt 0 ] || { echo "usage: install-deb.sh <package> <binary>..." >&2; exit 2; }
# The package's service runs as its first binary.
service=${binaries[0]}

log() { echo "install-deb ($package): $*" >&2; }

missing=0
for tool in "${binaries[@]}"; do
  case "$tool" in
    */*) [ -e "$tool" ] || missing=1 ;;
    *) command -v "$tool" >/dev/null || missing=1 ;;
  esac
done
if [ "$missing" = 0 ]; then
  log "${binaries[*]} already installed ($(command -v "$service"))"
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
command -v apt-get >/dev/null || { log "error: apt-get not found; install the $package package by hand"; exit 1; }

# env, not export: sudo would drop an exported variable.
apt_get() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" </dev/null; }

# Processes of the service (by its name as the kernel keeps it, 15 bytes) that exist before the install are someone else's and are left alone.
before=$(pgrep -x "${service:0:15}" || true)

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

read -ra packages <<< "$package"
install_pkg() { apt_get install --no-install-recommends "${packages[@]}"; }
if ! apt-cache show "${packages[@]}" >/dev/null 2>&1; then
  log "the package lists do not know $package: running apt-get update"
  apt_get update
  log "installing $package"
  install_pkg
else
  log "installing $package"
  # Package lists can be old enough that the mirror no longer has the version they name.
  if ! install_pkg; then
    log "install failed: running apt-get update and trying once more"
    apt_get update
    install_pkg
  fi
fi

# Stop any service the install started despite the policy (a systemd unit, for instance).
if [ -d /run/systemd/system ] && systemctl is-active --quiet "$service.service" 2>/dev/null; then
  log "stopping $service.service, which the install started"
  "${sudo[@]}" systemctl stop "$service.service" || true
fi
for pid in $(pgrep -x "${service:0:15}" || true); do
  if ! grep -qx "$pid" <<<"$before"; then
    log "stopping the $service service the install started (pid $pid)"
    "${sudo[@]}" kill "$pid" || true
  fi
done

for tool in "${binaries[@]}"; do
  case "$tool" in
    */*) [ -e "$tool" ] || { log "error: $tool is not there after the install"; exit 1; } ;;
    *) command -v "$tool" >/dev/null || { log "error: $tool is not on PATH after the install"; exit 1; } ;;
  esac
done
log "installed: $(dpkg-query -W -f='${Package} ${Version} ' "${packages[@]}" 2>/dev/null || echo "$package")"
