"""Android over adb: any serial, a real phone or the virtual phone alike.

Observation is ``uiautomator dump`` plus ``screencap -p``; actions are ``input``
commands. Text: printable ASCII goes through ``input text``; anything else
needs the ADB Keyboard IME (package ``com.android.adbkeyboard``, set as the
active keyboard with ``adb shell ime set com.android.adbkeyboard/.AdbIME``),
which receives the text base64-encoded through ``am broadcast -a ADB_INPUT_B64``.

A command's output is capped while it streams (16 MiB of text, 64 MiB for a
screenshot): past the cap the connection is closed and :class:`OutputTooLarge`
raised, so a hostile app's endless dump costs a fraction of a second.
"""

from __future__ import annotations

import base64
import functools
import re
import shlex
import socket
import time
from typing import Literal, Protocol

from edgepilot.actions import Action, Finish, Key, LongPress, OpenApp, Point, Swipe, Tap, Target, Type, Wait
from edgepilot.controllers.base import ActResult, DeviceInfo
from edgepilot.controllers.gestures import swipe_points
from edgepilot.errors import ActionError, ConfigError, DeviceError, OutputTooLarge, PerceptionError
from edgepilot.perception.android_tree import MAX_DUMP_BYTES, parse_uiautomator_xml
from edgepilot.perception.fusion import add_ocr, observe_pixels
from edgepilot.perception.types import Bounds, Observation

DUMP_PATH = "/sdcard/window_dump.xml"
ADB_KEYBOARD = "com.android.adbkeyboard"

MAX_TEXT_BYTES = MAX_DUMP_BYTES  # one shell command's output (16 MiB): a UI dump is the largest, and no more parses
MAX_IMAGE_BYTES = 64 << 20  # one exec-out's output: a PNG of a 1440x3200 screen is a few MB
READ_CHUNK = 64 << 10  # reading stops at most this far past a cap

KEYCODES = {
    "home": 3, "back": 4, "volume_up": 24, "volume_down": 25, "power": 26, "tab": 61, "space": 62,
    "enter": 66, "delete": 67, "menu": 82, "search": 84, "escape": 111, "app_switch": 187,
}
KEYCODE_MOVE_END = 123

# Launcher labels of common apps, mapped to the packages that provide them on
# stock Android, Pixel phones and the virtual phone (first installed one wins).
APP_PACKAGES: dict[str, tuple[str, ...]] = {
    "settings": ("com.android.settings",),
    "contacts": ("com.google.android.contacts", "com.android.contacts"),
    "messages": ("com.google.android.apps.messaging", "com.android.messaging", "com.android.mms"),
    "phone": ("com.google.android.dialer", "com.android.dialer"),
    "clock": ("com.google.android.deskclock", "com.android.deskclock"),
    "notes": ("com.google.android.keep",),
    "keep": ("com.google.android.keep",),
    "browser": ("com.android.chrome", "com.android.browser"),
    "chrome": ("com.android.chrome",),
    "bank": ("com.example.bank",),
    "camera": ("com.google.android.GoogleCamera", "com.android.camera2", "com.android.camera"),
    "calendar": ("com.google.android.calendar", "com.android.calendar"),
    "gmail": ("com.google.android.gm",),
    "maps": ("com.google.android.apps.maps",),
    "photos": ("com.google.android.apps.photos",),
    "files": ("com.google.android.apps.nbu.files", "com.android.documentsui"),
    "play store": ("com.android.vending",),
}


class ShellTransport(Protocol):
    """How commands reach a device's shell (adbutils over a socket, or in-process)."""

    serial: str

    def shell(self, command: str, timeout: float = 20.0) -> str: ...

    def exec_out(self, command: str, timeout: float = 20.0) -> bytes: ...


class AdbutilsTransport:
    """A device behind an adb server, through the adbutils client.

    Raises:
        DeviceError: (from every call) the server or the device cannot be reached.
    """

    text_limit = MAX_TEXT_BYTES
    """Bytes read from one :meth:`shell` command before it is refused."""
    image_limit = MAX_IMAGE_BYTES
    """Bytes read from one :meth:`exec_out` command (a screenshot) before it is refused."""

    def __init__(self, serial: str | None = None, host: str = "127.0.0.1", port: int = 5037) -> None:
        import adbutils

        self._adbutils = adbutils
        self.address = f"{host}:{port}"
        self._host, self._port = host, port
        if not adb_server_listening(host, port):
            raise DeviceError(
                f"no adb server at {self.address}; start one with `adb start-server`, "
                "or run a virtual phone with `edgepilot sim serve`"
            )
        try:
            client = adbutils.AdbClient(host=host, port=port, socket_timeout=20)
            devices = [d.serial for d in client.device_list()]
        except (adbutils.AdbError, OSError) as exc:
            raise DeviceError(
                f"no adb server at {self.address} ({exc}); start one with `adb start-server`, "
                "or run a virtual phone with `edgepilot sim serve`"
            ) from exc
        if serial is None:
            if len(devices) != 1:
                raise DeviceError(
                    f"{len(devices)} devices at {self.address} ({', '.join(devices) or 'none'}); "
                    "name one with --device SERIAL"
                )
            serial = devices[0]
        elif serial not in devices:
            raise DeviceError(f"device {serial!r} not found at {self.address}; `edgepilot devices` lists what is there")
        self.serial = serial
        self._client = client

    def _call(self, fn, command: str):
        try:
            return fn()
        except (self._adbutils.AdbError, OSError, EOFError) as exc:
            raise DeviceError(
                f"device {self.serial} at {self.address} stopped answering during `{command[:60]}` ({exc}); "
                "check the cable or the emulator and run again"
            ) from exc

    def _run(self, service: str, timeout: float, limit: int) -> bytes:
        # One connection per command, straight to the device: adbutils' own
        # shell() first asks the server's version on a second connection.
        conn = _connection(self._adbutils, self._host, self._port)
        conn.conn.settimeout(timeout)
        try:
            conn.send_command(f"host:transport:{self.serial}")
            conn.check_okay()
            conn.send_command(service)
            conn.check_okay()
            return _read_capped(conn.conn, limit, service, self.serial)
        finally:
            # The device has closed its end (or is cut off mid-stream); adbutils' close() would sleep 10 ms.
            conn.conn.close()

    def shell(self, command: str, timeout: float = 20.0) -> str:
        """The output of ``command`` as text.

        Raises:
            OutputTooLarge: it passed :attr:`text_limit` bytes (reading stopped there).
            DeviceError: the device stopped answering.
        """
        out = self._call(lambda: self._run("shell:" + command, timeout, self.text_limit), command)
        return out.decode("utf-8", errors="replace")

    def exec_out(self, command: str, timeout: float = 20.0) -> bytes:
        """The raw output of ``command`` (a screenshot).

        Raises:
            OutputTooLarge: it passed :attr:`image_limit` bytes (reading stopped there).
            DeviceError: the device stopped answering.
        """
        return self._call(lambda: self._run("exec:" + command, timeout, self.image_limit), command)


def _read_capped(sock: socket.socket, limit: int, service: str, serial: str) -> bytes:
    """Everything ``sock`` sends until it closes, refused as soon as it passes ``limit`` bytes.

    Raises:
        OutputTooLarge: more than ``limit`` bytes came (at most :data:`READ_CHUNK` more were read).
    """
    data = bytearray()
    while chunk := sock.recv(READ_CHUNK):
        data += chunk
        if len(data) > limit:
            kind, command = service.split(":", 1)
            todo = ("a UI dump this large comes from a broken or hostile app: leave that screen, or run with "
                    "--perception pixels (screenshots only)" if kind == "shell" else
                    "no phone screen makes a screenshot this large: check what `adb exec-out screencap -p` sends")
            raise OutputTooLarge(f"`{command[:60]}` on {serial} sent more than {_size(limit)}; edgepilot stopped "
                                 f"reading at {_size(len(data))} and closed the connection ({todo})",
                                 received=len(data), limit=limit)
    return bytes(data)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def adb_server_listening(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether something accepts connections at the adb server address."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@functools.cache
def _no_spawn_connection_class(adbutils):
    class NoSpawnConnection(adbutils.AdbConnection):
        """An adbutils connection that never runs `adb start-server` when the connect fails."""

        def _safe_connect(self):
            return self._create_socket()

    return NoSpawnConnection


def _connection(adbutils, host: str, port: int):
    return _no_spawn_connection_class(adbutils)(host, port)


Perception = Literal["tree", "pixels", "fused"]
"""Where a phone's element list comes from (see :class:`AndroidDevice`)."""


class AndroidDevice:
    """An Android device driven over a :class:`ShellTransport`.

    Args:
        transport: where shell commands go; :meth:`connect` makes an adbutils one.
        screenshot: capture a screenshot with every observation.
        perception: where the element list comes from: ``tree`` (uiautomator), ``pixels`` (the screenshot
            alone: OCR and the widget detector, for apps with no usable tree; the tree is not read at all), or
            ``fused`` (the tree, with OCR filling nodes that have no text and adding what the tree lacks).
    """

    def __init__(self, transport: ShellTransport, *, screenshot: bool = True, perception: Perception = "tree") -> None:
        if perception not in ("tree", "pixels", "fused"):
            raise ConfigError(f"unknown perception {perception!r}; use tree, pixels or fused")
        self.transport = transport
        self.perception: Perception = perception
        self.screenshot = screenshot or perception != "tree"  # OCR reads the screenshot
        self._info: DeviceInfo | None = None
        self._packages: list[str] | None = None
        self._last: Observation | None = None

    @classmethod
    def connect(cls, serial: str | None = None, host: str = "127.0.0.1", port: int = 5037,
                **kwargs: object) -> AndroidDevice:
        """Connect to ``serial`` (or the only device) behind the adb server at ``host:port``."""
        return cls(AdbutilsTransport(serial, host, port), **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------ Device

    @property
    def info(self) -> DeviceInfo:
        if self._info is None:
            size = self.transport.shell("wm size")
            m = re.findall(r"(\d+)x(\d+)", size)
            if not m:
                raise DeviceError(f"cannot read the screen size of {self.transport.serial} (`wm size` said {size!r})")
            w, h = map(int, m[-1])
            model = self.transport.shell("getprop ro.product.model").strip()
            sdk = self.transport.shell("getprop ro.build.version.sdk").strip()
            self._info = DeviceInfo(kind="android", serial=self.transport.serial, model=model,
                                    screen_width=w, screen_height=h, sdk=int(sdk) if sdk.isdigit() else None)
        return self._info

    def observe(self) -> Observation:
        if self.perception == "pixels":
            return self._observe_pixels()
        info = self.info
        xml = self.transport.shell(f"uiautomator dump {DUMP_PATH} >/dev/null && cat {DUMP_PATH}")
        tree = parse_uiautomator_xml(xml)
        png = self.transport.exec_out("screencap -p") if self.screenshot else None
        if png is not None and not png.startswith(b"\x89PNG"):
            raise PerceptionError(f"screencap on {info.serial} returned no PNG ({png[:40]!r}); is the screen on?")
        width, height = screen_size(info.screen_width, info.screen_height, tree.rotation, tree.extent)
        obs = Observation(
            nodes=tree.nodes, package=tree.package, screen_width=width, screen_height=height,
            screenshot_png=png, secure=_is_black(png), keyboard_shown=tree.keyboard, timestamp=time.time(),
        )
        if self.perception == "fused" and not obs.secure:
            obs = add_ocr(obs)
        self._last = obs
        return obs

    def _observe_pixels(self) -> Observation:
        """The screen from its screenshot alone; the foreground app from the window manager."""

        self.info  # noqa: B018 - fails early with a clear error when the device is gone
        png = self.transport.exec_out("screencap -p")
        if not png.startswith(b"\x89PNG"):
            raise PerceptionError(f"screencap on {self.transport.serial} returned no PNG ({png[:40]!r}); "
                                  "is the screen on?")
        focus = re.search(r"mCurrentFocus=Window\{\S+ \S+ ([\w.]+)/", self.transport.shell("dumpsys window"))
        obs = observe_pixels(png, package=focus.group(1) if focus else "", timestamp=time.time())
        self._last = obs
        return obs

    def act(self, action: Action) -> ActResult:
        start = time.perf_counter()
        message = self._dispatch(action)
        return ActResult(ok=True, message=message, duration_ms=(time.perf_counter() - start) * 1000,
                         finished=isinstance(action, Finish))

    def close(self) -> None:
        self._last = None

    # ------------------------------------------------------------ actions

    def _dispatch(self, action: Action) -> str:
        match action:
            case Tap(target=target):
                x, y = self._point(target)
                self.transport.shell(f"input tap {x} {y}")
                return f"tapped {x},{y}"
            case LongPress(target=target, duration_ms=ms):
                x, y = self._point(target)
                self.transport.shell(f"input swipe {x} {y} {x} {y} {ms}")
                return f"long-pressed {x},{y}"
            case Swipe():
                (x1, y1), (x2, y2) = self._swipe_points(action)
                self.transport.shell(f"input swipe {x1} {y1} {x2} {y2} 300")
                return f"swiped {action.direction}"
            case Type(text=text, target=target, clear=clear):
                return self._type(text, target, clear)
            case Key(key=key):
                self.transport.shell(f"input keyevent {KEYCODES[key]}")
                return f"pressed {key}"
            case OpenApp(app=app):
                package = self._resolve_app(app)
                out = self.transport.shell(f"monkey -p {package} -c android.intent.category.LAUNCHER 1")
                if "No activities found" in out or "aborted" in out:
                    raise ActionError(f"{package} has no launcher activity; it cannot be opened with open_app")
                return f"opened {package}"
            case Wait(seconds=seconds):
                time.sleep(seconds)
                return f"waited {seconds:g}s"
            case Finish(status=status):
                return f"finished ({status})"
        raise ActionError(f"unsupported action for an Android device: {action!r}")

    def _observation(self) -> Observation:
        if self._last is None:
            raise ActionError("an element index needs an observation first; call observe()")
        return self._last

    def _size(self) -> tuple[int, int]:
        """The screen's size as the last observation saw it (rotation included), else the natural size."""
        if self._last is not None:
            return self._last.screen_width, self._last.screen_height
        return self.info.screen_width, self.info.screen_height

    def _point(self, target: Target) -> tuple[int, int]:
        if isinstance(target, Point):
            width, height = self._size()
            if target.x >= width or target.y >= height:
                raise ActionError(f"point {target.x},{target.y} is off the {width}x{height} screen")
            return target.x, target.y
        return self._element_bounds(target).center

    def _bounds(self, target: Target | None) -> Bounds:
        if target is None:
            width, height = self._size()
            return Bounds(left=0, top=0, right=width, bottom=height)
        if isinstance(target, Point):
            return Bounds(left=target.x, top=target.y, right=target.x + 1, bottom=target.y + 1)
        return self._element_bounds(target)

    def _element_bounds(self, index: int) -> Bounds:
        try:
            return self._observation().element(index).bounds
        except IndexError as exc:
            raise ActionError(str(exc)) from exc

    def _swipe_points(self, action: Swipe) -> tuple[tuple[int, int], tuple[int, int]]:
        bounds = self._bounds(action.target) if action.target is not None else None
        return swipe_points(action, bounds, *self._size())

    def _type(self, text: str, target: Target | None, clear: bool) -> str:
        if target is not None:
            x, y = self._point(target)
            self.transport.shell(f"input tap {x} {y}")
        if clear:
            self._clear(target)
        if not text:
            return "cleared" if clear else "typed nothing"
        if _ascii_typable(text):
            self.transport.shell("input text " + shlex.quote(text.replace(" ", "%s")))
        else:
            if ADB_KEYBOARD not in self._installed_packages():
                raise ActionError(
                    f"cannot type non-ASCII text {text[:20]!r}: `input text` handles ASCII only. Install the "
                    "ADB Keyboard (package com.android.adbkeyboard) and enable it with "
                    "`adb shell ime set com.android.adbkeyboard/.AdbIME`"
                )
            encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
            self.transport.shell(f"am broadcast -a ADB_INPUT_B64 --es msg {encoded}")
        return f"typed {len(text)} characters"

    def _clear(self, target: Target | None) -> None:
        length = 0
        if self._last is not None:
            if isinstance(target, int) and target < len(self._last.elements):
                length = len(self._last.elements[target].text)
            elif self._last.focused_element is not None:
                length = len(self._last.elements[self._last.focused_element].text)
        length = max(length, 1) + 2
        self.transport.shell(f"input keyevent {KEYCODE_MOVE_END} " + " ".join(["67"] * length))

    def _installed_packages(self) -> list[str]:
        if self._packages is None:
            out = self.transport.shell("pm list packages")
            self._packages = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("package:")]
        return self._packages

    def package_of(self, app: str) -> str:
        """The installed package an app label (``Settings``) or package names.

        Raises:
            ActionError: no such app is installed.
        """
        return self._resolve_app(app)

    def app_version(self, package: str) -> str:
        """The installed version of ``package`` (``versionName`` from ``dumpsys package``; '' when unknown)."""
        try:
            out = self.transport.shell(f"dumpsys package {package}")
        except DeviceError:
            return ""
        m = re.search(r"versionName=(\S+)", out)
        return m.group(1)[:100] if m else ""

    def force_stop(self, package: str) -> None:
        """Close an app (``am force-stop``): its next launch starts on its launch screen."""
        self.transport.shell(f"am force-stop {package}")

    def _resolve_app(self, app: str) -> str:
        installed = self._installed_packages()
        name = app.strip()
        if name in installed:
            return name
        for package in APP_PACKAGES.get(name.casefold(), ()):
            if package in installed:
                return package
        key = re.sub(r"[^a-z0-9]", "", name.casefold())
        guesses = [p for p in installed if key and p.rsplit(".", 1)[-1].replace("_", "") == key]
        if guesses:
            return guesses[0]
        raise ActionError(f"no app called {app!r} on {self.transport.serial}; open_app takes a launcher label "
                          f"({', '.join(sorted(APP_PACKAGES))}) or an installed package name")


def screen_size(width: int, height: int, rotation: int, extent: tuple[int, int]) -> tuple[int, int]:
    """The screen's size in a dump's orientation.

    ``wm size`` prints the natural (physical) size, whatever the rotation; a dump's bounds are in the
    rotated frame, so a quarter turn (rotation 1 or 3) swaps the sides. Windows that reach further than
    that (an emulator whose ``wm size`` is stale) widen it, so nothing on the screen is taken for off it.
    """
    if rotation % 2:
        width, height = height, width
    return max(width, extent[0]), max(height, extent[1])


def _ascii_typable(text: str) -> bool:
    return all(32 <= ord(ch) < 127 for ch in text) and "%s" not in text


def _is_black(png: bytes | None) -> bool:
    """Whether a screenshot is entirely black (Android's capture of a FLAG_SECURE window)."""
    if not png:
        return False
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        small = img.convert("L").reduce(16)
        return small.getextrema()[1] == 0
