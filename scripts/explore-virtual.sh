#!/bin/sh
# Regenerates the app memories shipped for the virtual phone (src/edgepilot/memory/bundled) with
# `edgepilot explore` itself: nothing in them is written by hand. Run it after changing a virtual app;
# tests/test_memory.py fails while the shipped files differ from what exploring produces.
# --fill PIN=2468 types the virtual bank's factory PIN (sim/apps/bank.py) to get past its login.
set -eu
cd "$(dirname "$0")/.."
out=src/edgepilot/memory/bundled
mkdir -p "$out"
rm -f "$out"/*.json
EDGEPILOT_HOME="$(mktemp -d)" .venv/bin/edgepilot explore --device virtual --fresh --fill PIN=2468 --out "$out"
chmod 644 "$out"/*.json
