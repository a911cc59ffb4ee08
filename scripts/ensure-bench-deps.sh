#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make test`: mosquitto_sub (the broker-limit
# reference of `coldchain bench ingest`, Debian mosquitto-clients) and npm (the bench
# installs Node-RED, its peer, with npm into ~/.cache/coldchain). Idempotent; never
# needed by `make test`.
set -euo pipefail

need=()
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ ${#need[@]} -eq 0 ] && exit 0

echo "coldchain bench: installing Debian packages: ${need[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "coldchain bench: need root or sudo to install ${need[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "coldchain bench: installed ${need[*]}" >&2
