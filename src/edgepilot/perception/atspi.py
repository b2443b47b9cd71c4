"""The Linux accessibility tree (AT-SPI 2), read over D-Bus with jeepney.

::

    session bus ── org.a11y.Bus.GetAddress ──▶ accessibility bus (at-spi-bus-launcher)
                                                 │ org.a11y.atspi.Registry: the desktop's applications
                                                 ▼
                          each application's objects: org.a11y.atspi.Accessible (role, state, name,
                          children), org.a11y.atspi.Component (screen extents), org.a11y.atspi.Text

jeepney is pure Python, so this works from any virtual environment (Debian's
``python3-pyatspi`` exists only for the system Python). The walk is breadth
first and pipelined: every question about one level of the tree is sent
before the first answer is read, so a level costs about one round trip
instead of one per question.

The walk is bounded (:class:`Limits`: nodes, depth, children per node, text
length, a deadline for the whole read, a timeout for an application that does
not answer) and reads only what is on screen: top-level windows that are
showing, of the application whose window is active (all showing windows when
none is, e.g. on an X server without a window manager before anything was
clicked), and within them only subtrees in the ``SHOWING`` state (a closed
menu's items are not read).

Bounds are the toolkit's screen coordinates; :class:`~edgepilot.controllers.desktop.DesktopDevice`
maps them onto its screenshot. A GTK application started with ``GDK_SCALE=2``
reports logical pixels (half the screenshot's); the device's ``a11y_scale``
corrects that.

The same seam (:class:`AccessibilityReader`, :class:`A11yTree`) has two small
optional backends that cannot be tested here: :mod:`edgepilot.perception.uia`
(Windows UI Automation) and :mod:`edgepilot.perception.ax` (macOS).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from edgepilot.errors import PerceptionError
from edgepilot.perception.types import Bounds, UINode

ACCESSIBLE = "org.a11y.atspi.Accessible"
COMPONENT = "org.a11y.atspi.Component"
TEXT = "org.a11y.atspi.Text"
VALUE = "org.a11y.atspi.Value"
ACTION = "org.a11y.atspi.Action"
EDITABLE_TEXT = "org.a11y.atspi.EditableText"
PROPERTIES = "org.freedesktop.DBus.Properties"
REGISTRY: Ref = ("org.a11y.atspi.Registry", "/org/a11y/atspi/accessible/root")
SCREEN_COORDS = 0  # ATSPI_COORD_TYPE_SCREEN

# AtspiStateType bit numbers (at-spi2-core atspi-constants.h); GetState answers two 32-bit words
ACTIVE, CHECKED, EDITABLE, ENABLED, EXPANDED, FOCUSABLE, FOCUSED = 1, 4, 7, 8, 10, 11, 12
ICONIFIED, PRESSED, SELECTABLE, SELECTED, SENSITIVE, SHOWING, VISIBLE = 15, 20, 22, 23, 24, 25, 30
CHECKABLE = 41

ROLE_CLASSES: dict[str, str] = {
    "push button": "Button", "push button menu": "Button", "toggle button": "ToggleButton",
    "check box": "CheckBox", "radio button": "RadioButton", "switch": "Switch",
    "menu item": "MenuItem", "check menu item": "CheckMenuItem", "radio menu item": "RadioMenuItem",
    "tearoff menu item": "MenuItem", "menu": "Menu", "menu bar": "MenuBar", "popup menu": "Menu",
    "combo box": "ComboBox", "link": "Link", "page tab": "Tab", "page tab list": "TabList",
    "list": "List", "list box": "List", "list item": "ListItem", "table": "Table", "tree table": "Table",
    "tree": "Tree", "tree item": "TreeItem", "table cell": "Cell", "table row": "Row",
    "table column header": "ColumnHeader", "table row header": "RowHeader", "column header": "ColumnHeader",
    "scroll pane": "ScrollPane", "scroll bar": "ScrollBar", "slider": "Slider", "spin button": "SpinButton",
    "progress bar": "ProgressBar", "level bar": "ProgressBar",
    "label": "Text", "static": "Text", "caption": "Text", "paragraph": "Text", "heading": "Heading",
    "text": "Text", "entry": "EditText", "password text": "EditText",
    "document frame": "Document", "document web": "Document", "document text": "Document",
    "frame": "Window", "window": "Window", "dialog": "Dialog", "alert": "Alert", "file chooser": "FileChooser",
    "color chooser": "ColorChooser", "font chooser": "FontChooser",
    "tool bar": "ToolBar", "status bar": "StatusBar", "icon": "Icon", "image": "Image", "separator": "Separator",
    "tool tip": "ToolTip", "panel": "Panel", "filler": "Panel", "section": "Panel", "grouping": "Group",
    "notification": "Notification", "info bar": "InfoBar", "terminal": "Terminal",
}
"""AT-SPI role names (``GetRoleName``, never localized) mapped to the class names a model reads."""

CLICK_ROLES = frozenset({
    "push button", "push button menu", "toggle button", "check box", "radio button", "switch", "menu item",
    "check menu item", "radio menu item", "tearoff menu item", "menu", "combo box", "link", "page tab",
    "list item", "tree item", "table cell", "icon", "spin button", "slider",
})
UNNAMED_INERT = frozenset({"table cell", "icon", "list item", "tree item", "image"})
CHECK_ROLES = frozenset({"check box", "radio button", "check menu item", "radio menu item", "switch"})
CONTAINER_ROLES = frozenset({
    "separator",
    "application", "frame", "window", "dialog", "alert", "file chooser", "panel", "filler", "section", "grouping",
    "scroll pane", "menu bar", "tool bar", "status bar", "page tab list", "list", "list box", "table",
    "tree table", "tree", "viewport", "split pane", "layered pane", "root pane", "glass pane", "desktop frame",
})
TOP_LEVEL_ROLES = frozenset({"frame", "window", "dialog", "alert", "file chooser", "color chooser", "font chooser"})
TEXT_ROLES = frozenset({"text", "entry", "password text", "label", "static", "caption", "paragraph", "heading",
                        "document text", "terminal"})
VALUE_ROLES = frozenset({"slider", "spin button", "progress bar", "level bar", "scroll bar"})

Ref = tuple[str, str]  # (bus name, object path) of one accessible object


@dataclass(frozen=True)
class Limits:
    """Bounds of one read, so that a huge or hung application cannot stall the agent."""

    max_nodes: int = 2000
    max_depth: int = 48
    max_children: int = 400  # per node: a table with 100,000 rows lists its first 400
    max_text: int = 2000  # characters of an editable text's content
    timeout: float = 4.0  # seconds for the whole read; what is left is cut (``A11yTree.truncated``)
    call_timeout: float = 1.0  # seconds an application has to answer; then it is skipped for this read


@dataclass(frozen=True)
class Window:
    """A top-level window on screen."""

    app: str
    title: str
    role: str
    bounds: Bounds
    active: bool


@dataclass(frozen=True)
class A11yTree:
    """One read of the accessibility tree.

    ``nodes`` are in document order with parent indices (like an Android
    dump), their bounds in the toolkit's screen coordinates. ``app`` and
    ``window`` name the active application and window ("" when nothing is
    active); ``windows`` lists every showing top-level window that was
    considered; ``truncated`` says a limit cut the walk; ``skipped`` names
    applications that did not answer in time.
    """

    nodes: tuple[UINode, ...]
    app: str = ""  # the active application (or the only one on screen)
    window: str = ""
    windows: tuple[Window, ...] = ()
    truncated: bool = False
    skipped: tuple[str, ...] = ()
    ms: float = 0.0


class AccessibilityReader(Protocol):
    """The seam: a desktop's accessibility tree, read on demand (AT-SPI, UI Automation, AX)."""

    def read(self) -> A11yTree:
        """Read what is on screen now.

        Raises:
            PerceptionError: the accessibility service cannot be reached.
        """
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- raw answers to UINodes


@dataclass
class RawNode:
    """What one accessible object answered; ``None`` fields were not answered (or made no sense)."""

    role: str = ""
    name: str = ""
    description: str = ""
    states: int = 0
    interfaces: frozenset[str] = frozenset()
    extents: tuple[int, int, int, int] | None = None
    child_count: int = 0
    accessible_id: str = ""
    text: str | None = None
    value: float | None = None
    children: list[Ref] = field(default_factory=list)

    def has(self, state: int) -> bool:
        return bool(self.states >> state & 1)


def bounds_of(extents: tuple[int, int, int, int] | None) -> Bounds:
    """Screen bounds from ``GetExtents``' (x, y, width, height); nonsense (off-screen markers, negatives) is empty."""
    if extents is None:
        return Bounds(left=0, top=0, right=0, bottom=0)
    x, y, w, h = extents
    if w <= 0 or h <= 0 or not (-100_000 < x < 100_000 and -100_000 < y < 100_000) or w > 100_000 or h > 100_000:
        return Bounds(left=0, top=0, right=0, bottom=0)
    return Bounds(left=x, top=y, right=x + w, bottom=y + h)


def class_for(raw: RawNode) -> str:
    """The class name a model reads for an accessible object (``EditText`` for anything editable)."""
    if raw.has(EDITABLE) and (EDITABLE_TEXT in raw.interfaces or raw.role in ("text", "entry", "password text")):
        return "EditText"
    return ROLE_CLASSES.get(raw.role) or "".join(w.capitalize() for w in raw.role.split()) or "View"


def to_node(raw: RawNode, *, depth: int, parent: int | None, app: str) -> UINode:
    """One :class:`UINode` from an object's answers: role → class, states → flags, name and text → labels."""
    cls = class_for(raw)
    editable = cls == "EditText"
    password = raw.role == "password text"
    name = " ".join(raw.name.split())
    description = " ".join(raw.description.split())
    content = (raw.text or "").replace("\u00a0", " ").replace("\ufffc", "")
    if editable or (raw.role in TEXT_ROLES and not name):
        text, desc = ("" if password else content), name
    else:
        text, desc = name, ""
    if raw.value is not None and not text and raw.role in VALUE_ROLES:
        text = f"{raw.value:g}"
    if description and description not in (text, desc):
        desc = f"{desc} · {description}" if desc else description
    checkable = raw.role in CHECK_ROLES or raw.has(CHECKABLE) or (
        raw.role == "toggle button" and (raw.has(CHECKED) or raw.has(PRESSED)))
    clickable = raw.role in CLICK_ROLES or editable or (ACTION in raw.interfaces and raw.role not in CONTAINER_ROLES)
    if raw.role in UNNAMED_INERT and not (text or desc):
        clickable = False  # a table's empty cells, an icon without a name: nothing a model could pick on purpose
    if raw.role in ("panel", "filler"):
        text = ""  # layout boxes carry developers' widget names ("Browse Header Stack"), not what the user sees
    return UINode(
        bounds=bounds_of(raw.extents), text=text, content_desc=desc, resource_id=raw.accessible_id[:200],
        class_name=cls, package=app, clickable=clickable, focusable=raw.has(FOCUSABLE), focused=raw.has(FOCUSED),
        checkable=checkable, checked=checkable and (raw.has(CHECKED) or raw.has(PRESSED)),
        enabled=raw.has(ENABLED) or raw.has(SENSITIVE), scrollable=raw.role == "scroll pane",
        selected=raw.has(SELECTED), password=password, depth=depth, parent=parent,
    )


# ---------------------------------------------------------------- the bus


class _Failed(NamedTuple):
    reason: str


class _Call(NamedTuple):
    ref: Ref
    interface: str
    method: str
    signature: str | None = None
    body: tuple = ()


class _Bus:
    """A connection to the accessibility bus that pipelines method calls."""

    CHUNK = 256  # calls in flight at once

    def __init__(self, address: str, call_timeout: float) -> None:
        from jeepney.io.blocking import open_dbus_connection

        try:
            self.conn = open_dbus_connection(bus=address)
        except (OSError, ValueError, KeyError) as exc:
            raise PerceptionError(f"cannot connect to the accessibility bus at {address} ({exc}); "
                                  "is at-spi-bus-launcher still running?") from exc
        self.call_timeout = call_timeout
        self.silent: set[str] = set()  # applications that did not answer in time, skipped from then on

    def close(self) -> None:
        self.conn.close()

    def many(self, calls: Sequence[_Call], deadline: float) -> list[Any]:
        """Answer every call: its reply body, or :class:`_Failed` (error reply, no answer, past the deadline)."""
        out: list[Any] = [_Failed("not asked")] * len(calls)
        for start in range(0, len(calls), self.CHUNK):
            self._chunk(calls, range(start, min(start + self.CHUNK, len(calls))), out, deadline)
        return out

    def _chunk(self, calls: Sequence[_Call], indices: range, out: list[Any], deadline: float) -> None:
        from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call

        pending: dict[int, int] = {}
        data = bytearray()
        for i in indices:
            call = calls[i]
            if call.ref[0] in self.silent:
                out[i] = _Failed(f"{call.ref[0]} did not answer")
                continue
            address = DBusAddress(call.ref[1], bus_name=call.ref[0], interface=call.interface)
            serial = next(self.conn.outgoing_serial)
            data += new_method_call(address, call.method, call.signature, call.body).serialise(serial=serial)
            pending[serial] = i
        try:
            self.conn.sock.sendall(data)  # one write per chunk: a syscall per message costs more than the rest
        except OSError as exc:
            raise PerceptionError(f"the accessibility bus went away ({exc}); is at-spi-bus-launcher running?") from exc
        while pending:
            wait = min(self.call_timeout, deadline - time.perf_counter())
            try:
                msg = self.conn.receive(timeout=max(wait, 0.0))
            except TimeoutError:
                for i in pending.values():  # whoever still owes an answer is skipped for the rest of the read
                    self.silent.add(calls[i].ref[0])
                    out[i] = _Failed("no answer in time")
                return
            except OSError as exc:
                raise PerceptionError(f"the accessibility bus went away ({exc}); is at-spi-bus-launcher running?") \
                    from exc
            i = pending.pop(msg.header.fields.get(HeaderFields.reply_serial, -1), -1)
            if i < 0:
                continue  # a signal, or a late answer to an earlier read
            if msg.header.message_type == MessageType.error:
                out[i] = _Failed(str(msg.body[0])[:200] if msg.body else "error")
            else:
                out[i] = msg.body


def bus_address(*, session_bus: str | None = None, display: str | None = None, timeout: float = 2.0) -> str:
    """Find the accessibility bus, the way libatspi does.

    In order: ``$AT_SPI_BUS_ADDRESS``; ``org.a11y.Bus.GetAddress`` on the session
    bus (``session_bus``, else ``$DBUS_SESSION_BUS_ADDRESS``; D-Bus starts
    at-spi-bus-launcher when it is installed); the ``AT_SPI_BUS`` property of
    the X display's root window.

    Raises:
        PerceptionError: none of them gives an address; the message says what to start.
    """
    if os.environ.get("AT_SPI_BUS_ADDRESS"):
        return os.environ["AT_SPI_BUS_ADDRESS"]
    problems = []
    session = session_bus or os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if session:
        try:
            return a11y_bus_from_session(session, timeout)
        except (OSError, ValueError, TimeoutError, PerceptionError) as exc:
            problems.append(f"session bus: {exc}")
    else:
        problems.append("no session bus (DBUS_SESSION_BUS_ADDRESS is not set)")
    try:
        found = _root_window_property(display)
    except Exception as exc:  # noqa: BLE001 - python-xlib raises many unrelated types for a missing display
        found, problems = None, [*problems, f"X display: {exc}"]
    if found:
        return found
    raise PerceptionError(
        "no accessibility bus (" + "; ".join(problems) + "). Start a session bus and the AT-SPI bus: "
        "`eval $(dbus-launch --sh-syntax)` and `/usr/libexec/at-spi-bus-launcher --launch-immediately &` "
        "(Debian package at-spi2-core), then start applications with GTK_MODULES=gail:atk-bridge")


def a11y_bus_from_session(address: str, timeout: float = 2.0) -> str:
    """Ask a session bus for the accessibility bus (``org.a11y.Bus.GetAddress``).

    Raises:
        PerceptionError: org.a11y.Bus is not there.
        OSError, TimeoutError: the session bus cannot be reached.
    """
    from jeepney import DBusAddress, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    conn = open_dbus_connection(bus=address, auth_timeout=timeout)
    try:
        bus = DBusAddress("/org/a11y/bus", bus_name="org.a11y.Bus", interface="org.a11y.Bus")
        reply = conn.send_and_get_reply(new_method_call(bus, "GetAddress"), timeout=timeout)
    finally:
        conn.close()
    if reply.header.message_type == MessageType.error or not reply.body or not reply.body[0]:
        raise PerceptionError(f"org.a11y.Bus is not on the session bus ({reply.body[0] if reply.body else '?'}); "
                              "install at-spi2-core")
    return str(reply.body[0])


def _root_window_property(display: str | None) -> str | None:
    from Xlib import X
    from Xlib.display import Display

    if not (display or os.environ.get("DISPLAY")):
        raise PerceptionError("DISPLAY is not set")
    conn = Display(display)
    try:
        atom = conn.intern_atom("AT_SPI_BUS", only_if_exists=True)
        if not atom:
            return None
        prop = conn.screen().root.get_full_property(atom, X.AnyPropertyType)
        return bytes(prop.value).decode("utf-8", "replace").strip("\0") if prop and prop.value else None
    finally:
        conn.close()


# ---------------------------------------------------------------- the walk


def _closed_menu(raw: RawNode, parent_role: str) -> bool:
    """A menu of a menu bar (or a submenu) that is not open: its items are not on screen, so not asked about.

    GTK reports such a menu as showing and its items as not showing; asking
    each item whether it shows is most of the cost of reading a menu bar.
    """
    return raw.role == "menu" and parent_role in ("menu bar", "menu") and not (
        raw.has(SELECTED) or raw.has(EXPANDED))


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _variant(props: dict, key: str) -> Any:
    """A value out of a ``GetAll`` answer (jeepney gives variants as (signature, value))."""
    value = props.get(key)
    return value[1] if isinstance(value, tuple) and len(value) == 2 else None


def _states(body: Any) -> int:
    words = body[0] if isinstance(body, tuple) and body else None
    if not isinstance(words, list) or not all(isinstance(w, int) for w in words):
        return 0
    return sum((w & 0xFFFFFFFF) << (32 * i) for i, w in enumerate(words[:2]))


def _refs(body: Any, limit: int) -> list[Ref]:
    items = body[0] if isinstance(body, tuple) and body else None
    if not isinstance(items, list):
        return []
    return [(r[0], r[1]) for r in items[:limit]
            if isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], str) and isinstance(r[1], str)
            and r[0] and r[1] != "/org/a11y/atspi/null"]


def _extents(body: Any) -> tuple[int, int, int, int] | None:
    box = body[0] if isinstance(body, tuple) and body else None
    if isinstance(box, tuple) and len(box) == 4 and all(isinstance(v, int) for v in box):
        return box  # type: ignore[return-value]
    return None


class AtspiReader:
    """Reads the accessibility tree of what is on screen (see the module's docstring).

    Args:
        address: the accessibility bus (default: found by :func:`bus_address`).
        session_bus: the session bus to ask for it (default: ``$DBUS_SESSION_BUS_ADDRESS``).
        display: the X display whose root window may name it (default: ``$DISPLAY``).
        limits: bounds of one read.
        active_only: read only the active application's windows (all showing windows when none is active).

    Raises:
        PerceptionError: no accessibility bus can be found or reached.
    """

    def __init__(self, address: str | None = None, *, session_bus: str | None = None, display: str | None = None,
                 limits: Limits | None = None, active_only: bool = True) -> None:
        self.limits = limits or Limits()
        self.address = address or bus_address(session_bus=session_bus, display=display)
        self.active_only = active_only
        self._bus = _Bus(self.address, self.limits.call_timeout)

    def close(self) -> None:
        self._bus.close()

    def read(self) -> A11yTree:
        """Read the showing windows of the active application now.

        Raises:
            PerceptionError: the bus went away.
        """
        start = time.perf_counter()
        deadline = start + self.limits.timeout
        self._bus.silent.clear()
        apps = self._applications(deadline)
        windows = self._windows(apps, deadline)
        chosen = self._choose(windows)
        raws, truncated = self._walk([ref for ref, _, _ in chosen], deadline)
        nodes: list[UINode] = []
        for ref, app, _ in chosen:
            truncated |= self._emit(ref, raws, app, nodes)
        shown = [w for _, _, w in chosen]
        active = next((w for w in shown if w.active), None)
        if active is None and len({w.app for w in shown}) == 1:
            active = shown[0]  # one application on screen, nothing focused yet (no window manager)
        return A11yTree(nodes=tuple(nodes), app=active.app if active else "", window=active.title if active else "",
                        windows=tuple(w for _, _, w in windows), truncated=truncated or time.perf_counter() > deadline,
                        skipped=tuple(sorted(self._bus.silent)), ms=(time.perf_counter() - start) * 1000)

    def _applications(self, deadline: float) -> list[tuple[Ref, str]]:
        (body,) = self._bus.many([_Call(REGISTRY, ACCESSIBLE, "GetChildren")], deadline)
        if isinstance(body, _Failed):
            raise PerceptionError(f"the AT-SPI registry does not answer ({body.reason}); "
                                  "is at-spi2-registryd running on the accessibility bus?")
        refs = _refs(body, 500)
        names = self._bus.many([_Call(r, PROPERTIES, "Get", "ss", (ACCESSIBLE, "Name")) for r in refs], deadline)
        return [(r, _str(n[0][1]) if isinstance(n, tuple) and n and isinstance(n[0], tuple) else "")
                for r, n in zip(refs, names, strict=True)]

    def _windows(self, apps: list[tuple[Ref, str]], deadline: float) -> list[tuple[Ref, str, Window]]:
        kids = self._bus.many([_Call(ref, ACCESSIBLE, "GetChildren") for ref, _ in apps], deadline)
        owners = [(ref, name) for (_, name), body in zip(apps, kids, strict=True)
                  for ref in _refs(body, self.limits.max_children)]
        raws = self._info([ref for ref, _ in owners], deadline)  # windows that are not showing are left out
        out = []
        for (ref, app), raw in zip(owners, raws, strict=True):
            if raw is None or not (raw.has(SHOWING) and raw.has(VISIBLE)) or raw.has(ICONIFIED):
                continue
            bounds = bounds_of(raw.extents)
            if bounds.area == 0:
                continue
            out.append((ref, app, Window(app=app, title=" ".join(raw.name.split()), role=raw.role, bounds=bounds,
                                         active=raw.has(ACTIVE))))
        return out

    def _choose(self, windows: list[tuple[Ref, str, Window]]) -> list[tuple[Ref, str, Window]]:
        """The active window, then the other showing windows of its application (dialogs, popups; newest first).

        Every showing window when none is active. Without a window manager a
        new dialog does not become active by itself, so the application's
        other windows are read too.
        """
        active = [w for w in windows if w[2].active]
        if not self.active_only or not active:
            return windows
        app_bus = active[0][0][0]
        others = [w for w in windows if w[0][0] == app_bus and w is not active[0]]
        return [active[0], *reversed(others)]

    def _info(self, refs: list[Ref], deadline: float, *, showing_only: bool = True) -> list[RawNode | None]:
        """Each object's state, then role, interfaces, properties and extents of those on screen (two rounds).

        Objects that are not ``SHOWING`` (a closed menu's items: most of a
        menu bar's subtree) cost one call instead of five.
        """
        states = self._bus.many([_Call(ref, ACCESSIBLE, "GetState") for ref in refs], deadline)
        keep = [i for i, st in enumerate(states)
                if not isinstance(st, _Failed) and (not showing_only or _states(st) >> SHOWING & 1)]
        calls = []
        for i in keep:
            ref = refs[i]
            calls += [_Call(ref, ACCESSIBLE, "GetRoleName"), _Call(ref, ACCESSIBLE, "GetInterfaces"),
                      _Call(ref, PROPERTIES, "GetAll", "s", (ACCESSIBLE,)),
                      _Call(ref, COMPONENT, "GetExtents", "u", (SCREEN_COORDS,))]
        answers = self._bus.many(calls, deadline)
        out: list[RawNode | None] = [None] * len(refs)
        for k, i in enumerate(keep):
            role, ifaces, props, extents = answers[4 * k:4 * k + 4]
            if isinstance(role, _Failed):
                continue  # gone (defunct) or not answering: left out
            props = props[0] if isinstance(props, tuple) and props and isinstance(props[0], dict) else {}
            names = ifaces[0] if isinstance(ifaces, tuple) and ifaces and isinstance(ifaces[0], list) else []
            count = _variant(props, "ChildCount")
            out[i] = RawNode(
                role=_str(role[0] if role else ""), states=_states(states[i]),
                interfaces=frozenset(n for n in names if isinstance(n, str)),
                name=_str(_variant(props, "Name")), description=_str(_variant(props, "Description")),
                accessible_id=_str(_variant(props, "AccessibleId")),
                child_count=count if isinstance(count, int) and count > 0 else 0,
                extents=_extents(extents) if not isinstance(extents, _Failed) else None,
            )
        return out

    def _walk(self, roots: list[Ref], deadline: float) -> tuple[dict[Ref, RawNode], bool]:
        """Breadth first from the windows: one pipelined round per level for facts, one for children and text."""
        raws: dict[Ref, RawNode] = {}
        parents: dict[Ref, str] = {}  # an object → its parent's role
        level, depth, truncated = roots, 0, False
        while level:
            if time.perf_counter() > deadline:
                return raws, True
            room = self.limits.max_nodes - len(raws)
            if len(level) > room:
                level, truncated = level[:room], True
            found = self._info(level, deadline, showing_only=depth > 0)
            showing = [(ref, raw) for ref, raw in zip(level, found, strict=True) if raw is not None]
            raws.update(showing)
            deeper = depth + 1 < self.limits.max_depth
            truncated |= not deeper and any(raw.child_count for _, raw in showing)
            calls, wants = [], []
            for ref, raw in showing:
                if deeper and raw.child_count and not _closed_menu(raw, parents.get(ref, "")):
                    calls.append(_Call(ref, ACCESSIBLE, "GetChildren"))
                    wants.append((raw, "children"))
                if TEXT in raw.interfaces and (raw.has(EDITABLE) or (raw.role in TEXT_ROLES and not raw.name.strip())):
                    calls.append(_Call(ref, TEXT, "GetText", "ii", (0, self.limits.max_text)))
                    wants.append((raw, "text"))
                if VALUE in raw.interfaces and raw.role in VALUE_ROLES:
                    calls.append(_Call(ref, PROPERTIES, "Get", "ss", (VALUE, "CurrentValue")))
                    wants.append((raw, "value"))
            level = []
            for (raw, what), body in zip(wants, self._bus.many(calls, deadline), strict=True):
                if isinstance(body, _Failed) or not isinstance(body, tuple) or not body:
                    continue
                if what == "children":
                    raw.children = [r for r in _refs(body, self.limits.max_children) if r not in raws]
                    truncated |= raw.child_count > self.limits.max_children
                    level += raw.children
                    parents.update((r, raw.role) for r in raw.children)
                elif what == "text":
                    raw.text = _str(body[0])
                elif isinstance(body[0], tuple) and len(body[0]) == 2 and isinstance(body[0][1], (int, float)):
                    raw.value = float(body[0][1])
            depth += 1
        return raws, truncated

    def _emit(self, root: Ref, raws: dict[Ref, RawNode], app: str, nodes: list[UINode]) -> bool:
        """Append a window's subtree in document order (iteratively: no recursion on deep trees)."""
        truncated = False
        stack: list[tuple[Ref, int, int | None]] = [(root, 0, None)]
        while stack:
            ref, depth, parent = stack.pop()
            raw = raws.pop(ref, None)  # popped: an object listed twice (a broken tree) is emitted once
            if raw is None:
                continue
            if len(nodes) >= self.limits.max_nodes:
                return True
            nodes.append(to_node(raw, depth=depth, parent=parent, app=app))
            index = len(nodes) - 1
            stack += [(child, depth + 1, index) for child in reversed(raw.children)]
        return truncated


# ---------------------------------------------------------------- other platforms' trees


def collect(roots: Sequence[Any], children: Any, convert: Any,
            limits: Limits | None = None) -> tuple[tuple[UINode, ...], bool]:
    """A bounded depth-first walk for the optional backends (UI Automation, AX), which answer one call at a time.

    Args:
        roots: the windows to read.
        children: ``element -> list of elements``.
        convert: ``(element, depth, parent index) -> UINode | None`` (None: leave it and its subtree out).
        limits: nodes, depth, children per node and the deadline.

    Returns:
        The nodes in document order, and whether a limit cut the walk.
    """
    limits = limits or Limits()
    deadline = time.perf_counter() + limits.timeout
    nodes: list[UINode] = []
    stack: list[tuple[Any, int, int | None]] = [(r, 0, None) for r in reversed(roots)]
    while stack:
        if len(nodes) >= limits.max_nodes or time.perf_counter() > deadline:
            return tuple(nodes), True
        element, depth, parent = stack.pop()
        try:
            node = convert(element, depth, parent)
            kids = children(element) if node is not None and depth + 1 < limits.max_depth else []
        except Exception:  # noqa: BLE001 - a platform API failing on one element (it went away) skips it
            continue
        if node is None:
            continue
        nodes.append(node)
        stack += [(k, depth + 1, len(nodes) - 1) for k in reversed(list(kids)[:limits.max_children])]
    return tuple(nodes), False
