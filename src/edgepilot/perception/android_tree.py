"""Read Android ``uiautomator dump`` XML into :class:`UINode` lists.

The dump comes from a device we do not control, so the reader is defensive:
no DTDs or entities (no entity expansion, no external fetches), a cap on the
document size, on each attribute's length, on nesting depth and on the number
of nodes. It is a streaming expat parser, so deep nesting costs no Python
recursion. Anything wrong raises :class:`PerceptionError` with what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.parsers import expat

from edgepilot.errors import PerceptionError
from edgepilot.perception.elements import SYSTEM_UI, is_keyboard_package
from edgepilot.perception.nodes import Bounds, UINode, clean_text

MAX_DUMP_BYTES = 16 * 1024 * 1024
MAX_ATTRIBUTE_CHARS = 64 * 1024
MAX_DEPTH = 256
MAX_NODES = 50_000

_BOUNDS_RE = re.compile(r"^\[(-?\d+),(-?\d+)\]\[(-?\d+),(-?\d+)\]$")
_FLAGS = {
    "clickable": "clickable",
    "long-clickable": "long_clickable",
    "focusable": "focusable",
    "focused": "focused",
    "checkable": "checkable",
    "checked": "checked",
    "enabled": "enabled",
    "scrollable": "scrollable",
    "selected": "selected",
    "password": "password",
}


@dataclass(frozen=True)
class AndroidTree:
    """The parsed dump: its nodes, and the package that owns most of the screen."""

    nodes: tuple[UINode, ...]
    package: str
    rotation: int = 0
    """The display's rotation in quarter turns (1 and 3: landscape on a phone); bounds are in that orientation."""

    @property
    def keyboard(self) -> bool:
        """Whether an input method's window (the on-screen keyboard) is in the tree."""
        return any(n.parent is None and is_keyboard_package(n.package) and n.bounds.area for n in self.nodes)

    @property
    def extent(self) -> tuple[int, int]:
        """The right and bottom edges of the tree's windows (0, 0 for an empty tree)."""
        roots = [n.bounds for n in self.nodes if n.parent is None]
        return (max((b.right for b in roots), default=0), max((b.bottom for b in roots), default=0))


def parse_bounds(value: str) -> Bounds:
    """Parse uiautomator's ``[l,t][r,b]`` bounds.

    Raises:
        PerceptionError: the value is not of that form.
    """
    m = _BOUNDS_RE.match(value.strip())
    if not m:
        raise PerceptionError(f"bad bounds {value[:40]!r}: expected the form [left,top][right,bottom]")
    left, top, right, bottom = (int(g) for g in m.groups())
    return Bounds(left=left, top=top, right=max(left, right), bottom=max(top, bottom))


def _strip_noise(data: str) -> str:
    """Cut text that shells print around the XML (``UI hierchary dumped to ...``)."""
    start = data.find("<?xml")
    if start < 0:
        start = data.find("<hierarchy")
    if start < 0:
        raise PerceptionError(
            "no uiautomator hierarchy found in the dump; is the screen locked or "
            "uiautomator busy? Try again, or check `adb shell uiautomator dump`"
        )
    end = data.rfind("</hierarchy>")
    return data[start : end + len("</hierarchy>")] if end >= 0 else data[start:]


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[UINode] = []
        self.stack: list[int | None] = []
        self.rotation = 0
        self.seen_root = False

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        depth = len(self.stack)
        if depth >= MAX_DEPTH:
            raise PerceptionError(f"the dump nests deeper than {MAX_DEPTH} levels; refusing to read it")
        for key, value in attrs.items():
            if len(value) > MAX_ATTRIBUTE_CHARS:
                raise PerceptionError(
                    f"attribute {key!r} is {len(value)} characters long "
                    f"(limit {MAX_ATTRIBUTE_CHARS}); the dump looks hostile or broken"
                )
        if depth == 0:
            if tag != "hierarchy":
                raise PerceptionError(f"the dump's root is <{tag[:40]}>, expected <hierarchy>")
            self.seen_root = True
            try:
                self.rotation = int(attrs.get("rotation", "0"))
            except ValueError:
                self.rotation = 0
            self.stack.append(None)
            return
        if tag != "node":
            self.stack.append(self.stack[-1])  # unknown element: keep its children, skip it
            return
        if len(self.nodes) >= MAX_NODES:
            raise PerceptionError(f"the dump has more than {MAX_NODES} nodes; refusing to read it")
        text = clean_text(attrs.get("text", ""))
        hint = clean_text(attrs.get("hint", ""))
        class_name = attrs.get("class", "")
        if hint and text == hint and class_name.endswith("EditText"):
            text = ""  # an empty field reports its hint as its text; the hint attribute tells them apart
        node = UINode(
            bounds=parse_bounds(attrs.get("bounds", "[0,0][0,0]")),
            text=text,
            content_desc=clean_text(attrs.get("content-desc", "")),
            resource_id=attrs.get("resource-id", ""),
            class_name=class_name,
            package=attrs.get("package", ""),
            hint=hint,
            naf=attrs.get("NAF") == "true",
            visible=attrs.get("visible-to-user", "true") != "false",
            drawing_order=_int(attrs.get("drawing-order", "")),
            depth=depth - 1,
            parent=self.stack[-1],
            **{field: attrs.get(attr, "false") == "true" for attr, field in _FLAGS.items()},
        )
        self.nodes.append(node)
        self.stack.append(len(self.nodes) - 1)

    def end(self, tag: str) -> None:
        self.stack.pop()


def _int(value: str) -> int:
    return int(value) if value.isdigit() and len(value) < 10 else -1


def _forbid(what: str):
    def handler(*_args: object) -> None:
        raise PerceptionError(f"the dump contains {what}, which uiautomator never writes; refusing to read it")

    return handler


def parse_uiautomator_xml(data: str | bytes) -> AndroidTree:
    """Parse a uiautomator dump.

    Args:
        data: the XML as text or bytes, possibly with shell noise around it.

    Returns:
        The nodes in document order, with parent indices and depths.

    Raises:
        PerceptionError: the dump is malformed, truncated, or hostile.
    """
    if isinstance(data, bytes):
        if len(data) > MAX_DUMP_BYTES:
            raise PerceptionError(f"the dump is {len(data)} bytes (limit {MAX_DUMP_BYTES}); refusing to read it")
        data = data.decode("utf-8", errors="replace")
    if len(data) > MAX_DUMP_BYTES:
        raise PerceptionError(f"the dump is {len(data)} characters (limit {MAX_DUMP_BYTES}); refusing to read it")
    xml = _strip_noise(data)
    builder = _Builder()
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _forbid("a DTD")
    parser.EntityDeclHandler = _forbid("an entity declaration")
    parser.ExternalEntityRefHandler = _forbid("an external entity")
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    try:
        parser.Parse(xml, True)
    except expat.ExpatError as exc:
        raise PerceptionError(
            f"the uiautomator dump is malformed ({expat.ErrorString(exc.code)} at line {exc.lineno}, "
            f"column {exc.offset}); it may be truncated: dump the screen again"
        ) from exc
    if not builder.seen_root:
        raise PerceptionError("the dump has no <hierarchy> root")
    package = _main_package(builder.nodes)
    return AndroidTree(nodes=tuple(builder.nodes), package=package, rotation=builder.rotation)


_LAUNCHER = re.compile(r"launcher|\.home$|\.trebuchet$")


def _main_package(nodes: list[UINode]) -> str:
    """The app in front: the largest window that is not the keyboard, the system's bars or the home screen
    behind an app (the system's window where nothing else is, the home screen where it is the only app)."""
    roots = [n for n in nodes if n.parent is None and n.package]
    for keep in (lambda n: n.package != SYSTEM_UI and not _LAUNCHER.search(n.package),
                 lambda n: n.package != SYSTEM_UI, lambda n: True):
        apps = [n for n in roots if keep(n) and not is_keyboard_package(n.package) and n.package != "gesture"]
        if apps:
            return max(apps, key=lambda n: n.bounds.area).package
    return nodes[0].package if nodes else ""
