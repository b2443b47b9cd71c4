"""Open a device from a command-line spec: ``virtual``, a serial, or ``SERIAL@HOST:PORT``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepilot.controllers.android import AndroidDevice, adb_server_listening
from edgepilot.errors import ConfigError


@dataclass
class OpenDevice:
    """A device ready to use, and the virtual phone behind it when there is one (for set-up and checks)."""

    device: AndroidDevice
    phone: Any | None
    description: str


def sims_dir() -> Path:
    """Where running ``edgepilot sim serve`` phones announce themselves."""
    from platformdirs import user_runtime_dir

    return Path(os.environ.get("EDGEPILOT_RUNTIME_DIR") or user_runtime_dir("edgepilot")) / "sims"


def running_sims() -> list[dict[str, Any]]:
    """Virtual phones served by live ``edgepilot sim serve`` processes on this machine."""
    out = []
    folder = sims_dir()
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            os.kill(int(entry["pid"]), 0)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            path.unlink(missing_ok=True)  # a stale entry of a phone that is gone
            continue
        out.append(entry)
    return out


@contextmanager
def open_device(spec: str = "virtual", *, screenshot: bool = True, adb_port: int = 5037) -> Iterator[OpenDevice]:
    """Open a device for the duration of a ``with`` block.

    Args:
        spec: ``virtual`` (a fresh in-process virtual phone behind its own adb
            endpoint), ``virtual-local`` (the same phone without adb, for speed), a serial at the adb server on ``adb_port``, the serial of
            a running ``edgepilot sim serve`` phone, or ``SERIAL@HOST:PORT``.

    Raises:
        DeviceError: the device cannot be reached.
        ConfigError: the spec is malformed.
    """
    if spec == "virtual-local":
        from edgepilot.sim.local import LocalTransport
        from edgepilot.sim.phone import VirtualPhone

        phone = VirtualPhone(serial="virtual-1")
        yield OpenDevice(AndroidDevice(LocalTransport(phone), screenshot=screenshot), phone,
                         f"virtual phone {phone.serial} (in-process, no adb)")
        return
    if spec == "virtual":
        from edgepilot.sim.adb.server import AdbServer
        from edgepilot.sim.phone import VirtualPhone

        phone = VirtualPhone(serial="virtual-1")
        server = AdbServer(phone, port=0).start()
        try:
            device = AndroidDevice.connect(phone.serial, port=server.port, screenshot=screenshot)
            yield OpenDevice(device, phone, f"virtual phone {phone.serial} (adb on 127.0.0.1:{server.port})")
        finally:
            server.stop()
        return
    serial, host, port = _parse(spec, adb_port)
    device = AndroidDevice.connect(serial or None, host=host, port=port, screenshot=screenshot)
    try:
        yield OpenDevice(device, None, f"{device.transport.serial} (adb at {host}:{port})")
    finally:
        device.close()


def _parse(spec: str, adb_port: int) -> tuple[str, str, int]:
    if "@" in spec:
        serial, _, address = spec.partition("@")
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"bad device {spec!r}: expected SERIAL@HOST:PORT")
        return serial, host or "127.0.0.1", int(port)
    for sim in running_sims():
        if sim.get("serial") == spec:
            return spec, "127.0.0.1", int(sim["port"])
    if spec in ("", "auto"):
        return "", "127.0.0.1", adb_port
    return spec, "127.0.0.1", adb_port


def list_devices(adb_port: int = 5037) -> list[dict[str, str]]:
    """Devices this machine can reach: running virtual phones and the adb server's devices."""
    rows = [{"serial": s["serial"], "state": "device", "kind": "virtual phone",
             "address": f"127.0.0.1:{s['port']}"} for s in running_sims()]
    try:
        import adbutils
    except ImportError:
        return rows
    if not adb_server_listening("127.0.0.1", adb_port):
        return rows  # no adb server; do not start one as a side effect
    try:
        client = adbutils.AdbClient(host="127.0.0.1", port=adb_port, socket_timeout=3)
        for info in client.list():
            rows.append({"serial": info.serial, "state": info.state, "kind": "adb",
                         "address": f"127.0.0.1:{adb_port}"})
    except (adbutils.AdbError, OSError):
        pass  # no adb server: only the virtual phones
    return rows
