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

The bus and finding it are in :mod:`edgepilot.perception.atspi_bus`; roles and
states become a :class:`UINode` in :mod:`edgepilot.perception.atspi_nodes`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edgepilot.errors import PerceptionError
from edgepilot.perception.atspi_bus import (
    ACCESSIBLE,
    COMPONENT,
    PROPERTIES,
    REGISTRY,
    SCREEN_COORDS,
    TEXT,
    VALUE,
    Ref,
    a11y_bus_from_session,
    bus_address,
)
from edgepilot.perception.atspi_bus import Bus as _Bus
from edgepilot.perception.atspi_bus import Call as _Call
from edgepilot.perception.atspi_bus import Failed as _Failed
from edgepilot.perception.atspi_nodes import (
    ACTIVE,
    CHECKED,
    EDITABLE,
    EXPANDED,
    FOCUSABLE,
    FOCUSED,
    ICONIFIED,
    SELECTED,
    SENSITIVE,
    SHOWING,
    TEXT_ROLES,
    VALUE_ROLES,
    VISIBLE,
    RawNode,
    bounds_of,
    class_for,
    to_node,
)
from edgepilot.perception.types import Bounds, UINode

# names that lived here before the bus and the node conversion moved out, for the code that imports them from here
__all__ = [
    "CHECKED", "EDITABLE", "FOCUSABLE", "FOCUSED", "SELECTED", "SENSITIVE", "SHOWING", "A11yTree",
    "AccessibilityReader", "AtspiReader", "Limits", "RawNode", "Ref", "Window", "a11y_bus_from_session",
    "bounds_of", "bus_address", "class_for", "collect", "to_node",
]


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


def terminal_tail(text: str, limit: int) -> str:
    """A terminal's last ``limit`` characters of text, without the blank rows and trailing spaces of its
    screen (the prompt and the latest output are at the end)."""
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)[-limit:]


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
                if raw.role == "terminal" and TEXT in raw.interfaces:  # all of it: what matters is at the end
                    calls.append(_Call(ref, TEXT, "GetText", "ii", (0, -1)))
                    wants.append((raw, "text"))
                elif TEXT in raw.interfaces and (raw.has(EDITABLE)
                                                 or (raw.role in TEXT_ROLES and not raw.name.strip())):
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
                    raw.text = _str(body[0]) if raw.role != "terminal" else terminal_tail(_str(body[0]),
                                                                                          self.limits.max_text)
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
