#!/bin/sh
# Regenerates the app memories shipped for the desktop suite's applications (src/edgepilot/memory/bundled,
# the *-desktop files) with `edgepilot explore --device desktop:xvfb` itself: nothing in them is written by hand.
# Each application is walked on a private Xvfb from a sandbox folder (sim/desktop/sandbox.py), within a press
# and time budget; nothing the policy would ask about is pressed. Needs scripts/system-deps.sh's applications.
# Takes about 10 to 15 minutes on 2 cores.
set -eu
cd "$(dirname "$0")/.."
out=src/edgepilot/memory/bundled
mkdir -p "$out"
home="$(mktemp -d)"
for app in mousepad galculator thunar lxterminal gnumeric ristretto; do
  EDGEPILOT_HOME="$home" .venv/bin/edgepilot explore --device desktop:xvfb --app "$app" --fresh --out "$out" \
    --max-presses "${MAX_PRESSES:-300}" --max-seconds "${MAX_SECONDS:-150}"
done
chmod 644 "$out"/*.json
rm -rf "$home"
