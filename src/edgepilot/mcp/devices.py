"""The devices an MCP server opened: each kept open for the session, used by one call at a time, closed at the end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from edgepilot.devices import OpenDevice, open_device
from edgepilot.errors import DeviceError
from edgepilot.perception.types import Observation

BUSY_WAIT_S = 30.0
"""How long a call waits for a device another call is using (a run_task holds its device until the run ends)."""


@dataclass
class HeldDevice:
    """An open device, the lock a call holds while it uses it, and the last screen the client was shown.

    ``shown`` is what the client's element numbers refer to: an ``act`` on a numbered element is refused when the
    screen changed since (the client decides again on the new one).
    """

    spec: str
    opened: OpenDevice
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    shown: Observation | None = None

    @contextmanager
    def use(self, wait: float = BUSY_WAIT_S) -> Iterator[OpenDevice]:
        """Hold the device for one call, waiting up to ``wait`` seconds for another call to end.

        Raises:
            DeviceError: another call (a run_task, an action waiting for a confirmation) still holds it.
        """
        if not self.lock.acquire(timeout=wait):
            raise DeviceError(f"device {self.spec!r} is busy with another call (a run_task, or an action waiting "
                              f"for a confirmation) after {wait:g} s; try again when it has ended")
        try:
            yield self.opened
        finally:
            self.lock.release()


class DeviceHub:
    """Opens a device the first time a call names it (``virtual`` starts the built-in phone) and keeps it open.

    Args:
        adb_port: the adb server asked for serials.
        screenshot: take a screenshot with every observation (the ``observe`` tool can return it).
    """

    def __init__(self, *, adb_port: int = 5037, screenshot: bool = True) -> None:
        self.adb_port = adb_port
        self.screenshot = screenshot
        self._held: dict[str, HeldDevice] = {}
        self._stack = ExitStack()
        self._lock = threading.Lock()
        self._closed = False

    def get(self, spec: str) -> HeldDevice:
        """The device ``spec`` names (:func:`edgepilot.devices.open_device`), opened now if it is not yet.

        Raises:
            DeviceError: the device cannot be reached, or the server is shutting down.
            ConfigError: the spec is malformed.
        """
        spec = spec.strip() or "virtual"
        with self._lock:
            if self._closed:
                raise DeviceError("the MCP server is shutting down; no device can be opened")
            held = self._held.get(spec)
            if held is None:
                opened = self._stack.enter_context(open_device(spec, screenshot=self.screenshot,
                                                               adb_port=self.adb_port))
                held = self._held[spec] = HeldDevice(spec, opened)
            return held

    def open_specs(self) -> dict[str, str]:
        """The devices open now: spec -> description."""
        with self._lock:
            return {spec: held.opened.description for spec, held in self._held.items()}

    def close(self, wait: float = 5.0) -> None:
        """Close every device (the virtual phones stop), each once the call using it has ended or ``wait``
        seconds have passed; later calls are refused."""
        with self._lock:
            self._closed = True
            held, self._held = list(self._held.values()), {}
            stack, self._stack = self._stack, ExitStack()
        for device in held:
            if device.lock.acquire(timeout=wait):
                device.lock.release()
        stack.close()
