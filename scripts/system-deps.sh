#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages edgepilot's tests need, if they are missing.
#   adb:             Debian's adb client, which the tests drive against the virtual phone
#   xvfb, xauth:     a real X server for the desktop controller, the hotkeys and the TUI's screenshots
#   xdotool:         key events sent to the X server (the daemon's hotkey tests)
#   dbus-x11, at-spi2-core: a session bus and the accessibility bus (the desktop's accessibility tree)
#   mousepad, galculator, thunar, lxterminal, gnumeric, ristretto: real applications the desktop suite
#                    operates (gnumeric brings ssconvert, which writes and reads the tasks' spreadsheets)
#   xclip:           reads the X clipboard for the desktop tasks' checks
#   libnotify-bin:   notify-send, the daemon's desktop notifications
#   chromium:        a real browser, headless, that opens the HTML reports as a person would (Debian's package;
#                    the tests drive it over its DevTools pipe, nothing downloaded)
set -euo pipefail
need=()
command -v adb >/dev/null 2>&1 || need+=(adb)
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
command -v xauth >/dev/null 2>&1 || need+=(xauth)
command -v xdotool >/dev/null 2>&1 || need+=(xdotool)
command -v dbus-launch >/dev/null 2>&1 || need+=(dbus-x11)
[ -x /usr/libexec/at-spi-bus-launcher ] || need+=(at-spi2-core)
command -v mousepad >/dev/null 2>&1 || need+=(mousepad)
command -v galculator >/dev/null 2>&1 || need+=(galculator)
command -v thunar >/dev/null 2>&1 || need+=(thunar)
command -v lxterminal >/dev/null 2>&1 || need+=(lxterminal)
command -v ssconvert >/dev/null 2>&1 || need+=(gnumeric)
command -v ristretto >/dev/null 2>&1 || need+=(ristretto)
command -v xclip >/dev/null 2>&1 || need+=(xclip)
command -v notify-send >/dev/null 2>&1 || need+=(libnotify-bin)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
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
