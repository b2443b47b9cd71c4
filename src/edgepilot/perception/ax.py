"""macOS: the accessibility tree of the frontmost application through the AX API (optional, untested here).

A small backend behind the same seam as :mod:`edgepilot.perception.atspi`
(:class:`~edgepilot.perception.atspi.AccessibilityReader`). It needs pyobjc
(``pyobjc-framework-ApplicationServices`` and ``pyobjc-framework-Cocoa``), a
Mac, and the Accessibility permission for the terminal that runs edgepilot
(System Settings → Privacy & Security → Accessibility). edgepilot's tests
cannot run it (there is no Mac here), so only its role table and its refusal
elsewhere are tested. Bounds are in points, the pointer's space; the desktop
device scales them onto Retina screenshots.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from edgepilot.errors import PerceptionError
from edgepilot.perception.atspi import A11yTree, Limits, collect
from edgepilot.perception.types import Bounds, UINode

ROLE_CLASSES = {
    "AXButton": "Button", "AXPopUpButton": "ComboBox", "AXMenuButton": "Button", "AXCheckBox": "CheckBox",
    "AXRadioButton": "RadioButton", "AXTextField": "EditText", "AXTextArea": "EditText",
    "AXSecureTextField": "EditText", "AXSearchField": "EditText", "AXComboBox": "ComboBox",
    "AXStaticText": "Text", "AXLink": "Link", "AXMenuBar": "MenuBar", "AXMenuBarItem": "Menu", "AXMenu": "Menu",
    "AXMenuItem": "MenuItem", "AXList": "List", "AXTable": "Table", "AXOutline": "Tree", "AXRow": "Row",
    "AXCell": "Cell", "AXTabGroup": "TabList", "AXSlider": "Slider", "AXIncrementor": "SpinButton",
    "AXProgressIndicator": "ProgressBar", "AXScrollArea": "ScrollPane", "AXWindow": "Window", "AXSheet": "Dialog",
    "AXGroup": "Group", "AXToolbar": "ToolBar", "AXImage": "Image", "AXWebArea": "Document",
}
"""AX roles mapped to the class names a model reads."""
CLICKABLE = frozenset({"Button", "ComboBox", "CheckBox", "RadioButton", "EditText", "Link", "Menu", "MenuItem",
                       "Row", "Cell", "Slider", "SpinButton"})


def class_for(role: str) -> str:
    return ROLE_CLASSES.get(role) or role.removeprefix("AX") or "View"


class AxReader:
    """The frontmost application's AX tree (macOS only).

    Raises:
        PerceptionError: not on macOS, or pyobjc is not installed.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        if sys.platform != "darwin":
            raise PerceptionError("the AX API exists only on macOS; on Linux the tree comes from AT-SPI")
        try:
            import AppKit
            import ApplicationServices
        except ImportError as exc:
            raise PerceptionError("reading the macOS accessibility tree needs pyobjc: pip install "
                                  "pyobjc-framework-ApplicationServices pyobjc-framework-Cocoa") from exc
        self.ax, self.appkit = ApplicationServices, AppKit
        self.limits = limits or Limits()

    def _get(self, element: Any, attribute: str) -> Any:
        err, value = self.ax.AXUIElementCopyAttributeValue(element, attribute, None)
        return None if err else value

    def read(self) -> A11yTree:
        start = time.perf_counter()
        front = self.appkit.NSWorkspace.sharedWorkspace().frontmostApplication()
        if front is None:
            return A11yTree(nodes=(), ms=(time.perf_counter() - start) * 1000)
        app = self.ax.AXUIElementCreateApplication(front.processIdentifier())
        windows = list(self._get(app, "AXWindows") or [])
        if not windows and self._get(app, "AXRole") is None:
            raise PerceptionError("macOS refused the accessibility tree: allow this terminal under System Settings "
                                  "→ Privacy & Security → Accessibility")
        name = str(front.localizedName() or "")
        nodes, truncated = collect(windows[:1], lambda e: list(self._get(e, "AXChildren") or []),
                                   lambda e, d, p: self._node(e, d, p, name), self.limits)
        title = str(self._get(windows[0], "AXTitle") or "") if windows else ""
        return A11yTree(nodes=nodes, app=name, window=title, truncated=truncated,
                        ms=(time.perf_counter() - start) * 1000)

    def _node(self, element: Any, depth: int, parent: int | None, app: str) -> UINode:
        role = str(self._get(element, "AXRole") or "")
        cls = class_for(role)
        bounds = Bounds(left=0, top=0, right=0, bottom=0)
        pos, size = self._get(element, "AXPosition"), self._get(element, "AXSize")
        if pos is not None and size is not None:
            _, point = self.ax.AXValueGetValue(pos, self.ax.kAXValueCGPointType, None)
            _, extent = self.ax.AXValueGetValue(size, self.ax.kAXValueCGSizeType, None)
            left, top = int(point.x), int(point.y)
            bounds = Bounds(left=left, top=top, right=left + max(0, int(extent.width)),
                            bottom=top + max(0, int(extent.height)))
        title = str(self._get(element, "AXTitle") or self._get(element, "AXDescription") or "")
        value = self._get(element, "AXValue")
        text, desc = title, ""
        if cls == "EditText" or role == "AXStaticText":
            text, desc = (str(value) if value is not None else ""), title
        checkable = cls in ("CheckBox", "RadioButton")
        return UINode(bounds=bounds, text="" if role == "AXSecureTextField" else text, content_desc=desc,
                      resource_id=str(self._get(element, "AXIdentifier") or ""), class_name=cls, package=app,
                      clickable=cls in CLICKABLE, focused=bool(self._get(element, "AXFocused")),
                      checkable=checkable, checked=checkable and value == 1,
                      enabled=self._get(element, "AXEnabled") is not False,
                      selected=bool(self._get(element, "AXSelected")),
                      password=role == "AXSecureTextField", depth=depth, parent=parent)

    def close(self) -> None:
        pass
