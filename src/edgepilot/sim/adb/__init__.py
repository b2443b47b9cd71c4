"""An adb server for the virtual phone.

:class:`AdbServer` serves the adb *host* protocol (the one ``adb`` clients
speak to ``adb start-server`` on port 5037) on a loopback port, with exactly
one device attached: the in-process virtual phone. Real clients work
unmodified::

    with AdbServer(phone) as server:
        adbutils.AdbClient(port=server.port).device(phone.serial).shell("input tap 10 10")
        # or: ANDROID_ADB_SERVER_PORT=<server.port> adb shell uiautomator dump

See :mod:`edgepilot.sim.adb.protocol` for the framing and references.
"""

from edgepilot.sim.adb.server import ADB_SERVER_VERSION, FEATURES, AdbServer, PhoneBackend
from edgepilot.sim.adb.shell import DeviceShell, ShellResult

__all__ = [
    "ADB_SERVER_VERSION",
    "FEATURES",
    "AdbServer",
    "DeviceShell",
    "PhoneBackend",
    "ShellResult",
]
