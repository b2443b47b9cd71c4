"""Open a device from a command-line spec: ``virtual``, a serial, ``SERIAL@HOST:PORT``, or ``desktop[:DISPLAY]``."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepilot import paths
from edgepilot.controllers.android import AndroidDevice, Perception, adb_server_listening
from edgepilot.controllers.base import Device
from edgepilot.controllers.desktop import DesktopDevice
from edgepilot.errors import ConfigError


@dataclass
class OpenDevice:
    """A device ready to use, and the virtual phone behind it when there is one (for set-up and checks).

    ``session`` is the private X session (``desktop:xvfb``) a desktop device runs on, when there is one.
    """

    device: Device
    phone: Any | None
    description: str
    session: Any | None = None


@dataclass(frozen=True)
class DesktopSpec:
    """A parsed ``desktop[:DISPLAY][@MONITOR]`` spec; ``display`` None means $DISPLAY, ``xvfb`` a private Xvfb."""

    display: str | None = None
    monitor: int = 1
    xvfb: bool = False


def parse_desktop_spec(spec: str) -> DesktopSpec | None:
    """``desktop``, ``desktop::99`` (or ``desktop:99``), ``desktop:host:0.0``, ``desktop:xvfb``, each with an
    optional ``@MONITOR`` (1 the first monitor, 0 all of them as one screen); None when ``spec`` is no desktop.

    Raises:
        ConfigError: a desktop spec that is malformed.
    """
    if spec != "desktop" and not spec.startswith("desktop:") and not spec.startswith("desktop@"):
        return None
    rest = spec[len("desktop"):]
    monitor = 1
    if "@" in rest:
        rest, _, number = rest.rpartition("@")
        if not number.isdigit():
            raise ConfigError(f"bad device {spec!r}: the monitor after @ is a number (1 the first, 0 all of them)")
        monitor = int(number)
    display = rest[1:] if rest.startswith(":") else rest
    if display == "xvfb":
        return DesktopSpec(None, monitor, xvfb=True)
    if display.isdigit():
        display = ":" + display
    if display and not re.fullmatch(r"[\w.\-]*:\d+(\.\d+)?", display):
        raise ConfigError(f"bad device {spec!r}: expected desktop, desktop:DISPLAY (desktop::99, desktop:host:0.0) "
                          "or desktop:xvfb, with an optional @MONITOR")
    return DesktopSpec(display or None, monitor)


@contextmanager
def open_desktop(spec: DesktopSpec, *, screenshot: bool = True) -> Iterator[OpenDevice]:
    """Open a desktop: an X display (default $DISPLAY), or a private Xvfb session with its buses.

    Raises:
        DeviceError: no display can be reached.
        SimError: the private session cannot start (Xvfb or at-spi2-core missing).
    """

    if spec.xvfb:
        from edgepilot.sim.desktop.session import DesktopSession

        with DesktopSession() as session:
            device = session.device(monitor=spec.monitor, screenshot=screenshot)
            try:
                yield OpenDevice(device, None, f"desktop {session.display} (private Xvfb, "
                                              f"{session.size[0]}x{session.size[1]})", session)
            finally:
                device.close()
        return
    device = DesktopDevice(spec.display, monitor=spec.monitor, screenshot=screenshot)
    try:
        info = device.info
        yield OpenDevice(device, None, f"desktop {device.display or ''} monitor {spec.monitor} "
                                       f"({info.screen_width}x{info.screen_height})".replace("  ", " "))
    finally:
        device.close()


@contextmanager
def announce_sim(serial: str, port: int) -> Iterator[Path]:
    """While the block runs, ``edgepilot devices`` (and ``--device SERIAL``) find a served virtual phone."""
    entry = paths.sims_dir() / f"{serial}.json"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(json.dumps({"serial": serial, "port": port, "pid": os.getpid()}))
    try:
        yield entry
    finally:
        entry.unlink(missing_ok=True)


def running_sims() -> list[dict[str, Any]]:
    """Virtual phones served by live ``edgepilot sim serve`` processes on this machine."""
    out = []
    folder = paths.sims_dir()
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
def open_device(spec: str = "virtual", *, screenshot: bool = True, adb_port: int = 5037,
                perception: Perception = "tree") -> Iterator[OpenDevice]:
    """Open a device for the duration of a ``with`` block.

    Args:
        spec: ``virtual`` (a fresh in-process virtual phone behind its own adb endpoint), ``virtual-local``
            (the same phone without adb, for speed), a serial at the adb server on ``adb_port``, the serial of a
            running ``edgepilot sim serve`` phone, ``SERIAL@HOST:PORT``, or a desktop: ``desktop`` ($DISPLAY),
            ``desktop:DISPLAY`` (``desktop::99``), ``desktop:xvfb`` (a private Xvfb with its session and
            accessibility buses), each with an optional ``@MONITOR``.
        screenshot: take a screenshot with every observation (a phone read from pixels takes them anyway).
        adb_port: the adb server asked for serials.
        perception: where a phone's element list comes from: ``tree`` (uiautomator), ``pixels`` (OCR and a
            widget detector on the screenshot) or ``fused`` (:class:`~edgepilot.controllers.android.AndroidDevice`).

    Raises:
        DeviceError: the device cannot be reached.
        ConfigError: the spec is malformed.
        SimError: ``desktop:xvfb`` cannot start its session.
    """
    desktop = parse_desktop_spec(spec)
    if desktop is not None:
        if perception != "tree":
            raise ConfigError(f"the desktop has no choice of perception (asked for {perception!r}): it reads "
                              "the accessibility tree")
        with open_desktop(desktop, screenshot=screenshot) as opened:
            yield opened
        return
    if spec == "virtual-local":
        from edgepilot.sim.local import LocalTransport
        from edgepilot.sim.phone import VirtualPhone

        phone = VirtualPhone(serial="virtual-1")
        yield OpenDevice(AndroidDevice(LocalTransport(phone), screenshot=screenshot, perception=perception), phone,
                         f"virtual phone {phone.serial} (in-process, no adb)")
        return
    if spec == "virtual":
        from edgepilot.sim.adb.server import AdbServer
        from edgepilot.sim.phone import VirtualPhone

        phone = VirtualPhone(serial="virtual-1")
        server = AdbServer(phone, port=0).start()
        try:
            device = AndroidDevice.connect(phone.serial, port=server.port, screenshot=screenshot,
                                           perception=perception)
            yield OpenDevice(device, phone, f"virtual phone {phone.serial} (adb on 127.0.0.1:{server.port})")
        finally:
            server.stop()
        return
    serial, host, port = _parse(spec, adb_port)
    device = AndroidDevice.connect(serial or None, host=host, port=port, screenshot=screenshot,
                                   perception=perception)
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


def _x_socket(display: str) -> Path | None:
    """The socket a local X display ``:N`` listens on (None for a remote ``host:N`` or no display)."""
    number = re.fullmatch(r":(\d+)(\.\d+)?", display)
    return Path(f"/tmp/.X11-unix/X{number.group(1)}") if number else None


def local_display() -> str | None:
    """Why there is no X display to work on here (None: ``$DISPLAY`` names one that answers or may answer: a
    local display whose socket exists, or a remote ``host:N``)."""
    display = os.environ.get("DISPLAY", "")
    if not display:
        return "no display ($DISPLAY is not set)"
    socket = _x_socket(display)
    if socket is not None and not socket.exists():
        return f"no X server listens on $DISPLAY={display}"
    return None


def default_device() -> tuple[str, str]:
    """The device a task without one goes to, and why: this desktop where there is a display, else the
    virtual phone (a phone over adb is named with ``--device SERIAL`` or ``[daemon] device``)."""
    missing = local_display()
    if missing is None:
        return "desktop", f"this desktop ($DISPLAY={os.environ['DISPLAY']})"
    return "virtual", f"the virtual phone: {missing}; set [daemon] device = \"SERIAL\" for a phone over adb"


def list_devices(adb_port: int = 5037) -> list[dict[str, str]]:
    """Devices this machine can reach: running virtual phones and the adb server's devices."""
    rows = [{"serial": s["serial"], "state": "device", "kind": "virtual phone",
             "address": f"127.0.0.1:{s['port']}"} for s in running_sims()]
    display = os.environ.get("DISPLAY", "")
    socket = _x_socket(display)
    if socket is not None and socket.exists():  # a local X server is listening
        rows.append({"serial": f"desktop:{display}", "state": "device", "kind": "desktop", "address": display})
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
