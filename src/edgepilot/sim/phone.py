"""The virtual phone: apps, a screen, touch and key input, system UI.

It behaves like Android where it matters to an agent: the soft keyboard types
only into a focused field and the first back hides it; back and home work;
apps keep their state and back stack; a swipe down from the status bar opens
the notification shade; a secure (``FLAG_SECURE``) screen screencaps black.
It is driven through :class:`edgepilot.sim.adb.server.AdbServer` by real adb
clients, or directly in-process.
"""

from __future__ import annotations

import base64
import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgepilot.errors import SimError
from edgepilot.sim import ui
from edgepilot.sim.apps import APP_CLASSES
from edgepilot.sim.apps.base import App
from edgepilot.sim.ui import HEIGHT, KEYBOARD_H, NAV_H, STATUS_H, TITLE_H, WIDTH, Page, View

SYSTEMUI = "com.android.systemui"
ADB_KEYBOARD = "com.android.adbkeyboard"
LATIN_IME = "com.android.inputmethod.latin"

CLOCK_START = 9 * 60 + 41  # 9:41, the minute the status bar shows after a reset
INPUTS_PER_MINUTE = 3  # the virtual clock advances one minute every 3 input events
BATTERY_START = 87
INPUTS_PER_PERCENT = 10  # the battery drops 1 % every 10 input events
BATTERY_MIN = 5
MAX_NOTIFICATION_ICONS = 4
LANDSCAPE_KEYBOARD_H = 520

KEY_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")
SYMBOL_ROWS = ("1234567890", "@#$_&-+()/", "*\"':;!?~=", "<>[]{}|")

KEY_HOME, KEY_BACK, KEY_ENTER, KEY_DEL, KEY_APP_SWITCH = 3, 4, 66, 67, 187
KEY_TAB, KEY_SPACE, KEY_ESCAPE, KEY_FORWARD_DEL, KEY_MOVE_END = 61, 62, 111, 112, 123


@dataclass
class Notification:
    id: int
    package: str
    title: str
    text: str
    open: Callable[[], None] | None = None


def _all_app_classes() -> list[type[App]]:
    return list(APP_CLASSES)


class VirtualPhone:
    """An Android-shaped phone that exists in-process.

    Args:
        serial: the adb serial it reports.
        adb_keyboard: whether the ADB Keyboard IME is installed (it accepts
            non-ASCII text through ``am broadcast -a ADB_INPUT_B64``).
    """

    screen_size = (WIDTH, HEIGHT)
    """The natural (physical) size, as `wm size` prints it whatever the rotation."""

    def __init__(self, serial: str = "virtual-1", *, adb_keyboard: bool = True) -> None:
        self.serial = serial
        self.lock = threading.RLock()
        self.files: dict[str, bytes] = {}
        self.adb_keyboard = adb_keyboard
        self.apps: dict[str, App] = {}
        for cls in _all_app_classes():
            app = cls(self)
            self.apps[app.package] = app
        self.by_key = {app.key: app for app in self.apps.values()}
        self.launcher_package = self.by_key["launcher"].package
        self.foreground = self.launcher_package
        self.shade_open = False
        self.focus: str | None = None  # rid of the focused field on the foreground page
        self.notifications: list[Notification] = []
        self._next_notification = 1
        self._toast: tuple[str, float] | None = None
        self._version = 0
        self._cache: dict[str, Any] = {}
        self.events: list[str] = []
        self.input_count = 0  # input events since the last reset: the clock and battery follow it
        self.rotation = 0  # quarter turns from the natural portrait orientation (1, 3: landscape)
        self._in_input = False
        self._shift = False  # the on-screen keyboard's one-shot Shift
        self._symbols = False  # the on-screen keyboard shows its symbols layer
        self._hscroll: dict[tuple[str, Any, str], int] = {}  # (package, route, rid) -> horizontal scroll offset

    # ------------------------------------------------------------ apps and system

    def app(self, key_or_package: str) -> App:
        app = self.by_key.get(key_or_package) or self.apps.get(key_or_package)
        if app is None:
            raise SimError(f"no app {key_or_package!r} on the virtual phone; it has {sorted(self.by_key)}")
        return app

    @property
    def current(self) -> App:
        return self.apps[self.foreground]

    def packages(self) -> list[str]:
        pkgs = sorted(self.apps) + [SYSTEMUI, LATIN_IME]
        if self.adb_keyboard:
            pkgs.append(ADB_KEYBOARD)
        return pkgs

    def focused_window(self) -> tuple[str, str]:
        with self.lock:
            if self.shade_open:
                return SYSTEMUI, ".NotificationShade"
            app = self.current
            page = self._page()
            return app.package, page.activity or app.activity

    def props(self) -> dict[str, str]:
        return {
            "ro.product.model": "Virtual Phone",
            "ro.product.manufacturer": "edgepilot",
            "ro.product.name": "edgepilot_virtual",
            "ro.product.device": "virtual",
            "ro.build.version.sdk": "34",
            "ro.build.version.release": "14",
            "ro.serialno": self.serial,
            "ro.sf.lcd_density": "420",
            "sys.boot_completed": "1",
        }

    def changed(self) -> None:
        self._version += 1
        self._cache.clear()

    def focus_cleared(self) -> None:
        self.focus = None

    # ------------------------------------------------------------ rotation

    @property
    def width(self) -> int:
        """The screen's width as the dump and the screenshot have it (rotation included)."""
        return WIDTH if self.rotation % 2 == 0 else HEIGHT

    @property
    def height(self) -> int:
        return HEIGHT if self.rotation % 2 == 0 else WIDTH

    @property
    def keyboard_h(self) -> int:
        """The on-screen keyboard's height: shorter in landscape, as real keyboards are."""
        return KEYBOARD_H if self.rotation % 2 == 0 else LANDSCAPE_KEYBOARD_H

    def rotate(self, rotation: int) -> None:
        """Turn the screen (``wm user-rotation lock N``, ``settings put system user_rotation N``): 0 portrait,
        1 landscape, 2 upside down, 3 landscape the other way. Lists keep their place; the page is laid out
        again for the new size.

        Raises:
            SimError: not 0 to 3.
        """
        if rotation not in (0, 1, 2, 3):
            raise SimError(f"rotation {rotation} is not one of 0, 1, 2, 3")
        with self.lock:
            self.rotation = rotation
            self.changed()

    # ------------------------------------------------------------ virtual clock and battery

    @property
    def minutes(self) -> int:
        """Minutes since midnight on the virtual clock: 9:41 after a reset, +1 every 3 inputs."""
        return (CLOCK_START + self.input_count // INPUTS_PER_MINUTE) % (24 * 60)

    @property
    def clock_text(self) -> str:
        """The status bar's clock, 12-hour without AM/PM, as phones show it ("9:42")."""
        hour, minute = divmod(self.minutes, 60)
        return f"{(hour - 1) % 12 + 1}:{minute:02d}"

    @property
    def battery_level(self) -> int:
        """The battery in percent: 87 after a reset, -1 every 10 inputs, never below 5."""
        return max(BATTERY_MIN, BATTERY_START - self.input_count // INPUTS_PER_PERCENT)

    def _input(self, event: str) -> bool:
        """Record one input event; False when it is part of another (a short swipe that is a tap)."""
        self.events.append(event)
        if self._in_input:
            return False
        self.input_count += 1
        return True

    def go_home(self) -> None:
        self.shade_open = False
        self.focus = None
        self.foreground = self.launcher_package
        self.current.reset()

    def toast(self, message: str) -> None:
        self._toast = (message, time.monotonic())

    def notify(self, package: str, title: str, text: str, open: Callable[[], None] | None = None) -> Notification:
        """Post a notification (it shows in the shade until opened or cleared)."""
        n = Notification(self._next_notification, package, title, text, open)
        self._next_notification += 1
        self.notifications.append(n)
        self.changed()
        return n

    def start_app(self, package: str, activity: str | None = None) -> None:
        """Bring an app to the front, keeping its state (like a launcher tap).

        Raises:
            SimError: no such package.
        """
        with self.lock:
            if package not in self.apps or not self.apps[package].launchable and package != self.launcher_package:
                raise SimError(f"no launchable activity for package {package!r}")
            self.shade_open = False
            self.focus = None
            self.foreground = package
            self.events.append(f"start {package}")
            self.changed()

    # ------------------------------------------------------------ input

    def tap(self, x: int, y: int) -> None:
        with self.lock:
            self._input(f"tap {x} {y}")
            target = self._hit(x, y)
            if target is not None:
                self._click(target)
            self.changed()

    def long_press(self, x: int, y: int, duration_ms: int = 800) -> None:
        with self.lock:
            self._input(f"long_press {x} {y}")
            target = self._hit(x, y, long=True)
            if target is not None:
                if target.on_long_click is not None:
                    target.on_long_click()
                else:
                    self._click(target)
            self.changed()

    def swipe(self, x1: int, y1: int, x2: int, y2: int, duration_ms: int = 300) -> None:
        with self.lock:
            self._input(f"swipe {x1} {y1} {x2} {y2}")
            dx, dy = x2 - x1, y2 - y1
            if abs(dx) < 30 and abs(dy) < 30:
                self._in_input = True  # one event, not two
                try:
                    if duration_ms >= 500:
                        self.long_press(x1, y1, duration_ms)
                    else:
                        self.tap(x1, y1)
                finally:
                    self._in_input = False
                return
            if not self.shade_open and y1 < STATUS_H + 40 and dy > 200 and abs(dy) > abs(dx):
                self.shade_open = True
                self.focus = None
            elif self.shade_open and dy < -200:
                self.shade_open = False
            elif not self.shade_open and abs(dy) > abs(dx):
                self._scroll(-dy)
            elif not self.shade_open:
                self._scroll_sideways(x1, y1, -dx)
            self.changed()

    def input_text(self, text: str) -> None:
        """Type with the soft keyboard: into the focused field, else nowhere."""
        with self.lock:
            self._input(f"text {text!r}")
            self._type_into_focus(text)
            self.changed()

    def keyevent(self, code: int) -> None:
        with self.lock:
            self._input(f"key {code}")
            self._key(code)
            self.changed()

    def _key(self, code: int) -> None:
        if code == KEY_HOME:
            self.go_home()
        elif code in (KEY_BACK, KEY_ESCAPE):
            if self.focus is not None:
                self.focus = None  # the first back hides the keyboard
            elif self.shade_open:
                self.shade_open = False
            elif not self.current.back():
                if self.foreground != self.launcher_package:
                    self.go_home()
        elif code == KEY_APP_SWITCH:
            self.go_home()
        elif code in (KEY_DEL, KEY_FORWARD_DEL):
            fld = self._focused_view()
            if fld is not None and fld.on_text is not None and code == KEY_DEL:
                fld.on_text(fld.text[:-1])
        elif code == KEY_ENTER:
            fld = self._focused_view()
            if fld is not None and fld.on_submit is not None:
                fld.on_submit()
        elif code == KEY_TAB:
            self._focus_next()
        elif code == KEY_SPACE:
            self._type_into_focus(" ")

    def broadcast(self, action: str, extras: dict[str, str]) -> str:
        """``am broadcast``: the ADB Keyboard's text input, when installed."""
        with self.lock:
            self._input(f"broadcast {action}")
            self.changed()  # the clock may have ticked
            if action in ("ADB_INPUT_TEXT", "ADB_INPUT_B64") and self.adb_keyboard:
                msg = extras.get("msg", "")
                if action == "ADB_INPUT_B64":
                    try:
                        msg = base64.b64decode(msg).decode("utf-8")
                    except (ValueError, UnicodeDecodeError):
                        return "Broadcast completed: result=0"
                if self._type_into_focus(msg):
                    self.changed()
                return "Broadcast completed: result=-1"
            return "Broadcast completed: result=0"

    # ------------------------------------------------------------ screen

    def _page(self) -> Page:
        return self.current.page(self.current.route)

    def windows(self) -> list[View]:
        """Lay out the current screen: status bar, app (or shade), keyboard when shown, navigation bar."""
        cached = self._cache.get("windows")
        if cached is not None:
            return cached
        wins = [self._status_bar()]
        if self.shade_open:
            wins.append(self._shade())
        else:
            app_window = self._app_window(self._page())
            wins.append(app_window)
            if self.keyboard_shown:  # after the app window: laying it out drops a focus that is gone
                wins.append(self._keyboard())
        wins.append(self._nav_bar())
        self._cache["windows"] = wins
        return wins

    @property
    def keyboard_shown(self) -> bool:
        return self.focus is not None and not self.shade_open

    @property
    def secure(self) -> bool:
        with self.lock:
            return not self.shade_open and self._page().secure

    def dump_xml(self) -> str:
        with self.lock:
            if "xml" not in self._cache:
                self._cache["xml"] = ui.dump_xml(self.windows(), rotation=self.rotation)
            return self._cache["xml"]

    def screencap_png(self) -> bytes:
        with self.lock:
            if "png" not in self._cache:
                img = ui.draw(self.windows(), size=(self.width, self.height), black=self.secure)
                self._cache["png"] = ui.encode_png(img)
            return self._cache["png"]

    def _status_bar(self) -> View:
        """The status bar: the virtual clock, one icon a pending notification, airplane, Wi-Fi, battery."""
        clock = ui.View(cls="android.widget.TextView", text=self.clock_text, rid="clock", size=36)
        clock.bounds = (0, 0, 220, STATUS_H)
        children: list[View] = [clock]
        x = 220
        for n in self.notifications[:MAX_NOTIFICATION_ICONS]:
            label = self.apps[n.package].label if n.package in self.apps else n.package
            icon = ui.View(cls="android.widget.ImageView", desc=f"{label} notification", rid="notification_icon",
                           style="sysicon", hint="notification")
            icon.bounds = (x, 8, x + 64, STATUS_H - 8)
            children.append(icon)
            x += 64
        if len(self.notifications) > MAX_NOTIFICATION_ICONS:
            more = ui.View(cls="android.widget.ImageView", rid="notification_more", style="sysicon", hint="more",
                           desc=f"{len(self.notifications) - MAX_NOTIFICATION_ICONS} more notifications")
            more.bounds = (x, 8, x + 64, STATUS_H - 8)
            children.append(more)
        settings = self.by_key["settings"].state
        right = self.width - 220
        if getattr(settings, "airplane_mode", False):
            plane = ui.View(cls="android.widget.ImageView", desc="Airplane mode.", rid="airplane",
                            style="sysicon", hint="airplane")
            plane.bounds = (right - 120, 8, right - 60, STATUS_H - 8)
            children.append(plane)
        online = bool(getattr(settings, "wifi", False) and getattr(settings, "wifi_connected", None))
        wifi = ui.View(cls="android.widget.ImageView", desc="Wifi signal full." if online else "No internet",
                       rid="wifi_signal", style="sysicon", hint="wifi" if online else "nowifi")
        wifi.bounds = (right - 60, 8, right, STATUS_H - 8)
        children.append(wifi)
        level = self.battery_level
        image = ui.View(cls="android.widget.ImageView", desc=f"Battery {level} percent.", rid="battery_image",
                        style="sysicon", hint="battery")
        image.bounds = (right, 8, right + 50, STATUS_H - 8)
        percent = ui.View(cls="android.widget.TextView", text=f"{level}%", rid="battery_percentage", size=32)
        percent.bounds = (right + 40, 0, self.width, STATUS_H)
        battery = ui.View(cls="android.widget.LinearLayout", rid="battery", children=[image, percent])
        battery.bounds = (right, 0, self.width, STATUS_H)
        children.append(battery)
        bar = ui.View(cls="android.widget.FrameLayout", rid="status_bar", children=children, style="statusbar",
                      desc="Status bar")
        bar.bounds = (0, 0, self.width, STATUS_H)
        _set_package(bar, SYSTEMUI)
        return bar

    def _keyboard(self) -> View:
        """The on-screen keyboard as Gboard exposes it: a window of rows of clickable keys.

        Letters carry their character as content-desc (uppercase while Shift is on),
        digits as text; Shift, Delete, Symbols, Space and the action key are named
        by their content-desc. Tapping a key types into the focused field.
        """
        top = self.height - NAV_H - self.keyboard_h
        row_h = (self.keyboard_h - 20) // 5
        rows = SYMBOL_ROWS if self._symbols else KEY_ROWS
        key_w = self.width // 10

        def key(desc: str, on_click: Callable[[], None], rid: str, width: int, *, text: str = "",
                glyph: str = "", selected: bool = False) -> View:
            return ui.View(cls="android.widget.FrameLayout", text=text, desc=desc, rid=rid, on_click=on_click,
                           style="key", hint=glyph, selected=selected, height=row_h, weight=float(width))

        def char_key(ch: str, r: int, c: int) -> View:
            shown = ch.upper() if self._shift and ch.isalpha() else ch
            if ch.isdigit():
                return key("", self._key_typer(ch), f"key_pos_{r}_{c}", key_w, text=ch)
            return key(shown, self._key_typer(ch), f"key_pos_{r}_{c}", key_w, glyph=shown)

        def key_row(keys: list[View], rid: str = "") -> View:
            row = ui.View(cls="android.widget.LinearLayout", rid=rid, layout="row", children=keys, height=row_h)
            return row

        digits = key_row([char_key(ch, 0, c) for c, ch in enumerate(rows[0])])
        first = key_row([char_key(ch, 1, c) for c, ch in enumerate(rows[1])])
        half = ui.View(cls="android.view.View", height=row_h, weight=key_w / 2)
        second = key_row([half, *[char_key(ch, 2, c) for c, ch in enumerate(rows[2])],
                          ui.View(cls="android.view.View", height=row_h, weight=key_w / 2)])
        shift = key("Shift", self._toggle_shift, "key_pos_shift", key_w * 3 // 2, glyph="^", selected=self._shift)
        delete = key("Delete", lambda: self._key(KEY_DEL), "key_pos_del", key_w * 3 // 2, glyph="<-")
        third = key_row([shift, *[char_key(ch, 3, c + 1) for c, ch in enumerate(rows[3])], delete])
        search = any(w in (self.focus or "") for w in ("search", "url", "query"))
        bottom = key_row([
            key("Letters" if self._symbols else "Symbols", self._toggle_symbols, "key_pos_switch_to_symbol",
                key_w * 3 // 2, glyph="ABC" if self._symbols else "?123"),
            key(",", self._key_typer(","), "key_pos_bottom_symbol_1", key_w, glyph=","),
            key("Space", lambda: self._type_key(" "), "key_pos_space", key_w * 5),
            key(".", self._key_typer("."), "key_pos_bottom_symbol_2", key_w, glyph="."),
            key("Search" if search else "Enter", lambda: self._key(KEY_ENTER), "key_pos_ime_action",
                key_w * 3 // 2, glyph="Go" if search else "->"),
        ])
        area = ui.View(cls="android.widget.LinearLayout", rid="input_area",
                       children=[digits, first, second, third, bottom])
        ui.layout(area, 0, top + 10, self.width)
        holder = ui.View(cls="android.widget.FrameLayout", rid="keyboard_holder", children=[area])
        holder.bounds = (0, top, self.width, self.height - NAV_H)
        window = ui.View(cls="android.widget.FrameLayout", children=[holder], style="keyboard")
        window.bounds = (0, top, self.width, self.height - NAV_H)
        _set_package(window, LATIN_IME)
        return window

    def _key_typer(self, ch: str) -> Callable[[], None]:
        return lambda: self._type_key(ch)

    def _type_key(self, ch: str) -> None:
        if self._shift and ch.isalpha():
            ch = ch.upper()
            self._shift = False
        self._type_into_focus(ch)

    def _toggle_shift(self) -> None:
        self._shift = not self._shift

    def _toggle_symbols(self) -> None:
        self._symbols = not self._symbols
        self._shift = False

    def _nav_bar(self) -> View:
        back = ui.View(cls="android.widget.ImageView", desc="Back", rid="back", on_click=lambda: self._key(KEY_BACK),
                       height=NAV_H, hint="<", style="icon")
        home = ui.View(cls="android.widget.ImageView", desc="Home", rid="home_button",
                       on_click=lambda: self._key(KEY_HOME), height=NAV_H, hint="O", style="icon")
        bar = ui.View(cls="android.widget.FrameLayout", rid="navigation_bar", layout="row", children=[back, home],
                      height=NAV_H, style="navbar")
        ui.layout(bar, 0, self.height - NAV_H, self.width)
        _set_package(bar, SYSTEMUI)
        return bar

    def _app_window(self, page: Page) -> View:
        app = self.current
        bottom_limit = self.height - NAV_H - (self.keyboard_h if self.keyboard_shown else 0)
        title_children: list[View] = []
        if page.back and len(app.stack) > 1:
            title_children.append(ui.View(cls="android.widget.ImageButton", desc="Navigate up", rid="up",
                                          on_click=app.pop, height=TITLE_H, hint="<", style="icon", weight=0.0))
        title_children.append(ui.View(cls="android.widget.TextView", text=page.title, rid="toolbar_title",
                                       size=58, bold=True, height=TITLE_H, weight=5.0))
        for action in page.actions:
            action.weight = 0.0
            title_children.append(action)
        title = ui.View(cls="android.view.ViewGroup", rid="toolbar", layout="row", children=title_children,
                        height=TITLE_H, style="titlebar")
        ui.layout(title, 0, STATUS_H, self.width)

        for view in page.body:
            for v in view.walk():
                if v.layout == "hscroll":
                    v.scroll_x = self._hscroll.get((app.package, app.route, v.rid), 0)
        bottom_h = sum(v.height or 150 for v in page.bottom)
        body_top, body_bottom = STATUS_H + TITLE_H, bottom_limit - bottom_h
        body = self._scroll_body(app, page.body, body_top, body_bottom)
        children = [title, body]
        y = body_bottom
        for v in page.bottom:
            y += ui.layout(v, 0, y, self.width)
            children.append(v)
        if page.fab is not None:
            fab = page.fab
            fab.style = "fab"
            ui.layout(fab, 0, 0, 190)
            fab.bounds = (self.width - 240, body_bottom - 240, self.width - 50, body_bottom - 50)
            children.append(fab)
        toast = self._toast_view(body_bottom)
        if toast is not None:
            children.append(toast)
        root = ui.View(cls="android.widget.FrameLayout", children=children, style="plain")
        root.bounds = (0, STATUS_H, self.width, bottom_limit)
        _set_package(root, app.package)
        self._apply_focus(root)
        return root

    def _scroll_body(self, app: App, views: list[View], top: int, bottom: int) -> View:
        offset = app.scroll.get(app.route, 0)
        content = 0
        focused: tuple[int, int] | None = None
        for v in views:
            content += ui.layout(v, 0, content, self.width)
            for f in v.walk():
                if self.focus is not None and f.editable and f.rid == self.focus:
                    focused = (f.bounds[1], f.bounds[3])
        viewport = max(1, bottom - top)
        max_offset = max(0, content - viewport)
        if focused is not None:  # adjustResize: keep the focused field above the keyboard
            offset = min(max(offset, focused[1] - viewport), focused[0])
        offset = min(max(0, offset), max_offset)
        app.scroll[app.route] = offset
        y = top - offset
        visible = []
        for v in views:
            h = ui.layout(v, 0, y, self.width)
            if y + h > top and y < bottom:
                _clip(v, top, bottom)
                visible.append(v)
            y += h
        container = ui.View(cls="androidx.recyclerview.widget.RecyclerView" if max_offset else "android.widget.LinearLayout",
                            rid="list", children=visible, style="plain")
        container.bounds = (0, top, self.width, bottom)
        container.scrollable = max_offset > 0
        return container

    def _scroll_sideways(self, x: int, y: int, delta: int) -> None:
        """A horizontal swipe scrolls the horizontally scrolling row under its start, if any."""
        for win in self.windows():
            for v in win.walk():
                l, t, r, b = v.bounds
                if v.layout == "hscroll" and l <= x < r and t <= y < b:
                    key = (self.current.package, self.current.route, v.rid)
                    most = max(0, ui.hscroll_extent(v) - (r - l))
                    self._hscroll[key] = min(max(0, self._hscroll.get(key, 0) + delta), most)
                    return

    def _scroll(self, delta: int) -> None:
        app = self.current
        app.scroll[app.route] = app.scroll.get(app.route, 0) + delta

    def _toast_view(self, bottom: int) -> View | None:
        if self._toast is None:
            return None
        message, when = self._toast
        if time.monotonic() - when > 3.0:
            self._toast = None
            return None
        v = ui.View(cls="android.widget.Toast", text=message, size=40, height=120, style="muted", align="center")
        ui.layout(v, 140, bottom - 180, self.width - 280)
        return v

    def _shade(self) -> View:
        settings = self.by_key["settings"]
        tiles = []
        for label, attr in (("Wi-Fi", "wifi"), ("Bluetooth", "bluetooth"), ("Airplane mode", "airplane_mode")):
            on = bool(getattr(settings.state, attr))
            tiles.append(ui.View(cls="android.widget.Switch", text=label, desc=label, rid=f"tile_{attr}",
                                 checkable=True, checked=on, on_click=_toggler(settings, attr), height=180,
                                 style="tile", align="center", size=38))
        children: list[View] = [ui.row(*tiles, height=200)]
        children.append(ui.header("Notifications" if self.notifications else "No notifications"))
        for n in self.notifications:
            children.append(ui.item(n.title, self._open_notification(n), subtitle=n.text, rid="notification",
                                    desc=self.apps[n.package].label if n.package in self.apps else n.package))
        if self.notifications:
            children.append(ui.button("Clear all", self._clear_notifications, rid="clear_all"))
        shade = ui.View(cls="android.widget.FrameLayout", rid="notification_shade", children=children,
                        style="scrim")
        ui.layout(shade, 0, STATUS_H, self.width)
        shade.bounds = (0, STATUS_H, self.width, self.height - NAV_H)
        _set_package(shade, SYSTEMUI)
        return shade

    def _open_notification(self, n: Notification) -> Callable[[], None]:
        def open_it() -> None:
            self.notifications = [m for m in self.notifications if m.id != n.id]
            self.shade_open = False
            if n.package in self.apps:
                self.foreground = n.package
            if n.open is not None:
                n.open()

        return open_it

    def _clear_notifications(self) -> None:
        self.notifications = []
        self.shade_open = False

    # ------------------------------------------------------------ hit testing and focus

    def _hit(self, x: int, y: int, long: bool = False) -> View | None:
        for win in reversed(self.windows()):
            best = None
            for v in win.walk():
                l, t, r, b = v.bounds
                if l <= x < r and t <= y < b and v.enabled and (v.clickable or (long and v.on_long_click)):
                    best = v  # later in the walk = deeper or drawn on top
            if best is not None:
                return best
            l, t, r, b = win.bounds
            if l <= x < r and t <= y < b:
                return None
        return None

    def _click(self, v: View) -> None:
        if v.editable:
            self.focus = v.rid
            return
        if v.on_click is not None:
            v.on_click()

    def _field_views(self) -> list[View]:
        return [v for w in self.windows() for v in w.walk() if v.editable]

    def _focused_view(self) -> View | None:
        if self.focus is None:
            return None
        for v in self._field_views():
            if v.rid == self.focus:
                return v
        return None

    def _type_into_focus(self, text: str) -> bool:
        """Append to the focused field, as the soft keyboard does; False when nothing has focus."""
        fld = self._focused_view()
        if fld is None or fld.on_text is None:
            return False
        fld.on_text(fld.text + text)
        return True

    def _focus_next(self) -> None:
        fields = self._field_views()
        if not fields:
            return
        rids = [f.rid for f in fields]
        i = rids.index(self.focus) + 1 if self.focus in rids else 0
        self.focus = rids[i % len(rids)]

    def _apply_focus(self, root: View) -> None:
        if self.focus is None:
            return
        found = False
        for v in root.walk():
            if v.editable and v.rid == self.focus:
                v.focused = True
                found = True
        if not found:
            self.focus = None

    # ------------------------------------------------------------ state for tasks

    def snapshot(self) -> dict[str, Any]:
        """Every app's state plus the system's, as plain JSON data (for success checks)."""
        with self.lock:
            data: dict[str, Any] = {key: app.snapshot() for key, app in self.by_key.items()}
            data["system"] = {
                "foreground": self.foreground,
                "screen": self.current.route.name,
                "shade_open": self.shade_open,
                "keyboard_shown": self.keyboard_shown,
                "notifications": [{"package": n.package, "title": n.title, "text": n.text}
                                  for n in self.notifications],
            }
            return copy.deepcopy(data)

    def reset(self) -> None:
        """Back to the factory state: every app fresh, home screen, no notifications."""
        with self.lock:
            for app in self.apps.values():
                app.state = app.State()
                app.reset()
            self.foreground = self.launcher_package
            self.shade_open = False
            self.focus = None
            self.notifications = []
            self._next_notification = 1
            self._toast = None
            self.files.clear()
            self.events.clear()
            self.input_count = 0
            self.rotation = 0
            self._shift = self._symbols = False
            self._hscroll.clear()
            self.changed()


def _toggler(app: App, attr: str) -> Callable[[], None]:
    def flip() -> None:
        setattr(app.state, attr, not getattr(app.state, attr))

    return flip


def _set_package(view: View, package: str) -> None:
    for v in view.walk():
        v.package = package


def _clip(view: View, top: int, bottom: int) -> None:
    for v in view.walk():
        l, t, r, b = v.bounds
        v.bounds = (l, max(t, top), r, max(max(t, top), min(b, bottom)))
