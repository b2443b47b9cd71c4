"""Windows: the accessibility tree of the foreground window through UI Automation (optional, untested here).

A small backend behind the same seam as :mod:`edgepilot.perception.atspi`
(:class:`~edgepilot.perception.atspi.AccessibilityReader`). It needs the
``uiautomation`` package (a ctypes wrapper of UIAutomationCore) and Windows;
edgepilot's tests cannot run it (there is no Windows machine here), so only
its role table and its refusal elsewhere are tested. Bounds are screen pixels
of a DPI-aware process, the same space as pyautogui's and mss's.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from edgepilot.errors import PerceptionError
from edgepilot.perception.atspi import A11yTree, Limits, collect
from edgepilot.perception.types import Bounds, UINode

CONTROL_CLASSES = {
    "ButtonControl": "Button", "SplitButtonControl": "Button", "CheckBoxControl": "CheckBox",
    "RadioButtonControl": "RadioButton", "EditControl": "EditText", "DocumentControl": "EditText",
    "TextControl": "Text", "HyperlinkControl": "Link", "ComboBoxControl": "ComboBox", "ListControl": "List",
    "ListItemControl": "ListItem", "MenuBarControl": "MenuBar", "MenuControl": "Menu",
    "MenuItemControl": "MenuItem", "TabControl": "TabList", "TabItemControl": "Tab", "TreeControl": "Tree",
    "TreeItemControl": "TreeItem", "DataGridControl": "Table", "TableControl": "Table",
    "DataItemControl": "Row", "SliderControl": "Slider", "SpinnerControl": "SpinButton",
    "ProgressBarControl": "ProgressBar", "ScrollBarControl": "ScrollBar", "WindowControl": "Window",
    "PaneControl": "Panel", "GroupControl": "Group", "ToolBarControl": "ToolBar", "StatusBarControl": "StatusBar",
    "ImageControl": "Image", "TitleBarControl": "TitleBar", "HeaderControl": "ColumnHeader",
    "HeaderItemControl": "ColumnHeader", "ToolTipControl": "ToolTip", "ThumbControl": "Thumb",
}
"""UI Automation control types (uiautomation's ``ControlTypeName``) mapped to the class names a model reads."""
CLICKABLE = frozenset({"Button", "CheckBox", "RadioButton", "Link", "ComboBox", "ListItem", "MenuItem", "Menu",
                       "Tab", "TreeItem", "Row", "Slider", "SpinButton", "EditText"})


def class_for(control_type: str) -> str:
    return CONTROL_CLASSES.get(control_type) or control_type.removesuffix("Control") or "View"


class UiaReader:
    """The foreground window's UI Automation tree (Windows only).

    Raises:
        PerceptionError: not on Windows, or ``uiautomation`` is not installed.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        if sys.platform != "win32":
            raise PerceptionError("UI Automation exists only on Windows; on Linux the tree comes from AT-SPI")
        try:
            import uiautomation
        except ImportError as exc:
            raise PerceptionError("reading the Windows accessibility tree needs uiautomation: "
                                  "pip install uiautomation") from exc
        self.auto = uiautomation
        self.limits = limits or Limits()

    def read(self) -> A11yTree:
        start = time.perf_counter()
        window = self.auto.GetForegroundControl()
        if window is None:
            return A11yTree(nodes=(), ms=(time.perf_counter() - start) * 1000)
        top = window.GetTopLevelControl() or window
        app = str(getattr(top, "ProcessId", "") or "")
        nodes, truncated = collect([top], lambda c: c.GetChildren(), lambda c, d, p: self._node(c, d, p, app),
                                   self.limits)
        return A11yTree(nodes=nodes, app=app, window=top.Name or "", truncated=truncated,
                        ms=(time.perf_counter() - start) * 1000)

    def _node(self, control: Any, depth: int, parent: int | None, app: str) -> UINode | None:
        if control.IsOffscreen:
            return None
        r = control.BoundingRectangle
        cls = class_for(control.ControlTypeName)
        checked = False
        if cls in ("CheckBox", "RadioButton"):
            pattern = control.GetTogglePattern() if cls == "CheckBox" else control.GetSelectionItemPattern()
            checked = bool(getattr(pattern, "ToggleState", 0) == 1 or getattr(pattern, "IsSelected", False))
        text = control.Name or ""
        desc = ""
        if cls == "EditText":
            value = control.GetValuePattern() if hasattr(control, "GetValuePattern") else None
            text, desc = (getattr(value, "Value", "") or ""), control.Name or ""
        return UINode(bounds=Bounds(left=r.left, top=r.top, right=max(r.left, r.right), bottom=max(r.top, r.bottom)),
                      text=text, content_desc=desc, resource_id=control.AutomationId or "", class_name=cls,
                      package=app, clickable=cls in CLICKABLE, focusable=bool(control.IsKeyboardFocusable),
                      focused=bool(control.HasKeyboardFocus), checkable=cls in ("CheckBox", "RadioButton"),
                      checked=checked, enabled=bool(control.IsEnabled), password=bool(control.IsPassword),
                      depth=depth, parent=parent)

    def close(self) -> None:
        pass
