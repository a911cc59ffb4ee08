#!/usr/bin/env bash
# Installs the Debian packages coldchain needs when their binaries are absent:
# mosquitto (the MQTT broker), influxdb (InfluxDB 1.x, for influxd), nodejs (runs the
# LoRaWAN codecs in the firmware tests), chromium (renders the HACCP report headless),
# openssl (test certificates) and postgresql (the shared registry backend in tests).
# Idempotent: does nothing when every binary is found. Never starts system services:
# the tests and the demo start their own instances on free loopback ports.
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v influxd >/dev/null 2>&1 || [ -x /usr/bin/influxd ] || need+=(influxdb)
# Node.js runs the LoRaWAN payload codecs in tests/devices/test_firmware.py.
command -v node >/dev/null 2>&1 || need+=(nodejs)
# Headless Chromium renders the HTML HACCP report to a screenshot (tests/reports).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# openssl makes the private CA and broker certificate of the MQTT-over-TLS tests.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# PostgreSQL 15 (initdb, pg_ctl, postgres): the registry's shared backend in tests.
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql)
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then need+=(python3-venv); fi
[ ${#need[@]} -eq 0 ] && exit 0

echo "coldchain: installing Debian packages: ${need[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "coldchain: need root or sudo to install ${need[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps apt from starting the system mosquitto/influxdb services, which would
# take ports 1883/8086; our own instances run on free ports.
rc_created=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  rc_created=1
fi
trap '[ "$rc_created" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "coldchain: installed ${need[*]}" >&2
