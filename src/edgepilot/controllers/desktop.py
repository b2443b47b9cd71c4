"""The desktop: screenshots with mss, mouse and keyboard with pyautogui, the accessibility tree when there is one.

Three coordinate spaces meet here (:class:`ScreenGeometry` maps between them):

- **screenshot pixels**: what the model sees; observation bounds and
  ``Point`` targets are in them, origin at the observed monitor's corner;
- **pointer coordinates**: what pyautogui moves the mouse in; on X11 and
  Windows (pyautogui makes the process DPI-aware) these are physical pixels of
  the whole virtual screen, on macOS points (a Retina screenshot has two
  pixels per point); a monitor right of or above the primary one has an offset,
  possibly negative;
- **accessibility coordinates**: the toolkit's screen coordinates; on X11 the
  same as pointer coordinates, except for applications scaled by the toolkit
  (GTK with ``GDK_SCALE=2`` reports logical pixels: ``a11y_scale=2``).

Text: printable ASCII goes through pyautogui's key presses. Anything else
(``héllo``, ``日本``) on X11 goes through :class:`KeysymTyper`: XTEST key
presses on spare keycodes that carry the missing characters for the moment
(``xdotool type`` does the same one character at a time and was seen to drop
characters on Xvfb). On Windows and macOS such text is pasted through the
clipboard (pyperclip).

The observation's nodes come from the accessibility tree (AT-SPI on Linux,
UI Automation on Windows, AX on macOS) when it shows anything, else from the
pixels (:func:`edgepilot.perception.fusion.observe_pixels`: OCR and widget
detection, ``edgepilot[ocr]``).
"""

from __future__ import annotations

import configparser
import importlib
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgepilot.actions import (
    Action,
    Click,
    DoubleClick,
    Drag,
    Finish,
    Hotkey,
    Key,
    LongPress,
    OpenApp,
    Point,
    RightClick,
    Scroll,
    Swipe,
    Tap,
    Target,
    Type,
    Wait,
)
from edgepilot.controllers.base import ActResult, DeviceInfo
from edgepilot.errors import ActionError, DeviceError, EdgepilotError, PerceptionError
from edgepilot.perception.types import Bounds, Observation, UINode

Perception = Literal["auto", "tree", "pixels"]

KEYS = {"enter": "enter", "delete": "backspace", "tab": "tab", "space": "space", "escape": "esc", "back": "esc",
        "menu": "apps"}
"""``key`` actions on a desktop, as pyautogui key names (``delete`` is Android's DEL: the key left of the cursor)."""
HOTKEY_NAMES = {"super": "winleft", "page_up": "pageup", "page_down": "pagedown", "escape": "esc",
                "minus": "-", "equal": "=", "comma": ",", "period": ".", "slash": "/", "plus": "+"}
"""Hotkey names that pyautogui spells differently; the others are the same."""
GTK_A11Y_ENV = {"GTK_MODULES": "gail:atk-bridge", "NO_AT_BRIDGE": "0", "QT_ACCESSIBILITY": "1"}
"""Environment that makes GTK 2/3 and Qt applications expose their accessibility tree."""
_FIELD_CODES = re.compile(r"%[fFuUdDnNickvm%]")


@dataclass(frozen=True)
class ScreenGeometry:
    """Where the observed monitor lies, and the scale factors between the coordinate spaces.

    Args:
        left, top: the monitor's corner in pointer coordinates (negative left of the primary monitor).
        width, height: its size in pointer coordinates.
        scale: screenshot pixels per pointer unit (2.0 on a Retina display, else 1.0).
        a11y_scale: pointer units per accessibility unit (2.0 for GTK at GDK_SCALE=2 on X11, else 1.0).
    """

    left: int
    top: int
    width: int
    height: int
    scale: float = 1.0
    a11y_scale: float = 1.0

    @property
    def shot_size(self) -> tuple[int, int]:
        """The screenshot's size in pixels."""
        return round(self.width * self.scale), round(self.height * self.scale)

    def to_pointer(self, x: float, y: float) -> tuple[int, int]:
        """A screenshot pixel → the pointer position on its centre."""
        return (self.left + int((x + 0.5) / self.scale), self.top + int((y + 0.5) / self.scale))

    def to_shot(self, x: float, y: float) -> tuple[int, int]:
        """A pointer position → the screenshot pixel under it."""
        return (int((x - self.left) * self.scale), int((y - self.top) * self.scale))

    def a11y_bounds(self, b: Bounds) -> Bounds:
        """Accessibility bounds → screenshot bounds (empty stays empty)."""
        if b.area == 0:
            return b
        f = self.a11y_scale * self.scale
        return Bounds(left=round(b.left * f - self.left * self.scale), top=round(b.top * f - self.top * self.scale),
                      right=round(b.right * f - self.left * self.scale),
                      bottom=round(b.bottom * f - self.top * self.scale))

    @classmethod
    def from_monitor(cls, monitor: dict[str, int], shot_width: int, a11y_scale: float = 1.0) -> ScreenGeometry:
        """From an mss monitor (pointer coordinates) and the width of a screenshot of it."""
        width = int(monitor["width"])
        return cls(left=int(monitor["left"]), top=int(monitor["top"]), width=width, height=int(monitor["height"]),
                   scale=shot_width / width if width else 1.0, a11y_scale=a11y_scale)


def _default_display(display: str | None) -> str:
    name = display or os.environ.get("DISPLAY", "")
    if not name:
        wayland = " (this is a Wayland session: run under XWayland with DISPLAY set)" \
            if os.environ.get("WAYLAND_DISPLAY") else ""
        raise DeviceError("no X display: DISPLAY is not set" + wayland + ". Set DISPLAY (e.g. DISPLAY=:0), or start "
                          "a virtual one: `Xvfb :99 -screen 0 1280x800x24 &` and use --device desktop::99")
    return name


def open_x_display(display: str | None) -> Any:
    """Connect to an X display with python-xlib.

    Raises:
        DeviceError: it cannot be reached; the message says to set DISPLAY or start Xvfb.
    """
    name = _default_display(display)
    try:
        from Xlib.display import Display

        return Display(name)
    except ImportError as exc:
        raise DeviceError("the desktop controller needs python-xlib and pyautogui: pip install 'edgepilot[desktop]'") \
            from exc
    except Exception as exc:  # noqa: BLE001 - python-xlib raises DisplayConnectionError, OSError, ValueError...
        raise DeviceError(f"cannot open X display {name!r} ({str(exc).strip()}); set DISPLAY to a running X server, "
                          "or start Xvfb: `Xvfb :99 -screen 0 1280x800x24 &` and use --device desktop::99") from exc


_PYAUTOGUI_LOCK = threading.Lock()


def pyautogui_for(display: str | None) -> Any:
    """pyautogui, with its X11 backend talking to ``display``.

    pyautogui opens ``$DISPLAY`` when it is imported and computes its key
    codes from that server; for another display its X11 module is loaded
    again with ``DISPLAY`` set to it. One display at a time per process.

    Raises:
        DeviceError: pyautogui is not installed or cannot reach the display.
    """
    with _PYAUTOGUI_LOCK:
        saved = os.environ.get("DISPLAY")
        if display is not None:
            os.environ["DISPLAY"] = display
        try:
            import pyautogui

            if sys.platform.startswith("linux") and display is not None:
                from pyautogui import _pyautogui_x11 as x11

                if x11._display.get_display_name() != display:
                    x11._display.close()
                    importlib.reload(x11)
                    pyautogui.platformModule = x11
        except ImportError as exc:
            raise DeviceError("the desktop controller needs pyautogui: pip install 'edgepilot[desktop]'") from exc
        except Exception as exc:  # noqa: BLE001 - Xlib's connection errors, KeyError('DISPLAY')
            raise DeviceError(f"pyautogui cannot reach display {display!r} ({exc}); set DISPLAY or start Xvfb") \
                from exc
        finally:
            if saved is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = saved
        pyautogui.PAUSE = 0.0  # pyautogui sleeps 0.1 s after every call by default; the device settles once per action
        return pyautogui


@dataclass
class Timings:
    """Where the last observation's time went, in milliseconds."""

    screenshot_ms: float = 0.0
    tree_ms: float = 0.0
    pixels_ms: float = 0.0
    total_ms: float = 0.0
    source: str = ""  # "tree" or "pixels"
    note: str = ""  # why the pixels were used, when they were
    extra: dict[str, Any] = field(default_factory=dict)


class DesktopDevice:
    """A desktop (an X display on Linux; the screen on Windows and macOS) driven with mouse and keyboard.

    Args:
        display: the X display (``":99"``); default ``$DISPLAY``. Ignored off Linux.
        monitor: the monitor to observe, as mss numbers them: 1 the first, 0 all of them as one screen.
        perception: ``auto`` (the accessibility tree, else the pixels), ``tree`` (the tree only: an
            empty observation when it shows nothing) or ``pixels`` (OCR and widget detection only).
        a11y_scale: pointer units per accessibility unit (2.0 for GTK apps at GDK_SCALE=2).
        a11y_bus: the AT-SPI bus address (default: found through the session bus or the X root window).
        session_bus: the D-Bus session bus to find it on (default ``$DBUS_SESSION_BUS_ADDRESS``).
        settle: seconds to wait after an action for the application to draw its answer.
        ocr: the OCR engine for the pixels (default: the shared one).
        env: environment for applications started by ``open_app`` (default: this process's, plus
            DISPLAY, the session bus and :data:`GTK_A11Y_ENV`).
        reader: the accessibility reader (default: :func:`open_reader` for this system, opened on first use).
        screenshot: keep the screenshot in observations read from the tree (the pixels always need one).

    Raises:
        DeviceError: no display can be reached (the message says to set DISPLAY or start Xvfb), or the
            monitor does not exist.
    """

    def __init__(self, display: str | None = None, *, monitor: int = 1, perception: Perception = "auto",
                 a11y_scale: float = 1.0, a11y_bus: str | None = None, session_bus: str | None = None,
                 settle: float = 0.25, ocr: Any = None, env: dict[str, str] | None = None,
                 reader: Any = None, screenshot: bool = True) -> None:
        self.linux = sys.platform.startswith("linux")
        self.display = _default_display(display) if self.linux else None
        self.perception: Perception = perception
        self.screenshot = screenshot
        self.settle = settle
        self.a11y_scale = a11y_scale
        self.monitor = monitor
        self.timings = Timings()
        self._a11y_bus, self._session_bus = a11y_bus, session_bus
        self._reader = reader
        self._reader_error: str | None = None
        self._reader_retry = 0.0  # when to try opening the accessibility bus again after it failed
        self._ocr = ocr
        self._env = env
        self._last: Observation | None = None
        self._geometry: ScreenGeometry | None = None
        self._info: DeviceInfo | None = None
        self._typer: KeysymTyper | None = None
        self._mss: Any = None
        self.launched: list[subprocess.Popen] = []
        """The applications ``open_app`` started that are still running (a benchmark stops them after a task)."""
        self._x = open_x_display(self.display) if self.linux else None
        try:
            self._mss = self._open_mss()
            monitors = self._mss.monitors
            if not 0 <= monitor < len(monitors):
                raise DeviceError(f"no monitor {monitor} on {self.display or 'this screen'}: it has "
                                  f"{len(monitors) - 1} (use 1..{len(monitors) - 1}, or 0 for all of them as one)")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ Device

    @property
    def info(self) -> DeviceInfo:
        if self._info is None:
            geometry = self.geometry
            w, h = geometry.shot_size
            model = "X11" if self.linux else sys.platform
            if self._x is not None:
                model = f"X11 {self._x.display.info.vendor} ({w}x{h})"
            serial = f"{self.display or 'screen'}/{self.monitor}"
            self._info = DeviceInfo(kind="desktop", serial=serial, model=model, screen_width=w, screen_height=h)
        return self._info

    @property
    def geometry(self) -> ScreenGeometry:
        """The observed monitor's geometry (measured with one screenshot the first time)."""
        if self._geometry is None:
            self._grab()
        assert self._geometry is not None
        return self._geometry

    def observe(self) -> Observation:
        start = time.perf_counter()
        self.timings = Timings()
        png = self._grab()
        self.timings.screenshot_ms = (time.perf_counter() - start) * 1000
        w, h = self.geometry.shot_size
        nodes: tuple[UINode, ...] = ()
        app = window = ""
        if self.perception != "pixels":
            nodes, app, window = self._tree()
        obs = Observation(nodes=nodes, package=app, activity=window, screen_width=w, screen_height=h,
                          screenshot_png=png, timestamp=time.time())
        if self.perception == "pixels" or (self.perception == "auto" and not obs.elements):
            obs = self._pixels(png, app, window)
        else:
            self.timings.source = "tree"
            if not self.screenshot:
                obs = obs.model_copy(update={"screenshot_png": None})
        self.timings.total_ms = (time.perf_counter() - start) * 1000
        self._last = obs
        return obs

    def act(self, action: Action) -> ActResult:
        start = time.perf_counter()
        try:
            message = self._dispatch(action)
        except EdgepilotError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyautogui and Xlib raise their own types for a lost display
            if type(exc).__name__ == "FailSafeException":
                raise DeviceError("stopped: the mouse pointer is in a corner of the screen (pyautogui's fail-safe, "
                                  "the user's way to stop an agent); move it away to go on") from exc
            raise DeviceError(f"the desktop could not carry out {action.type} ({type(exc).__name__}: {exc}); "
                              "is the X server still running?") from exc
        if not isinstance(action, (Wait, Finish)) and self.settle:
            time.sleep(self.settle)
        return ActResult(ok=True, message=message, duration_ms=(time.perf_counter() - start) * 1000,
                         finished=isinstance(action, Finish))

    def close(self) -> None:
        self._last = None
        for owner in (self._typer, self._reader, self._mss, self._x):
            closer = getattr(owner, "close", None)
            if closer is not None:
                try:
                    closer()
                except Exception:  # noqa: BLE001,S110 - closing what may already be gone
                    pass
        self._reader = None

    def __enter__(self) -> DesktopDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ seeing

    def _open_mss(self) -> Any:
        try:
            import mss
        except ImportError as exc:
            raise DeviceError("the desktop controller needs mss: pip install 'edgepilot[desktop]'") from exc
        factory = getattr(mss, "MSS", None) or mss.mss
        try:
            return factory(display=self.display) if self.linux else factory()
        except Exception as exc:  # noqa: BLE001 - mss raises ScreenShotError and Xlib errors
            raise DeviceError(f"cannot take screenshots of {self.display or 'the screen'} ({exc}); "
                              "set DISPLAY or start Xvfb") from exc

    def _grab(self) -> bytes:
        import mss.tools

        monitor = self._mss.monitors[self.monitor]
        try:
            shot = self._mss.grab(monitor)
        except Exception as exc:  # noqa: BLE001 - mss.ScreenShotError and X errors
            raise DeviceError(f"screenshot of {self.display or 'the screen'} failed ({exc}); "
                              "is the X server still running?") from exc
        if self._geometry is None:
            self._geometry = ScreenGeometry.from_monitor(monitor, shot.size[0], self.a11y_scale)
        return mss.tools.to_png(shot.rgb, shot.size, level=1)  # type: ignore[return-value]

    def _tree(self) -> tuple[tuple[UINode, ...], str, str]:
        t0 = time.perf_counter()
        reader = self._open_reader()
        if reader is None:
            return (), "", ""
        try:
            tree = reader.read()
        except PerceptionError as exc:
            self._reader_error = str(exc)
            self._reader_retry = time.monotonic() + 10.0
            self._close_reader()
            return (), "", ""
        finally:
            self.timings.tree_ms = (time.perf_counter() - t0) * 1000
        geometry = self.geometry
        nodes = tuple(n.model_copy(update={"bounds": geometry.a11y_bounds(n.bounds)}) for n in tree.nodes)
        self.timings.extra.update(tree_nodes=len(nodes), truncated=tree.truncated, skipped=list(tree.skipped))
        return nodes, tree.app, tree.window

    def move_pointer(self, x: int, y: int) -> None:
        """Move the mouse to a screenshot pixel without clicking.

        On an X server without a window manager (Xvfb) the keyboard goes to
        the window under the pointer, so a task puts the pointer over the
        application it started.
        """
        self._gui().moveTo(*self.geometry.to_pointer(x, y))

    def a11y_address(self) -> str:
        """The AT-SPI bus this device reads (for checks that read the tree on their own).

        Raises:
            PerceptionError: there is none.
        """
        address = getattr(self._reader, "address", None) or self._a11y_bus
        if address:
            return address
        from edgepilot.perception.atspi import bus_address

        return bus_address(session_bus=self._session_bus, display=self.display)

    def _open_reader(self) -> Any:
        """The accessibility reader, opened on first use; after a failure, tried again every 10 s at most."""
        if self._reader is None and time.monotonic() >= self._reader_retry:
            try:
                self._reader = open_reader(display=self.display, a11y_bus=self._a11y_bus,
                                           session_bus=self._session_bus)
                self._reader_error = None
            except PerceptionError as exc:
                self._reader_error = str(exc)
                self._reader_retry = time.monotonic() + 10.0
        return self._reader

    def _close_reader(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # noqa: BLE001,S110 - the bus may be gone already
                pass
        self._reader = None

    def _pixels(self, png: bytes, app: str, window: str) -> Observation:
        from edgepilot.perception.fusion import observe_pixels

        if self.perception == "auto":
            self.timings.note = (f"accessibility tree unavailable: {self._reader_error}"
                                 if self._reader is None and self._reader_error
                                 else "the accessibility tree shows no elements")
        t0 = time.perf_counter()
        try:
            obs = observe_pixels(png, engine=self._ocr, package=app, activity=window, timestamp=time.time())
        except PerceptionError as exc:
            raise PerceptionError(f"{self.timings.note or 'pixels only'}; and the pixels cannot be read: {exc}") \
                from exc
        self.timings.pixels_ms = (time.perf_counter() - t0) * 1000
        self.timings.source = "pixels"
        return obs

    # ------------------------------------------------------------ acting

    def _dispatch(self, action: Action) -> str:
        match action:
            case Tap(target=target) | Click(target=target):
                x, y = self._pointer(target)
                self._gui().click(x, y)
                return f"clicked {x},{y}"
            case DoubleClick(target=target):
                x, y = self._pointer(target)
                self._gui().doubleClick(x, y, interval=0.05)
                return f"double-clicked {x},{y}"
            case RightClick(target=target):
                x, y = self._pointer(target)
                self._gui().rightClick(x, y)
                return f"right-clicked {x},{y}"
            case LongPress(target=target, duration_ms=ms):
                x, y = self._pointer(target)
                gui = self._gui()
                gui.mouseDown(x, y)
                time.sleep(ms / 1000)
                gui.mouseUp(x, y)
                return f"pressed {x},{y} for {ms} ms"
            case Drag(target=target, to=to):
                return self._drag(target, to)
            case Scroll(direction=direction, target=target, amount=amount):
                return self._scroll(direction, target, amount)
            case Swipe():
                raise ActionError("swipe is a touch gesture; on a desktop use scroll (the mouse wheel) or drag")
            case Type(text=text, target=target, clear=clear):
                return self._type(text, target, clear)
            case Key(key=key):
                if key not in KEYS:
                    raise ActionError(f"the key {key!r} is a phone's; on a desktop press enter, delete, tab, space or "
                                      "escape, or use hotkey (e.g. [\"super\"], [\"alt\", \"tab\"])")
                self._gui().press(KEYS[key])
                return f"pressed {key}"
            case Hotkey(keys=keys):
                names = [self._key_name(k) for k in keys]
                self._gui().hotkey(*names, interval=0.02)
                return "pressed " + "+".join(keys)
            case OpenApp(app=app):
                return self._open_app(app)
            case Wait(seconds=seconds):
                time.sleep(seconds)
                return f"waited {seconds:g}s"
            case Finish(status=status):
                return f"finished ({status})"
        raise ActionError(f"unsupported action for a desktop: {action!r}")

    def _gui(self) -> Any:
        return pyautogui_for(self.display)

    def _key_name(self, key: str) -> str:
        if key == "super" and sys.platform == "darwin":
            return "command"
        return HOTKEY_NAMES.get(key, key)

    def _observation(self) -> Observation:
        if self._last is None:
            raise ActionError("an element index needs an observation first; call observe()")
        return self._last

    def _shot_point(self, target: Target) -> tuple[int, int]:
        w, h = self.geometry.shot_size
        if isinstance(target, Point):
            if target.x >= w or target.y >= h:
                raise ActionError(f"point {target.x},{target.y} is off the {w}x{h} screen")
            return target.x, target.y
        obs = self._observation()
        try:
            node = obs.element(target)
        except IndexError as exc:
            raise ActionError(str(exc)) from exc
        visible = node.bounds.intersect(Bounds(left=0, top=0, right=w, bottom=h))
        if visible.area == 0:
            raise ActionError(f"element {target} is off screen; scroll to it first")
        return visible.center

    def _pointer(self, target: Target) -> tuple[int, int]:
        """A target → pointer coordinates, kept off the screen's corners (pyautogui's fail-safe)."""
        x, y = self.geometry.to_pointer(*self._shot_point(target))
        g = self.geometry
        if x in (g.left, g.left + g.width - 1) and y in (g.top, g.top + g.height - 1):
            x += 1 if x == g.left else -1
        return x, y

    def _drag(self, target: Target, to: Target) -> str:
        (x1, y1), (x2, y2) = self._pointer(target), self._pointer(to)
        gui = self._gui()
        gui.moveTo(x1, y1)
        gui.mouseDown(x1, y1)
        steps = 12  # toolkits start a drag only after the pointer moved a few pixels with the button down
        for i in range(1, steps + 1):
            gui.moveTo(x1 + (x2 - x1) * i // steps, y1 + (y2 - y1) * i // steps)
            time.sleep(0.02)
        gui.mouseUp(x2, y2)
        return f"dragged {x1},{y1} to {x2},{y2}"

    def _scroll(self, direction: str, target: Target | None, amount: int) -> str:
        if target is not None:
            x, y = self._pointer(target)
        else:
            w, h = self.geometry.shot_size
            x, y = self.geometry.to_pointer(w // 2, h // 2)
        gui = self._gui()
        gui.moveTo(x, y)
        clicks = amount if direction in ("up", "left") else -amount
        if direction in ("up", "down"):
            gui.scroll(clicks, x=x, y=y)
        else:
            gui.hscroll(-clicks, x=x, y=y)
        return f"scrolled {direction} {amount} at {x},{y}"

    def _type(self, text: str, target: Target | None, clear: bool) -> str:
        gui = self._gui()
        if target is not None:
            gui.click(*self._pointer(target))
            time.sleep(0.05)
        if clear:
            gui.hotkey("command" if sys.platform == "darwin" else "ctrl", "a")
            gui.press("backspace")
        if not text:
            return "cleared" if clear else "typed nothing"
        if ascii_typable(text):
            gui.write(text, interval=0.004)
        elif self._x is not None:
            if self._typer is None:
                self._typer = KeysymTyper(self._x)
            self._typer.type(text)
        else:
            paste_text(text, gui)
        return f"typed {len(text)} characters"

    # ------------------------------------------------------------ apps

    def app_env(self) -> dict[str, str]:
        """The environment ``open_app`` starts applications with."""
        env = dict(self._env if self._env is not None else os.environ)
        if self.display:
            env["DISPLAY"] = self.display
        if self._session_bus:
            env["DBUS_SESSION_BUS_ADDRESS"] = self._session_bus
        return {**env, **GTK_A11Y_ENV}

    def _open_app(self, app: str) -> str:
        if sys.platform == "darwin":
            subprocess.run(["open", "-a", app], check=False, capture_output=True, timeout=10)  # noqa: S603,S607
            return f"asked macOS to open {app}"
        if not self.linux:
            raise ActionError("open_app is not supported on this system yet; press [\"super\"], type the name, enter")
        entry = find_desktop_entry(app)
        if entry is None:
            raise ActionError(f"no application called {app!r}; open_app takes an application's name as its "
                              "menu shows it (e.g. \"Mousepad\"), from the .desktop files in "
                              "/usr/share/applications and ~/.local/share/applications")
        argv = [a for a in (_FIELD_CODES.sub("", part) for part in shlex.split(entry.exec)) if a]
        try:
            proc = subprocess.Popen(argv, env=self.app_env(), stdin=subprocess.DEVNULL,  # noqa: S603
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise ActionError(f"cannot start {entry.name} ({' '.join(argv)}): {exc}") from exc
        self.launched = [p for p in self.launched if p.poll() is None] + [proc]
        time.sleep(1.0)  # a window takes a moment to map; the loop observes right after
        return f"started {entry.name} (pid {proc.pid})"


# ---------------------------------------------------------------- typing


def keysym_for(ch: str) -> int:
    """The X keysym of a character: Latin-1 as itself, everything else as 0x01000000 + its code point."""
    code = ord(ch)
    if ch == "\n":
        return 0xFF0D  # Return
    if ch == "\t":
        return 0xFF09  # Tab
    if ch == "\b":
        return 0xFF08  # BackSpace
    return code if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF else 0x01000000 + code


class KeysymTyper:
    """Types any text on X11 through XTEST: characters the keyboard map lacks are put on spare keycodes.

    Every character missing from the map (``é``, ``✓``, ``日``) is mapped onto
    a keycode that has no symbols, all of a chunk at once, then the keys are
    pressed. The map is left that way until the spare keycodes are needed for
    other characters or :meth:`close`: a client reads the map when it handles
    a key press, possibly after the typing ended, and a map restored too early
    turns the last characters into nothing (what ``xdotool type``, which maps
    and restores each character in turn, was seen to do on Xvfb: it dropped
    one or two characters in most runs).

    Raises:
        ActionError: (from :meth:`type`) the keyboard map has no spare keycode.
    """

    def __init__(self, x: Any, delay: float = 0.004, settle: float = 0.08) -> None:
        self.x = x
        self.delay = delay
        self.settle = settle
        self.assigned: dict[int, int] = {}  # keysym → spare keycode now carrying it

    def type(self, text: str) -> None:
        from Xlib import XK, X
        from Xlib.ext.xtest import fake_input

        info = self.x.display.info
        first = info.min_keycode
        mapping = self.x.get_keyboard_mapping(first, info.max_keycode - first + 1)
        width = len(mapping[0]) if mapping else 2
        known: dict[int, tuple[int, bool]] = {}
        for i, syms in enumerate(mapping):
            for level, sym in enumerate(syms[:2]):
                if sym and sym not in known and first + i not in self.assigned.values():
                    known[sym] = (first + i, level == 1)
        spare = [first + i for i, syms in enumerate(mapping) if not any(syms) or first + i in self.assigned.values()]
        if not spare:
            raise ActionError("the X keyboard map has no free keycode to type non-ASCII text with")
        shift = self.x.keysym_to_keycode(XK.XK_Shift_L)
        pos = 0
        while pos < len(text):
            plan, wanted = [], {}
            while pos < len(text):
                sym = keysym_for(text[pos])
                if sym in known:
                    plan.append(known[sym])
                elif sym in wanted or len(wanted) < len(spare):
                    wanted.setdefault(sym, len(wanted))
                    plan.append((-1 - wanted[sym], False))  # a spare keycode, decided below
                else:
                    break
                pos += 1
            codes = self._map(wanted, spare, width)
            for code, shifted in plan:
                code = codes[-1 - code] if code < 0 else code
                if shifted:
                    fake_input(self.x, X.KeyPress, shift)
                fake_input(self.x, X.KeyPress, code)
                fake_input(self.x, X.KeyRelease, code)
                if shifted:
                    fake_input(self.x, X.KeyRelease, shift)
                self.x.sync()
                time.sleep(self.delay)

    def _map(self, wanted: dict[int, int], spare: list[int], width: int) -> list[int]:
        """Keycodes for the wanted keysyms (in order), reusing ones already mapped; remaps only what must change."""
        codes = [0] * len(wanted)
        free = [c for c in spare if c not in {self.assigned.get(sym) for sym in wanted}]
        changed = False
        for sym, slot in wanted.items():
            if sym in self.assigned:
                codes[slot] = self.assigned[sym]
                continue
            code = free.pop(0)
            old = next((s for s, c in self.assigned.items() if c == code), None)
            if old is not None:
                del self.assigned[old]
            if not changed:
                time.sleep(self.settle)  # keys typed earlier with this keycode must be read before it changes
            self.x.change_keyboard_mapping(code, [(sym,) * width])
            self.assigned[sym] = codes[slot] = code
            changed = True
        if changed:
            self.x.sync()
            time.sleep(self.settle)  # clients see the new map before its first key arrives
        return codes

    def close(self) -> None:
        """Give the spare keycodes their empty map back."""
        if not self.assigned:
            return
        info = self.x.display.info
        width = len(self.x.get_keyboard_mapping(info.min_keycode, 1)[0])
        time.sleep(self.settle)
        for code in self.assigned.values():
            self.x.change_keyboard_mapping(code, [(0,) * width])
        self.x.sync()
        self.assigned.clear()


def ascii_typable(text: str) -> bool:
    """Whether pyautogui can type this by key presses (printable ASCII, newlines, tabs)."""
    return all(32 <= ord(ch) < 127 or ch in "\n\t" for ch in text)


def paste_text(text: str, gui: Any) -> None:
    """Windows and macOS: paste text through the clipboard (restored afterwards).

    Raises:
        ActionError: pyperclip is not installed.
    """
    try:
        import pyperclip
    except ImportError as exc:
        raise ActionError("typing non-ASCII text here pastes it through the clipboard: pip install pyperclip") from exc
    saved = pyperclip.paste()
    pyperclip.copy(text)
    gui.hotkey("command" if sys.platform == "darwin" else "ctrl", "v")
    time.sleep(0.1)
    pyperclip.copy(saved)


# ---------------------------------------------------------------- applications


@dataclass(frozen=True)
class DesktopEntry:
    """An application as its .desktop file describes it."""

    name: str
    exec: str
    path: Path


def _entry_dirs() -> list[Path]:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    data_dirs = os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    return [Path(d) / "applications" for d in [data_home, *data_dirs.split(":")] if d]


def desktop_entries(dirs: list[Path] | None = None) -> list[DesktopEntry]:
    """The launchable applications (``Type=Application`` with an ``Exec``), first directory first."""
    out, seen = [], set()
    for folder in dirs if dirs is not None else _entry_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.desktop")):
            if path.name in seen:
                continue
            seen.add(path.name)
            parser = configparser.ConfigParser(interpolation=None, strict=False)
            try:
                parser.read(path, encoding="utf-8")
                section = parser["Desktop Entry"]
            except (configparser.Error, KeyError, UnicodeDecodeError, OSError):
                continue
            if section.get("Type", "Application") != "Application" or not section.get("Exec"):
                continue
            out.append(DesktopEntry(name=section.get("Name", path.stem), exec=section["Exec"], path=path))
    return out


def find_desktop_entry(app: str, dirs: list[Path] | None = None) -> DesktopEntry | None:
    """The application called ``app``: by menu name, else file name (``org.xfce.mousepad``), else command."""
    want = app.strip().casefold()
    entries = desktop_entries(dirs)
    for key in (lambda e: e.name.casefold(), lambda e: e.path.stem.casefold(),
                lambda e: e.path.stem.casefold().rsplit(".", 1)[-1],
                lambda e: Path(shlex.split(e.exec)[0]).name.casefold() if e.exec.strip() else ""):
        for entry in entries:
            try:
                if key(entry) == want:
                    return entry
            except ValueError:  # an Exec line with unbalanced quotes
                continue
    return None


# ---------------------------------------------------------------- accessibility backends


def open_reader(*, display: str | None = None, a11y_bus: str | None = None, session_bus: str | None = None) -> Any:
    """The accessibility tree reader of this system: AT-SPI (Linux), UI Automation (Windows), AX (macOS).

    Raises:
        PerceptionError: there is none, or it cannot be reached.
    """
    if sys.platform == "win32":
        from edgepilot.perception.uia import UiaReader

        return UiaReader()
    if sys.platform == "darwin":
        from edgepilot.perception.ax import AxReader

        return AxReader()
    try:
        import jeepney  # noqa: F401
    except ImportError as exc:
        raise PerceptionError("reading the AT-SPI tree needs jeepney: pip install 'edgepilot[desktop]'") from exc
    from edgepilot.perception.atspi import AtspiReader

    return AtspiReader(a11y_bus, session_bus=session_bus, display=display)
