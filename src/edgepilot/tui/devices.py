"""What the device picker offers: a new built-in virtual phone, the devices adb sees, this desktop."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from edgepilot import devices

VIRTUAL = "virtual"
DESKTOP = "desktop"


@dataclass(frozen=True)
class DeviceChoice:
    """One entry of the picker: the spec ``open_device`` takes, a label, and why it cannot be used (if so)."""

    spec: str
    label: str
    reason: str = ""

    @property
    def available(self) -> bool:
        return not self.reason


def desktop_unavailable() -> str:
    """Why this desktop cannot be driven from here ('' when it may be: ``open_device`` has the last word)."""
    try:
        found = importlib.util.find_spec("edgepilot.controllers.desktop") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return "desktop control is not part of this edgepilot"
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display ($DISPLAY is not set)"
    return ""


def _desktop_choice(rows: list[dict[str, Any]]) -> DeviceChoice:
    for row in rows:
        if row.get("kind") == "desktop" and row.get("state") == "device":
            return DeviceChoice(str(row.get("serial") or DESKTOP), f"this desktop ({row.get('address', '')})")
    reason = desktop_unavailable()
    label = "this desktop" + (f" ({os.environ['DISPLAY']})" if os.environ.get("DISPLAY") else "")
    return DeviceChoice(DESKTOP, label, reason)


def device_choices(adb_port: int = 5037) -> list[DeviceChoice]:
    """The picker's entries, the built-in virtual phone first, this desktop last; never raises (adb that
    cannot be asked is an entry with the reason)."""

    choices = [DeviceChoice(VIRTUAL, "virtual phone (new, built in)")]
    try:
        rows = devices.list_devices(adb_port)
    except Exception as exc:  # the picker must open whatever adb does
        choices.append(DeviceChoice("adb", "adb devices", f"cannot list them: {exc}"))
        rows = []
    for row in rows:
        if row.get("kind") == "desktop":
            continue
        serial, state, kind = str(row.get("serial", "")), str(row.get("state", "")), str(row.get("kind", ""))
        reason = "" if state == "device" else {
            "unauthorized": "unauthorized: allow USB debugging on the phone",
            "offline": "offline: reconnect it"}.get(state, state or "unknown state")
        choices.append(DeviceChoice(serial, f"{serial} ({kind})", reason))
    choices.append(_desktop_choice(rows))
    return choices
