"""Screen commands of the device shell: ``uiautomator dump``, ``screencap`` and ``wm``."""

from __future__ import annotations

import io
import struct

from edgepilot.sim.adb.protocol import PhoneBackend
from edgepilot.sim.adb.shell_io import CommandIO
from edgepilot.sim.adb.sync import VirtualFs

DEFAULT_DUMP_PATH = "/sdcard/window_dump.xml"
DEFAULT_DENSITY = 420


def density(phone: PhoneBackend) -> int:
    """The screen density in dpi from ``ro.sf.lcd_density`` (420 when unset)."""
    value = phone.props().get("ro.sf.lcd_density", "")
    return int(value) if value.isdigit() else DEFAULT_DENSITY


def png_to_raw(png: bytes) -> bytes:
    """``screencap`` without ``-p``: 16-byte header (w, h, format, dataspace) + RGBA."""
    from PIL import Image  # Pillow is a core dependency; imported lazily (rarely used)

    image = Image.open(io.BytesIO(png)).convert("RGBA")
    width, height = image.size
    return struct.pack("<IIII", width, height, 1, 0) + image.tobytes()


class ScreenService:
    """What the screen shows and how big it is.

    Args:
        phone: The phone whose screen is read.
        fs: Its file system, where dumps and screenshots are written.
    """

    def __init__(self, phone: PhoneBackend, fs: VirtualFs) -> None:
        self.phone = phone
        self.fs = fs

    def uiautomator(self, args: list[str], cio: CommandIO) -> int:
        """``uiautomator dump [--compressed] [--windows] [FILE|/dev/tty]``."""
        if not args or args[0] != "dump":
            return cio.fail("Usage: uiautomator dump [--compressed] [--windows] [FILE]")
        paths = [a for a in args[1:] if not a.startswith("--")]
        path = paths[0] if paths else DEFAULT_DUMP_PATH
        xml = self.phone.dump_xml()
        if path == "/dev/tty":
            cio.out(xml)
        else:
            try:
                self.fs.write(self.fs.normalize(path, cio.state.cwd), xml.encode("utf-8"))
            except OSError as exc:
                return cio.fail(f"ERROR: could not write to {path}: {exc.strerror}")
        cio.out(f"UI hierchary dumped to: {path}\n")  # sic: Android's own spelling, which clients match on
        return 0

    def screencap(self, args: list[str], cio: CommandIO) -> int:
        """``screencap [-p] [-d DISPLAY] [FILE]``: PNG with ``-p`` or a ``.png`` name, raw RGBA otherwise."""
        png_flag, paths, queue = False, [], list(args)
        while queue:
            arg = queue.pop(0)
            if arg == "-d" and queue:
                queue.pop(0)
            elif arg.startswith("-"):
                png_flag = png_flag or "p" in arg
            else:
                paths.append(arg)
        png = self.phone.screencap_png()
        if not paths:
            cio.out(png if png_flag else png_to_raw(png))
            return 0
        data = png if png_flag or paths[0].endswith(".png") else png_to_raw(png)
        try:
            self.fs.write(self.fs.normalize(paths[0], cio.state.cwd), data)
        except OSError as exc:
            return cio.fail(f"Error opening file: {paths[0]} ({exc.strerror})")
        return 0

    def settings(self, args: list[str], cio: CommandIO) -> int:
        """``settings get|put system user_rotation|accelerometer_rotation``: the rotation the screen is locked in."""
        if args[:3] == ["get", "system", "user_rotation"]:
            cio.out(f"{self.phone.rotation}\n")
        elif args[:3] == ["get", "system", "accelerometer_rotation"]:
            cio.out("0\n")
        elif args[:3] == ["put", "system", "user_rotation"] and len(args) == 4 and args[3] in ("0", "1", "2", "3"):
            self.phone.rotate(int(args[3]))
        elif args[:3] == ["put", "system", "accelerometer_rotation"] and len(args) == 4:
            pass  # the virtual phone never turns by itself
        else:
            return cio.fail(f"settings {' '.join(args)[:60]}: the virtual phone knows only system user_rotation "
                            "and accelerometer_rotation")
        return 0

    def wm(self, args: list[str], cio: CommandIO) -> int:
        """``wm size`` (the natural size, whatever the rotation, as on a real phone) / ``wm density`` /
        ``wm user-rotation [lock N|free]``."""
        if args == ["size"]:
            width, height = self.phone.screen_size
            cio.out(f"Physical size: {width}x{height}\n")
        elif args == ["density"]:
            cio.out(f"Physical density: {density(self.phone)}\n")
        elif args[:1] == ["user-rotation"]:
            rest = args[1:]
            if not rest:
                cio.out(f"lock {self.phone.rotation}\n")
            elif rest == ["free"]:
                self.phone.rotate(0)
            elif len(rest) == 2 and rest[0] == "lock" and rest[1] in ("0", "1", "2", "3"):
                self.phone.rotate(int(rest[1]))
            else:
                return cio.fail("Error: wm user-rotation [free | lock 0|1|2|3]")
        else:
            return cio.fail(f"Error: wm {' '.join(args)} is not supported by the virtual phone")
        return 0
