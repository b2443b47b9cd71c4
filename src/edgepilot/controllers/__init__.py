"""Devices to observe and act on: the :class:`Device` seam, Android over adb (``android.py``; real phones and the
virtual one alike) and the X11 desktop (``desktop.py``: mss, pyautogui, AT-SPI).

Heavy backends (adbutils, pyautogui, mss, jeepney) are imported only when a device is made.
"""

from edgepilot.controllers.android import AndroidDevice
from edgepilot.controllers.base import ActResult, Device, DeviceInfo

__all__ = ["ActResult", "AndroidDevice", "Device", "DeviceInfo"]
