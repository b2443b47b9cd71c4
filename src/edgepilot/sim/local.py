"""An in-process shell transport to the virtual phone.

The same command lines that adb would carry run on the phone's shell
directly, with no socket in between. The model-free loops that need speed
(oracle self-checks, data collection) use it; everything that claims to test
the adb path uses the real :class:`edgepilot.sim.adb.server.AdbServer`.
"""

from __future__ import annotations

from edgepilot.sim.adb.shell import DeviceShell
from edgepilot.sim.phone import VirtualPhone


class LocalTransport:
    """A :class:`edgepilot.controllers.android.ShellTransport` that calls the phone in-process."""

    def __init__(self, phone: VirtualPhone) -> None:
        self.phone = phone
        self.serial = phone.serial
        self._shell = DeviceShell(phone)

    def shell(self, command: str, timeout: float = 20.0) -> str:
        return self._shell.run(command).output.decode("utf-8", errors="replace")

    def exec_out(self, command: str, timeout: float = 20.0) -> bytes:
        return self._shell.run(command).stdout
