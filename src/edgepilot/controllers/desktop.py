"""The desktop: screenshots with mss, mouse and keyboard with pyautogui, the accessibility tree when there is one.

Screenshot pixels, pointer coordinates and the accessibility tree's
coordinates meet here; :class:`~edgepilot.controllers.screen.ScreenGeometry`
maps between them. Text that pyautogui cannot type by key presses goes through
:mod:`edgepilot.controllers.keyboard`; ``open_app`` starts applications from
their .desktop entries (:mod:`edgepilot.controllers.apps`); the X display,
pyautogui and the accessibility reader are opened lazily
(:mod:`edgepilot.controllers.backends`).

The observation's nodes come from the accessibility tree (AT-SPI on Linux,
UI Automation on Windows, AX on macOS) when it shows anything, else from the
pixels (:func:`edgepilot.perception.fusion.observe_pixels`: OCR and widget
detection, ``edgepilot[ocr]``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
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
    RightClick,
    Scroll,
    Swipe,
    Tap,
    Target,
    Type,
    Wait,
)
from edgepilot.controllers.apps import GTK_A11Y_ENV, DesktopEntry, desktop_entries, find_desktop_entry, launch_app
from edgepilot.controllers.backends import default_display, open_mss, open_reader, open_x_display, pyautogui_for
from edgepilot.controllers.base import ActResult, DeviceInfo
from edgepilot.controllers.keyboard import (
    HOTKEY_NAMES,
    KEYS,
    KeysymTyper,
    ascii_typable,
    hotkey_name,
    keysym_for,
    paste_text,
)
from edgepilot.controllers.screen import ScreenGeometry, pointer_for
from edgepilot.errors import ActionError, DeviceError, EdgepilotError, PerceptionError
from edgepilot.perception.atspi import bus_address
from edgepilot.perception.fusion import observe_pixels
from edgepilot.perception.types import Observation, UINode

# the names this module held before it was split, for the code that imports them from here
__all__ = [
    "GTK_A11Y_ENV", "HOTKEY_NAMES", "KEYS", "DesktopDevice", "DesktopEntry", "KeysymTyper", "Perception",
    "ScreenGeometry", "Timings", "ascii_typable", "desktop_entries", "find_desktop_entry", "keysym_for",
    "open_reader", "open_x_display", "paste_text", "pyautogui_for",
]

Perception = Literal["auto", "tree", "pixels"]


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


TYPE_SETTLE = 2.4
"""How many times the settle time a typed text waits: a field's completion (GTK's file chooser) takes 0.3-0.5 s
after the last key, and an Enter pressed sooner did nothing (the chooser stayed open: Ristretto's "Save copy" failed
at 0.25 s, worked at 0.55 s and 0.85 s)."""


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
        self.display = default_display(display) if self.linux else None
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
            self._mss = open_mss(self.display)
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
            time.sleep(self.settle * (TYPE_SETTLE if isinstance(action, Type) else 1))
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

    def _grab(self) -> bytes:
        import mss.tools

        monitor = self._mss.monitors[self.monitor]
        try:
            shot = self._mss.grab(monitor)
        except Exception as exc:  # noqa: BLE001 - mss.ScreenShotError and X errors
            why = str(exc).strip() or type(exc).__name__
            raise DeviceError(f"screenshot of {self.display or 'the screen'} failed ({why}); "
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

    HOVER_S = 0.03
    """How long the pointer rests on a target before a click: a press that arrives with the pointer's jump
    can reach a toolkit before the crossing into the new widget does, and is lost (Galculator's keys, seen
    as "1", "0" giving "1")."""

    def _hover_at(self, target: Target) -> tuple[int, int]:
        x, y = self._pointer(target)
        self._gui().moveTo(x, y)
        time.sleep(self.HOVER_S)
        return x, y

    def _dispatch(self, action: Action) -> str:
        match action:
            case Tap(target=target) | Click(target=target):
                x, y = self._hover_at(target)
                self._gui().click(x, y)
                return f"clicked {x},{y}"
            case DoubleClick(target=target):
                x, y = self._hover_at(target)
                self._gui().doubleClick(x, y, interval=0.05)
                return f"double-clicked {x},{y}"
            case RightClick(target=target):
                x, y = self._hover_at(target)
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
                names = [hotkey_name(k) for k in keys]
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

    def _field_reads(self, text: str) -> bool:
        """Whether the focused text field now holds exactly ``text`` (True when that cannot be read: no tree, no
        focused field, a password). GTK's file chooser completes a path while it is typed, and keys that arrive
        during a completion are lost: ``/tmp/edgepilot-task-gs...`` came out ``/tmp/edgepilot-tsswx...``."""
        time.sleep(0.3)
        try:
            obs = self.observe()
        except EdgepilotError:
            return True
        field = obs.focused_element
        node = obs.elements[field] if field is not None else None
        return node is None or node.password or node.text == text

    def _keypad(self, text: str) -> list[int] | None:
        """The buttons of the last observation that type ``text`` one character each (a calculator's ``1``, ``+``,
        ``=``), in order; None when a character has no button.

        Keys typed at a window's key bindings are handled as they come: Galculator made 399 of ``61*5+94*5=`` at
        4 ms a key, and under load (two busy processes on two cores) 97, 98 and 714 of ``55*7+97*7=`` (1064) at
        30 ms and 100 ms a key. Its buttons, clicked, gave every key."""
        elements = self._last.elements if self._last is not None else []
        buttons: dict[str, int] = {}
        for i, node in enumerate(elements):
            label = node.text.strip()
            if label and node.clickable and node.enabled and node.class_name in ("Button", "ToggleButton"):
                buttons.setdefault(label, i)
        if not text or any(ch not in buttons for ch in text):
            return None
        return [buttons[ch] for ch in text]

    @staticmethod
    def _clear(gui: Any) -> None:
        """Empty the focused field: select all, delete."""
        gui.hotkey("command" if sys.platform == "darwin" else "ctrl", "a")
        gui.press("backspace")

    def _text_focused(self) -> bool:
        """Whether the last observation shows a text field with the keyboard focus. Keys typed elsewhere go to a
        window's key bindings (a calculator's, when :meth:`_keypad` finds no buttons for them), which lose keys at
        a text field's pace; GTK's file chooser lost the dot of ``/tmp/x1.txt`` at 20 ms a key."""
        return self._last is not None and self._last.focused_element is not None

    def _pointer(self, target: Target) -> tuple[int, int]:
        return pointer_for(target, self.geometry, self._last)

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
            self._clear(gui)
        if not text:
            return "cleared" if clear else "typed nothing"
        in_field = target is not None or self._text_focused()
        keypad = None if in_field else self._keypad(text)
        if keypad is not None:  # a calculator's keys, clicked: typed at it, Galculator lost or garbled keys
            for index in keypad:
                x, y = self._hover_at(index)
                gui.click(x, y)
                time.sleep(0.03)
            return f"pressed {len(keypad)} keys of the on-screen keypad"
        if ascii_typable(text):
            gui.write(text, interval=0.004 if in_field else 0.03)
            if clear and in_field and not self._field_reads(text):  # a completion raced the keys: once more, slowly
                self._clear(gui)
                gui.write(text, interval=0.05)
                return f"typed {len(text)} characters (again, slowly: the field read otherwise the first time)"
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
        proc, entry = launch_app(app, self.app_env())
        self.launched = [p for p in self.launched if p.poll() is None] + [proc]
        time.sleep(1.0)  # a window takes a moment to map; the loop observes right after
        return f"started {entry.name} (pid {proc.pid})"
