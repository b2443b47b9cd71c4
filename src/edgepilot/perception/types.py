"""What the agent sees: bounds, UI nodes and whole observations (all immutable)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from pydantic import Field

from edgepilot.perception.elements import screen_elements
from edgepilot.perception.nodes import Bounds, UINode, _Frozen, describe

__all__ = ["Bounds", "Observation", "UINode", "describe"]


class Observation(_Frozen):
    """One look at a device's screen.

    ``nodes`` holds every node of the tree in document order; ``elements`` the
    subset a model is shown, numbered from 0. Those numbers are the element
    indices that actions use.
    """

    nodes: tuple[UINode, ...] = ()
    package: str = ""
    activity: str = ""
    screen_width: int = Field(gt=0)
    screen_height: int = Field(gt=0)
    screenshot_png: bytes | None = Field(default=None, repr=False)
    secure: bool = False
    keyboard_shown: bool = False
    timestamp: float = 0.0

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Observation:
        """A copy with some fields replaced; ``elements`` is derived again rather than copied stale."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("elements", None)
        copy.__dict__.pop("reachable", None)
        return copy

    @cached_property
    def elements(self) -> tuple[UINode, ...]:
        """The nodes a model is shown (:func:`~edgepilot.perception.elements.screen_elements`).

        Hidden nodes (under a keyboard, another window or an overlay) are left
        out, a keyboard is one element, a list row takes its text views' lines
        as its text, and unlabelled controls get a ``name``.
        """
        return screen_elements(self.nodes, self.screen_width, self.screen_height, self.package)

    @cached_property
    def reachable(self) -> tuple[UINode, ...]:
        """Every element on the screen, hidden ones included (what a touch could reach if the guess about which
        window or overlay lies on top were wrong): the policy judges a press by all of them."""
        return screen_elements(self.nodes, self.screen_width, self.screen_height, self.package, hide=False)

    def element(self, index: int) -> UINode:
        """The element numbered ``index`` in :meth:`to_text`.

        Raises:
            IndexError: no element has that number.
        """
        if not 0 <= index < len(self.elements):
            raise IndexError(
                f"element {index} does not exist; this screen has elements 0..{len(self.elements) - 1}"
            )
        return self.elements[index]

    def element_at(self, x: int, y: int) -> tuple[int, UINode] | None:
        """The smallest element under a pixel, preferring clickable ones."""
        hits = [(i, n) for i, n in enumerate(self.elements) if n.bounds.contains(x, y)]
        if not hits:
            return None
        clickable = [h for h in hits if h[1].clickable or h[1].editable or h[1].checkable]
        return min(clickable or hits, key=lambda h: h[1].bounds.area)

    def find(self, **attrs: object) -> list[int]:
        """Indices of the elements whose attributes equal every given value."""
        return [
            i for i, n in enumerate(self.elements)
            if all(getattr(n, k) == v for k, v in attrs.items())
        ]

    @property
    def focused_element(self) -> int | None:
        for i, n in enumerate(self.elements):
            if n.focused and n.editable:
                return i
        return None

    def header(self) -> str:
        """The first line of :meth:`to_text`: the app in front, and whether the screen is secure or typing."""
        head = f"App: {self.package or 'unknown'}"
        if self.secure:
            head += " (secure screen)"
        if self.keyboard_shown:
            head += " (keyboard shown)"
        return head

    def to_text(self, limit: int = 120) -> str:
        """Render the compact numbered view that a model reads.

        One line per element: ``[i] Class "text" (flags)``. Lines past ``limit``
        are cut and counted, so a prompt never explodes on a huge screen.
        """
        lines = [self.header()]
        for i, n in enumerate(self.elements[:limit]):
            lines.append(f"[{i}] {describe(n)}")
        if len(self.elements) > limit:
            lines.append(f"... {len(self.elements) - limit} more elements not shown")
        return "\n".join(lines)

