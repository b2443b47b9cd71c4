"""AT-SPI's states and roles, and what one accessible object answered turned into a :class:`UINode`."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgepilot.perception.atspi_bus import ACTION, EDITABLE_TEXT, Ref
from edgepilot.perception.types import Bounds, UINode

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
        """Whether the object is in ``state`` (an AtspiStateType bit number)."""
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
    if editable or raw.role == "terminal" or (raw.role in TEXT_ROLES and not name):
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
