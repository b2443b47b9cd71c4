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
from dataclasses import dataclass
from typing import Any, Callable

from edgepilot.errors import SimError
from edgepilot.sim import ui
from edgepilot.sim.apps import APP_CLASSES
from edgepilot.sim.apps.base import App
from edgepilot.sim.ui import HEIGHT, KEYBOARD_H, NAV_H, STATUS_H, TITLE_H, WIDTH, Page, View

SYSTEMUI = "com.android.systemui"
ADB_KEYBOARD = "com.android.adbkeyboard"

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
        pkgs = sorted(self.apps) + [SYSTEMUI]
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
            self.events.append(f"tap {x} {y}")
            target = self._hit(x, y)
            if target is not None:
                self._click(target)
            self.changed()

    def long_press(self, x: int, y: int, duration_ms: int = 800) -> None:
        with self.lock:
            self.events.append(f"long_press {x} {y}")
            target = self._hit(x, y, long=True)
            if target is not None:
                if target.on_long_click is not None:
                    target.on_long_click()
                else:
                    self._click(target)
            self.changed()

    def swipe(self, x1: int, y1: int, x2: int, y2: int, duration_ms: int = 300) -> None:
        with self.lock:
            self.events.append(f"swipe {x1} {y1} {x2} {y2}")
            dx, dy = x2 - x1, y2 - y1
            if abs(dx) < 30 and abs(dy) < 30:
                if duration_ms >= 500:
                    self.long_press(x1, y1, duration_ms)
                else:
                    self.tap(x1, y1)
                return
            if not self.shade_open and y1 < STATUS_H + 40 and dy > 200 and abs(dy) > abs(dx):
                self.shade_open = True
                self.focus = None
            elif self.shade_open and dy < -200:
                self.shade_open = False
            elif not self.shade_open and abs(dy) > abs(dx):
                self._scroll(-dy)
            self.changed()

    def input_text(self, text: str) -> None:
        """Type with the soft keyboard: into the focused field, else nowhere."""
        with self.lock:
            self.events.append(f"text {text!r}")
            self._type_into_focus(text)
            self.changed()

    def keyevent(self, code: int) -> None:
        with self.lock:
            self.events.append(f"key {code}")
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
        """Lay out the current screen: status bar, app (or shade), navigation bar."""
        cached = self._cache.get("windows")
        if cached is not None:
            return cached
        wins = [self._status_bar()]
        if self.shade_open:
            wins.append(self._shade())
        else:
            wins.append(self._app_window(self._page()))
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
                self._cache["xml"] = ui.dump_xml(self.windows())
            return self._cache["xml"]

    def screencap_png(self) -> bytes:
        with self.lock:
            if "png" not in self._cache:
                img = ui.draw(self.windows(), keyboard=self.keyboard_shown, black=self.secure)
                self._cache["png"] = ui.encode_png(img)
            return self._cache["png"]

    def _status_bar(self) -> View:
        clock = ui.View(cls="android.widget.TextView", text="9:41", rid="clock", size=36, height=STATUS_H, weight=1)
        icons = []
        if self.notifications:
            icons.append(ui.View(cls="android.widget.TextView", text=f"{len(self.notifications)} new",
                                 rid="notification_count", size=32, height=STATUS_H, weight=1))
        bar = ui.View(cls="android.widget.FrameLayout", rid="status_bar", layout="row", children=[clock, *icons],
                      height=STATUS_H, style="statusbar", desc="Status bar")
        ui.layout(bar, 0, 0, WIDTH)
        _set_package(bar, SYSTEMUI)
        return bar

    def _nav_bar(self) -> View:
        back = ui.View(cls="android.widget.ImageView", desc="Back", rid="back", on_click=lambda: self._key(KEY_BACK),
                       height=NAV_H, hint="<", style="icon")
        home = ui.View(cls="android.widget.ImageView", desc="Home", rid="home_button",
                       on_click=lambda: self._key(KEY_HOME), height=NAV_H, hint="O", style="icon")
        bar = ui.View(cls="android.widget.FrameLayout", rid="navigation_bar", layout="row", children=[back, home],
                      height=NAV_H, style="navbar")
        ui.layout(bar, 0, HEIGHT - NAV_H, WIDTH)
        _set_package(bar, SYSTEMUI)
        return bar

    def _app_window(self, page: Page) -> View:
        app = self.current
        bottom_limit = HEIGHT - NAV_H - (KEYBOARD_H if self.keyboard_shown else 0)
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
        ui.layout(title, 0, STATUS_H, WIDTH)

        bottom_h = sum(v.height or 150 for v in page.bottom)
        body_top, body_bottom = STATUS_H + TITLE_H, bottom_limit - bottom_h
        body = self._scroll_body(app, page.body, body_top, body_bottom)
        children = [title, body]
        y = body_bottom
        for v in page.bottom:
            y += ui.layout(v, 0, y, WIDTH)
            children.append(v)
        if page.fab is not None:
            fab = page.fab
            fab.style = "fab"
            ui.layout(fab, 0, 0, 190)
            fab.bounds = (WIDTH - 240, body_bottom - 240, WIDTH - 50, body_bottom - 50)
            children.append(fab)
        toast = self._toast_view(body_bottom)
        if toast is not None:
            children.append(toast)
        root = ui.View(cls="android.widget.FrameLayout", children=children, style="plain")
        root.bounds = (0, STATUS_H, WIDTH, bottom_limit)
        _set_package(root, app.package)
        self._apply_focus(root)
        return root

    def _scroll_body(self, app: App, views: list[View], top: int, bottom: int) -> View:
        offset = app.scroll.get(app.route, 0)
        content = 0
        focused: tuple[int, int] | None = None
        for v in views:
            content += ui.layout(v, 0, content, WIDTH)
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
            h = ui.layout(v, 0, y, WIDTH)
            if y + h > top and y < bottom:
                _clip(v, top, bottom)
                visible.append(v)
            y += h
        container = ui.View(cls="androidx.recyclerview.widget.RecyclerView" if max_offset else "android.widget.LinearLayout",
                            rid="list", children=visible, style="plain")
        container.bounds = (0, top, WIDTH, bottom)
        container.scrollable = max_offset > 0
        return container

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
        ui.layout(v, 140, bottom - 180, WIDTH - 280)
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
        ui.layout(shade, 0, STATUS_H, WIDTH)
        shade.bounds = (0, STATUS_H, WIDTH, HEIGHT - NAV_H)
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
        if self.keyboard_shown and HEIGHT - NAV_H - KEYBOARD_H <= y < HEIGHT - NAV_H:
            return None  # a tap on the keyboard image; text comes through `input text`
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
            self._toast = None
            self.files.clear()
            self.events.clear()
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
