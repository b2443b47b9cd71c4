"""What the agent sees: bounds, UI nodes and whole observations (all immutable)."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Bounds(_Frozen):
    """A screen rectangle in pixels; ``right`` and ``bottom`` are exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return max(0, self.right - self.left)

    @property
    def height(self) -> int:
        return max(0, self.bottom - self.top)

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def center(self) -> tuple[int, int]:
        return ((self.left + self.right) // 2, (self.top + self.bottom) // 2)

    def contains(self, x: int, y: int) -> bool:
        return self.left <= x < self.right and self.top <= y < self.bottom

    def intersect(self, other: Bounds) -> Bounds:
        return Bounds(
            left=max(self.left, other.left),
            top=max(self.top, other.top),
            right=max(max(self.left, other.left), min(self.right, other.right)),
            bottom=max(max(self.top, other.top), min(self.bottom, other.bottom)),
        )


class UINode(_Frozen):
    """One element of a screen, as an accessibility tree (or OCR) reports it."""

    bounds: Bounds
    text: str = ""
    content_desc: str = ""
    resource_id: str = ""
    class_name: str = ""
    package: str = ""
    clickable: bool = False
    long_clickable: bool = False
    focusable: bool = False
    focused: bool = False
    checkable: bool = False
    checked: bool = False
    enabled: bool = True
    scrollable: bool = False
    selected: bool = False
    password: bool = False
    depth: int = 0
    parent: int | None = None
    source: Literal["tree", "ocr", "pixels"] = "tree"

    @property
    def editable(self) -> bool:
        return self.class_name.endswith("EditText") or self.class_name in ("entry", "text")

    @property
    def label(self) -> str:
        """The best short human name of this node: its text, else its description."""
        return self.text or self.content_desc

    @property
    def short_class(self) -> str:
        return self.class_name.rsplit(".", 1)[-1]

    @property
    def is_element(self) -> bool:
        """Whether the node is worth showing to a model (it can be acted on or read)."""
        if self.bounds.area == 0:
            return False
        return bool(
            self.clickable
            or self.long_clickable
            or self.checkable
            or self.scrollable
            or self.editable
            or self.text.strip()
            or self.content_desc.strip()
        )


def _interactive(n: UINode) -> bool:
    return n.clickable or n.long_clickable or n.checkable or n.editable or n.scrollable


def _text_owners(nodes: tuple[UINode, ...]) -> dict[int, int]:
    """Plain text nodes mapped to the clickable container (without text of its own) that holds them."""
    owners: dict[int, int] = {}
    for i, n in enumerate(nodes):
        if _interactive(n) or not (n.text.strip() or n.content_desc.strip()):
            continue
        p = n.parent
        while p is not None and 0 <= p < len(nodes):
            anc = nodes[p]
            if anc.clickable or anc.long_clickable or anc.checkable:
                if not anc.text.strip() and not anc.editable:
                    owners[i] = p
                break
            if anc.scrollable:
                break
            p = anc.parent
    return owners


def _quote(text: str, limit: int = 80) -> str:
    text = " · ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return '"' + text.replace('"', "'") + '"'


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
        return copy

    @cached_property
    def elements(self) -> tuple[UINode, ...]:
        """The nodes a model is shown, with plain text folded into its clickable container.

        A list row is usually a clickable layout holding two TextViews; shown
        as three elements it wastes a small model's attention, so the row
        takes its children's lines as its text (one per line) and they are
        not listed on their own.
        """
        screen = Bounds(left=0, top=0, right=self.screen_width, bottom=self.screen_height)
        owner = _text_owners(self.nodes)
        texts: dict[int, list[str]] = {}
        for i, o in owner.items():
            texts.setdefault(o, []).append(self.nodes[i].text or self.nodes[i].content_desc)
        out = []
        for i, n in enumerate(self.nodes):
            if i in owner or not n.is_element and i not in texts:
                continue
            if n.bounds.intersect(screen).area == 0:
                continue
            if i in texts:
                n = n.model_copy(update={"text": "\n".join(t for t in texts[i] if t.strip())})
            out.append(n)
        return tuple(out)

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

    def to_text(self, limit: int = 120) -> str:
        """Render the compact numbered view that a model reads.

        One line per element: ``[i] Class "text" (flags)``. Lines past ``limit``
        are cut and counted, so a prompt never explodes on a huge screen.
        """
        head = f"App: {self.package or 'unknown'}"
        if self.secure:
            head += " (secure screen)"
        if self.keyboard_shown:
            head += " (keyboard shown)"
        lines = [head]
        for i, n in enumerate(self.elements[:limit]):
            lines.append(f"[{i}] {describe(n)}")
        if len(self.elements) > limit:
            lines.append(f"... {len(self.elements) - limit} more elements not shown")
        return "\n".join(lines)


def describe(node: UINode) -> str:
    """One-line description of a node: class, label, flags."""
    parts = [node.short_class or "View"]
    if node.text:
        parts.append(_quote("•" * min(len(node.text), 8) if node.password else node.text))
    if node.content_desc and node.content_desc != node.text:
        parts.append("desc=" + _quote(node.content_desc, 60))
    if node.resource_id:
        parts.append("id=" + node.resource_id.rsplit("/", 1)[-1])
    flags = []
    if node.checkable:
        flags.append("on" if node.checked else "off")
    if node.editable:
        flags.append("editable")
    if node.password:
        flags.append("password")
    if node.focused:
        flags.append("focused")
    if node.clickable:
        flags.append("clickable")
    if node.scrollable:
        flags.append("scrollable")
    if not node.enabled:
        flags.append("disabled")
    if node.selected:
        flags.append("selected")
    if flags:
        parts.append("(" + ", ".join(flags) + ")")
    return " ".join(parts)
