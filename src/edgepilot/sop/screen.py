"""Screens as SOP learning and following see them: numbered elements with their lines, description, id.

Two sources give the same :class:`ScreenElement` records: the screen text a
trajectory stores for every step (``Observation.to_text()``, one line per
element: ``[3] LinearLayout "Wi-Fi · Not connected" id=wifi (clickable)``),
and a live :class:`~edgepilot.perception.types.Observation`. Learning reads the
first, following the second; finding an element by the words of a step
(:func:`find`) works on both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from edgepilot.perception.types import Observation, UINode

LINE_JOIN = " · "
ELLIPSIS = "…"
STATE_WORDS = frozenset({"on", "off", "true", "false", "checked", "unchecked", "yes", "no"})
_ELEMENT = re.compile(
    r'^\[(?P<index>\d+)\] (?P<cls>\S+)(?: "(?P<text>.*?)")?(?: desc="(?P<desc>.*?)")?(?: hint="(?P<hint>.*?)")?'
    r'(?: name~"(?P<name>.*?)")?(?: id=(?P<rid>\S+))?'
    r"(?: \((?P<flags>[^()]*)\))?$")
_HEAD = re.compile(r"^App: (?P<package>\S+)(?P<rest>.*)$")
_TITLE_IDS = ("toolbar_title", "action_bar_title", "title", "toolbar")


@dataclass(frozen=True)
class ScreenElement:
    """One numbered element of a screen."""

    index: int
    cls: str
    lines: tuple[str, ...] = ()
    """The element's text, one entry per line; a list row holds the lines of its children."""
    desc: str = ""
    rid: str = ""
    """The resource id without its package part (``wifi_switch``)."""
    flags: frozenset[str] = frozenset()
    truncated: bool = False
    """The last line was cut short in the stored screen text (it ends with ``…``)."""
    hint: str = ""
    """An empty field's placeholder."""
    name: str = ""
    """The name edgepilot gave an element without text or description (``name~"send"``)."""

    @property
    def text(self) -> str:
        return LINE_JOIN.join(self.lines)

    @property
    def clickable(self) -> bool:
        return "clickable" in self.flags

    @property
    def editable(self) -> bool:
        return "editable" in self.flags

    @property
    def checkable(self) -> bool:
        return "on" in self.flags or "off" in self.flags

    @property
    def checked(self) -> bool:
        return "on" in self.flags

    @property
    def password(self) -> bool:
        return "password" in self.flags

    @property
    def interactive(self) -> bool:
        return self.clickable or self.editable or self.checkable or "scrollable" in self.flags

    @property
    def labels(self) -> tuple[str, ...]:
        """Lines that can name the element: whole (not cut short), with a letter or digit, not bullets."""
        out = [line for n, line in enumerate(self.lines)
               if not (self.truncated and n == len(self.lines) - 1) and _wordy(line)]
        return tuple(out)

    @property
    def state_text(self) -> bool:
        """Whether the text only tells a switch's state (``ON``), so it cannot name the switch."""
        return self.checkable and (not self.lines or all(line.strip().casefold() in STATE_WORDS
                                                         for line in self.lines))

    @classmethod
    def from_node(cls, index: int, node: UINode) -> ScreenElement:
        flags = set()
        if node.checkable:
            flags.add("on" if node.checked else "off")
        for name, on in (("editable", node.editable), ("password", node.password), ("focused", node.focused),
                         ("clickable", node.clickable), ("scrollable", node.scrollable),
                         ("disabled", not node.enabled), ("selected", node.selected)):
            if on:
                flags.add(name)
        lines = tuple(" ".join(line.split()) for line in node.text.splitlines() if line.strip())
        if node.password:
            lines = ("•" * min(len(node.text), 8),) if node.text else ()
        rid = node.resource_id.rsplit("/", 1)[-1]
        return cls(index, node.short_class or "View", lines, " ".join(node.content_desc.split()), rid,
                   frozenset(flags), hint=" ".join(node.hint.split()) if not node.text else "",
                   name=" ".join(node.name.split()))


@dataclass(frozen=True)
class Screen:
    """A screen: the app in front, whether it is secure, and its elements in order."""

    package: str
    elements: tuple[ScreenElement, ...]
    secure: bool = False

    @property
    def title(self) -> str | None:
        """The title of the app bar (an element with a title id near the top), or None."""
        for element in self.elements[:8]:
            if element.rid in _TITLE_IDS and element.labels:
                return element.labels[0]
        return None

    def element(self, index: int) -> ScreenElement | None:
        return self.elements[index] if 0 <= index < len(self.elements) else None

    @property
    def focused(self) -> ScreenElement | None:
        return next((e for e in self.elements if e.editable and "focused" in e.flags), None)

    @classmethod
    def from_observation(cls, obs: Observation) -> Screen:
        return cls(obs.package, tuple(ScreenElement.from_node(i, n) for i, n in enumerate(obs.elements)), obs.secure)

    @classmethod
    def from_text(cls, text: str) -> Screen:
        """Read the screen text a trajectory stores; lines that are not elements are skipped."""
        package, secure, elements = "", False, []
        for raw in text.splitlines():
            head = _HEAD.match(raw)
            if head is not None and not elements:
                package, secure = head.group("package"), "secure screen" in head.group("rest")
                continue
            m = _ELEMENT.match(raw.strip())
            if m is None:
                continue
            text_part = m.group("text") or ""
            truncated = text_part.endswith(ELLIPSIS)
            lines = tuple(p.strip() for p in text_part.split(LINE_JOIN) if p.strip())
            flags = frozenset(f.strip() for f in (m.group("flags") or "").split(",") if f.strip())
            elements.append(ScreenElement(int(m.group("index")), m.group("cls"), lines, m.group("desc") or "",
                                          m.group("rid") or "", flags, truncated, m.group("hint") or "",
                                          m.group("name") or ""))
        return cls(package, tuple(elements), secure)


def find(screen: Screen, handle: str, *, want: str = "any") -> list[ScreenElement]:
    """The elements a step's quoted words name, best first.

    An element is named by one of its lines, its description (or a field's hint, or the name edgepilot gave
    an unlabelled element) or its resource id, compared without
    case; failing that, by a line that starts with the words (``To`` names the field
    ``To: type a name or number``). Among equally good matches, elements that can be used the way
    ``want`` says come first.

    Args:
        screen: where to look.
        handle: the quoted words of the step.
        want: ``tap`` (clickable or checkable), ``type`` (editable), or ``any``.
    """
    key = _norm(handle)
    if not key:
        return []
    tiers: list[list[ScreenElement]] = [[], [], [], []]
    for element in screen.elements:
        lines = [_norm(line) for line in element.lines]
        if key in lines:
            tiers[0].append(element)
        elif key in (_norm(element.desc), _norm(element.hint), _norm(element.name)):
            tiers[1].append(element)
        elif key == _norm(element.rid):
            tiers[2].append(element)
        elif any(re.match(re.escape(key) + r"\b", line) for line in lines):
            tiers[3].append(element)
    for tier in tiers:
        if tier:
            return sorted(tier, key=lambda e: (not _usable(e, want), e.index))
    return []


def next_to(screen: Screen, label: ScreenElement, *, checkable: bool = True) -> ScreenElement | None:
    """The control that follows a label: the next checkable element within two places."""
    for element in screen.elements[label.index + 1: label.index + 3]:
        if element.checkable or not checkable:
            return element
    return None


def in_list(screen: Screen, element: ScreenElement) -> bool:
    """Whether an element is an item of a list of data (contacts, alarms, products) rather than a fixed part
    of the app: other elements share its id, or, without ids, its class."""
    if element.rid:
        return sum(e.rid == element.rid for e in screen.elements) >= 2
    return sum(e.cls == element.cls and not e.rid and e.interactive for e in screen.elements) >= 2


def _usable(element: ScreenElement, want: str) -> bool:
    if want == "type":
        return element.editable
    if want == "tap":
        return element.clickable or element.checkable or element.editable
    return True


def _norm(text: str) -> str:
    text = " ".join(text.split()).casefold()
    return text[:-3] if text.endswith("...") else text.rstrip(ELLIPSIS)  # ``"Pay $..."``: a line's start


def _wordy(line: str) -> bool:
    return any(ch.isalnum() for ch in line)


def ordinal(elements: Sequence[ScreenElement], element: ScreenElement) -> str:
    """``first`` or ``last`` among elements of the same id, when that tells them apart (else ``''``)."""
    same = [e for e in elements if e.rid and e.rid == element.rid]
    if len(same) < 2:
        return ""
    if element.index == same[0].index:
        return "first"
    if element.index == same[-1].index:
        return "last"
    return ""
