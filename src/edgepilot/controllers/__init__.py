"""Devices to observe and act on: Android over adb, the desktop (later).

Heavy backends (adbutils, pyautogui) are imported only when a device is made.
"""

from edgepilot.controllers.android import AndroidDevice
from edgepilot.controllers.base import ActResult, Device, DeviceInfo

__all__ = ["ActResult", "Device", "DeviceInfo", "AndroidDevice"]


def __getattr__(name: str):
    if name == "AndroidDevice":
        return AndroidDevice
    raise AttributeError(name)
