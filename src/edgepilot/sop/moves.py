"""Drafting one SOP step per demonstrated action: what it acts on, in words that find it on the screen.

The first step of :func:`edgepilot.sop.learn.learn_sop`; the steps' values
become parameters in :mod:`edgepilot.sop.generalise`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgepilot.actions import Finish, Key, LongPress, OpenApp, Point, Swipe, Tap, Type, Wait
from edgepilot.sop.demo import Demo, DemoStep
from edgepilot.sop.format import PLACEHOLDER
from edgepilot.sop.screen import Screen, ScreenElement, ordinal
from edgepilot.sop.values import shape

MoveKind = Literal["open", "tap", "long_press", "type", "key", "swipe", "wait", "finish"]
ANSWER_WORDS = {"digits": "number", "amount": "amount", "time": "time", "phone": "phone number",
                "email": "email address", "domain": "web address", "card": "card number",
                "size": "size"}
"""How a step names the kind of value an answer is (the follower reads these back)."""


@dataclass
class Param:
    """A parameter being drafted: its name, the value a demonstration gave it, and what it is."""

    name: str
    value: str
    description: str


@dataclass
class Move:
    """One step being drafted. Text fields hold ``{param}`` placeholders once values are abstracted."""

    kind: MoveKind
    step: DemoStep
    handle: str = ""
    """The words that find the target: a line of it, its description or its id."""
    near: str = ""
    """For a switch whose text is only its state: what the control is ("switch"); the handle is its label."""
    value: str = ""
    """Typed text, key name, swipe direction, app, seconds, or a literal answer."""
    clear: bool = False
    state: str = ""
    scroll: bool = False
    screen: str = ""
    answer: tuple[str, str, str, str] | None = None
    """How to read the answer: (rule, what, handle, ordinal); rule is of, below, after or in."""
    sensitive: str | None = None
    raw_value: str = ""
    raw_handle: str = ""

    @property
    def anchor(self) -> str:
        """What the step acts on, for aligning demonstrations: values left out, ids preferred."""
        target = self.step.target
        what = target.rid if target is not None and target.rid else PLACEHOLDER.sub("{}", self.handle)
        if self.kind in ("key", "swipe", "open", "wait"):
            what += "|" + PLACEHOLDER.sub("{}", self.value)
        return f"{self.kind}|{what}|{self.near}"

    def texts(self) -> list[str]:
        """The fields that may hold placeholders."""
        return [self.handle, self.value, self.state, self.screen, *(self.answer or ())]


def draft_moves(demo: Demo) -> tuple[list[Move], list[str]]:
    """The demonstration's actions as draft steps, and notes on what could not be put in words."""
    moves: list[Move] = []
    notes: list[str] = []
    scrolled = False
    for n, step in enumerate(demo.steps):
        nxt = demo.steps[n + 1] if n + 1 < len(demo.steps) else None
        if _is_search_scroll(step, nxt):
            scrolled = True
            continue
        move = _move(step)
        if move is None:
            notes.append(f"{demo.source}: step {step.index} ({step.action.type}) cannot be written as an SOP step; "
                         "left out")
            continue
        move.scroll, scrolled = scrolled and move.kind in ("tap", "long_press", "type"), False
        if move.kind != "open":  # an app opens from anywhere
            move.screen = step.screen.title or ""
        moves.append(move)
    if not moves or moves[-1].kind != "finish":
        last = demo.steps[-1]
        moves.append(Move("finish", DemoStep(last.index + 1, Finish(), last.after or last.screen),
                           screen=(last.after or last.screen).title or ""))
    return moves, notes


def _is_search_scroll(step: DemoStep, nxt: DemoStep | None) -> bool:
    """A swipe up or down through a list, right before acting on the same screen: looking for the target."""
    action = step.action
    if not isinstance(action, Swipe) or action.direction not in ("up", "down") or nxt is None:
        return False
    if step.target is not None and "scrollable" not in step.target.flags:
        return False
    same = nxt.screen.title == step.screen.title and nxt.screen.package == step.screen.package
    return same and isinstance(nxt.action, (Tap, LongPress, Type, Swipe))


def _move(step: DemoStep) -> Move | None:
    action, target = step.action, step.target
    match action:
        case OpenApp(app=app):
            return Move("open", step, value=app, raw_value=app)
        case Tap() | LongPress():
            kind: MoveKind = "tap" if isinstance(action, Tap) else "long_press"
            if isinstance(action.target, Point):
                return Move(kind, step, value=f"{action.target.x},{action.target.y}")
            if target is None:
                return None
            handle, near = _handle(step.screen, target)
            if not handle:
                return None
            move = Move(kind, step, handle=handle, near=near, raw_handle=handle)
            if target.checkable and target.cls.casefold() in ("switch", "togglebutton", "checkbox") and kind == "tap":
                move.state = "off" if target.checked else "on"
            return move
        case Type(text=text, clear=clear):
            field_element = target if target is not None else step.screen.focused
            handle = _field_handle(step.screen, field_element, clear) if field_element is not None else ""
            return Move("type", step, handle=handle, value=text, clear=clear, raw_value=text, raw_handle=handle)
        case Key(key=key):
            return Move("key", step, value=key)
        case Swipe(direction=direction):
            handle = ""
            if target is not None:
                handle, _ = _handle(step.screen, target)
            return Move("swipe", step, handle=handle, value=direction)
        case Wait(seconds=seconds):
            return Move("wait", step, value=f"{seconds:g}")
        case Finish(answer=answer):
            move = Move("finish", step, raw_value=answer or "")
            if answer:
                move.answer = _answer_rule(answer, step.screen)
                if move.answer is None:
                    move.value = answer
            return move
    return None


def _handle(screen: Screen, element: ScreenElement) -> tuple[str, str]:
    """Words that find ``element`` on ``screen``: (handle, near). ``near`` is set for a control named by the
    label before it (a switch whose own text is ``ON``)."""
    if element.state_text:
        before = screen.element(element.index - 1)
        if before is not None and before.labels and not before.checkable:
            return before.labels[0], _control(element)
        return element.rid or element.desc, ""
    labels = element.labels
    if labels:
        return labels[0], ""
    if element.desc and any(ch.isalnum() for ch in element.desc):
        return element.desc, ""
    if element.hint:
        return element.hint, ""
    return element.rid, ""


def _field_handle(screen: Screen, element: ScreenElement, clear: bool) -> str:
    """A text field is named by its hint (``Name``), unless it holds content (it is cleared first, it is a
    password): then by its id."""
    if element.hint and not clear and not element.password:
        return element.hint
    if (clear or element.password or not element.labels) and element.rid:
        return element.rid
    handle, _ = _handle(screen, element)
    return handle


def _control(element: ScreenElement) -> str:
    name = element.cls.casefold()
    return {"switch": "switch", "checkbox": "checkbox", "radiobutton": "radio button",
            "togglebutton": "toggle"}.get(name, "switch")


def _answer_rule(answer: str, screen: Screen) -> tuple[str, str, str, str] | None:
    """How to read ``answer`` off the final screen again, or None when the screen does not show it."""
    key = answer.strip().casefold()
    hits = [e for e in screen.elements if key and key in e.text.casefold()]
    if not hits:
        return None
    element = hits[-1]
    what = ANSWER_WORDS.get(shape(answer), "text")
    lines = list(element.lines)
    line_no = next((i for i, line in enumerate(lines) if key in line.casefold()), 0)
    line = lines[line_no]
    same_id = [e for e in screen.elements if e.rid and e.rid == element.rid]
    if line.strip().casefold() == key:
        if line_no > 0 and lines[line_no - 1] in element.labels:
            return ("after", what, lines[line_no - 1], "")
        if element.rid and len(same_id) == 1:
            return ("of", "text", element.rid, "")
        before = screen.element(element.index - 1)
        if before is not None and before.labels and not before.interactive:
            return ("below", "text", before.labels[-1], "")
        if element.rid:
            return ("in", what, element.rid, ordinal(screen.elements, element))
        return None
    prefix = line[: line.casefold().index(key)].strip()
    if element.rid and what != "text" and len(prefix.split()) > 2:
        return ("in", what, element.rid, ordinal(screen.elements, element))
    if prefix:
        return ("after", what, prefix, "")
    if element.rid:
        return ("in", what, element.rid, ordinal(screen.elements, element))
    return None

