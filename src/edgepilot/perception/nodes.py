"""Bounds and UI nodes (immutable), and how one node reads as a line of text."""

from __future__ import annotations

import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict


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

    def covers(self, other: Bounds) -> bool:
        """Whether ``other`` lies wholly inside this rectangle."""
        return (self.left <= other.left and self.top <= other.top and other.right <= self.right
                and other.bottom <= self.bottom)

    def union(self, other: Bounds) -> Bounds:
        return Bounds(left=min(self.left, other.left), top=min(self.top, other.top),
                      right=max(self.right, other.right), bottom=max(self.bottom, other.bottom))


class UINode(_Frozen):
    """One element of a screen, as an accessibility tree (or OCR) reports it.

    ``hint`` is an empty field's placeholder (never its text); ``name`` is a
    name edgepilot gave an element that has neither text nor description
    (from its resource id, a neighbour's text or its place on the screen);
    ``naf`` is uiautomator's "not accessibility friendly" mark; ``visible``
    is false for a node the tree says the user cannot see; ``drawing_order``
    is its place among its siblings when drawn (-1: the tree does not say).
    """

    bounds: Bounds
    text: str = ""
    content_desc: str = ""
    resource_id: str = ""
    class_name: str = ""
    package: str = ""
    hint: str = ""
    name: str = ""
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
    naf: bool = False
    visible: bool = True
    drawing_order: int = -1
    depth: int = 0
    parent: int | None = None
    source: Literal["tree", "ocr", "pixels"] = "tree"

    @property
    def editable(self) -> bool:
        return self.class_name.endswith("EditText") or self.class_name in ("entry", "text", "Terminal")

    @property
    def actionable(self) -> bool:
        """Whether the node takes a tap, a long press, a toggle or typing (a target of taps and typing)."""
        return self.clickable or self.long_clickable or self.checkable or self.editable

    @property
    def interactive(self) -> bool:
        """Whether the node takes an action: a tap, a long press, a toggle, typing or a swipe."""
        return self.actionable or self.scrollable

    @property
    def label(self) -> str:
        """The best short human name of this node: its text, else its description, else an empty field's hint,
        else the name edgepilot gave it."""
        return self.text or self.content_desc or self.hint or self.name

    @property
    def short_class(self) -> str:
        return self.class_name.rsplit(".", 1)[-1]

    @property
    def is_element(self) -> bool:
        """Whether the node is worth showing to a model (it can be acted on or read)."""
        if self.bounds.area == 0 or not self.visible:
            return False
        return bool(self.interactive or self.text.strip() or self.content_desc.strip())


# Invisible characters that change nothing a person sees, but reach a prompt and can be typed back: bidi
# embeddings and isolates, marks, zero-width spaces, the BOM, soft hyphens (Unicode category Cf). The
# joiners stay: they hold emoji sequences and Persian or Indic words together.
_KEEP_FORMAT = {"\u200c", "\u200d"}


def clean_text(text: str) -> str:
    """``text`` without invisible format characters and control characters (newlines stay, tabs become spaces)."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\n" or ch in _KEEP_FORMAT:
            out.append(ch)
        elif ch in "\t\r":
            out.append(" ")
        elif unicodedata.category(ch) not in ("Cf", "Cc"):
            out.append(ch)
    return "".join(out)


def quote(text: str, limit: int = 300) -> str:
    """``text`` as one quoted line: lines joined with `` · ``, cut at ``limit`` characters, inner quotes single."""
    text = " · ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return '"' + text.replace('"', "'") + '"'


def describe(node: UINode, limit: int = 300) -> str:
    """One-line description of a node: class, label, flags (``limit``: characters of its text at most)."""
    parts = [node.short_class or "View"]
    if node.text:
        parts.append(quote("•" * min(len(node.text), 8) if node.password else node.text, limit))
    if node.content_desc and node.content_desc != node.text:
        parts.append("desc=" + quote(node.content_desc, min(limit, 120)))
    if node.hint and not node.text:
        parts.append("hint=" + quote(node.hint, 60))
    if node.name and not node.text and not node.content_desc:
        parts.append("name~" + quote(node.name, 60))
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
