#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages edgepilot's tests need, if they are missing.
#   adb: Debian's adb client, which the tests drive against the virtual phone.
set -euo pipefail
need=()
command -v adb >/dev/null 2>&1 || need+=(adb)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "edgepilot: please install these packages with your package manager: ${need[*]}" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "edgepilot: installing system packages: ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
