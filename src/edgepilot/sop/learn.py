"""Draft an SOP from demonstrations: trajectories of a task done right (docs/sops.md, "Learned SOPs").

A demonstration is a trajectory folder (``steps.jsonl``: the screen text, the
action and its target for every step) written by ``edgepilot record`` (a
person), ``edgepilot run`` or ``bench --save`` (an agent, the oracle). The
draft is template-based, no model involved:

1. every action becomes one readable step, naming what the screen shows
   (``Tap "Network & internet".``, ``Type "{name}" in the "Name" field.``), with
   the screen it starts on (the app bar's title); scrolls that only looked for
   the next target fold into that step (``Scroll to "{name}" and tap it.``);
2. values become ``{param}`` placeholders: text typed or list items tapped that
   the goal sentence names (the contact, the message), the on/off a switch ends
   in when the goal says it, values that differ between demonstrations; the
   goal sentences, with the same placeholders, become the phrasings;
3. several demonstrations are aligned step by step (by what each step acts on)
   and only the steps common to all are kept;
4. a :data:`Classifier` (``edgepilot sop learn`` uses the policy engine's
   rules) marks steps that send, pay, delete, call or type a password as
   ``[sensitive: KIND]``.

The result is checked with the SOP parser before it is returned, so it passes
``edgepilot sop lint``. :mod:`edgepilot.sop.follow` carries out the steps this
module writes.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from edgepilot.actions import Action, Finish, Key, LongPress, OpenApp, Point, Swipe, Tap, Type, Wait, parse_action
from edgepilot.errors import ActionError, SopError
from edgepilot.sop.format import MAX_STEPS, PLACEHOLDER, SENSITIVE_KINDS, Sop, parse_sop
from edgepilot.sop.screen import Screen, ScreenElement, in_list, ordinal
from edgepilot.sop.values import Span, shape, spans

MoveKind = Literal["open", "tap", "long_press", "type", "key", "swipe", "wait", "finish"]
ANSWER_WORDS = {"digits": "number", "amount": "amount", "time": "time", "phone": "phone number",
                "email": "email address", "domain": "web address", "card": "card number"}
"""How a step names the kind of value an answer is (the follower reads these back)."""
STRONG_SHAPES = frozenset({"time", "email", "card", "phone", "domain", "amount", "digits", "weekday"})
_SHAPE_NAMES = {"time": "time", "email": "email", "phone": "phone", "amount": "amount", "card": "card_number",
                "domain": "website", "weekday": "day", "digits": "number"}
_ID_SUFFIXES = ("_option", "_row", "_item", "_field", "_input", "_edit", "_button", "_view")
_NAME_STOPWORDS = frozenset("a an the to of for in on at by with from and or my me i you your it its that this is "
                            "please can could would will what which who how when where then".split())
OK_OUTCOMES = frozenset({"worked", "changed", "wrong_screen", "finished", None})
"""Outcomes of steps that did something; a step that changed nothing, failed or was refused is left out."""


@dataclass(frozen=True)
class DemoStep:
    """One action of a demonstration and the screen it was taken on.

    Attributes:
        index: the step's index in its trajectory.
        action: what was done.
        screen: the screen the action was decided on.
        target: the element an indexed action aimed at (None for point targets and untargeted actions).
        after: the screen of the next step, when there is one.
    """

    index: int
    action: Action
    screen: Screen
    target: ScreenElement | None = None
    after: Screen | None = None


Classifier = Callable[[DemoStep], "str | None"]
"""Tells whether a demonstrated action needs the user's confirmation: a kind of
:data:`~edgepilot.sop.format.SENSITIVE_KINDS`, or None."""


@dataclass(frozen=True)
class Demo:
    """A successful demonstration of a task: its goal sentence and its steps."""

    goal: str
    steps: tuple[DemoStep, ...]
    source: str = ""

    @classmethod
    def from_trajectory(cls, trajectory: Any) -> Demo:
        """A demonstration from a trajectory read back (:func:`edgepilot.agent.trajectory.read_trajectory`).

        Steps whose action was refused, failed, unusable or changed nothing are left out.

        Raises:
            SopError: the trajectory did not end in success, has no goal, or has no actions.
        """
        where = str(getattr(trajectory, "folder", "") or "<trajectory>")
        meta, result = trajectory.meta or {}, trajectory.result
        goal = str(meta.get("goal") or "").strip()
        if not goal:
            raise SopError(f"{where}: the trajectory has no goal in meta.json; record it with --goal \"TASK\"")
        if not isinstance(result, dict):
            raise SopError(f"{where}: the trajectory has no result.json (the run was cut off); learn from runs "
                           "that finished")
        if result.get("status") != "finished" or result.get("success") is False:
            why = result.get("reason") or result.get("status")
            checks = ", ".join(result.get("failed_checks") or [])
            raise SopError(f"{where}: not a successful run ({why}{'; failed: ' + checks if checks else ''}); "
                           "an SOP is learned from runs that did the task right")
        raw = [s for s in trajectory.steps if isinstance(s, dict) and isinstance(s.get("action"), dict)
               and (s.get("gate") or {}).get("allowed", True) is not False
               and (s.get("outcome") or {}).get("kind") in OK_OUTCOMES and not s.get("error")]
        screens = [Screen.from_text(str(s.get("screen") or "")) for s in raw]
        steps = []
        for n, (s, screen) in enumerate(zip(raw, screens, strict=True)):
            try:
                action = parse_action(s["action"])
            except ActionError as exc:
                raise SopError(f"{where}: step {s.get('index', n)} holds no valid action ({exc})") from exc
            target = getattr(action, "target", None)
            element = screen.element(target) if isinstance(target, int) and not isinstance(target, bool) else None
            steps.append(DemoStep(int(s.get("index", n)), action, screen, element,
                                  screens[n + 1] if n + 1 < len(screens) else None))
        if not any(not isinstance(st.action, Finish) for st in steps):
            raise SopError(f"{where}: the trajectory has no actions to learn from")
        return cls(goal, tuple(steps), where)


@dataclass(frozen=True)
class LearnedSop:
    """A drafted SOP: the parsed SOP, the Markdown text to save, and what the drafting could not settle."""

    sop: Sop
    text: str
    notes: tuple[str, ...] = ()

    def write(self, path: Path) -> Path:
        """Save the Markdown to ``path`` (a folder gets ``NAME.md``).

        Raises:
            SopError: the file cannot be written.
        """
        path = Path(path)
        if path.is_dir():
            path = path / f"{self.sop.name}.md"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.text, encoding="utf-8")
        except OSError as exc:
            raise SopError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return path


# ---------------------------------------------------------------- moves: one per SOP step


@dataclass
class _Param:
    name: str
    value: str
    description: str


@dataclass
class _Move:
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
        return [self.handle, self.value, self.state, self.screen, *(self.answer or ())]


def _moves(demo: Demo) -> tuple[list[_Move], list[str]]:
    """The demonstration's actions as draft steps, and notes on what could not be put in words."""
    moves: list[_Move] = []
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
        moves.append(_Move("finish", DemoStep(last.index + 1, Finish(), last.after or last.screen),
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


def _move(step: DemoStep) -> _Move | None:
    action, target = step.action, step.target
    match action:
        case OpenApp(app=app):
            return _Move("open", step, value=app, raw_value=app)
        case Tap() | LongPress():
            kind: MoveKind = "tap" if isinstance(action, Tap) else "long_press"
            if isinstance(action.target, Point):
                return _Move(kind, step, value=f"{action.target.x},{action.target.y}")
            if target is None:
                return None
            handle, near = _handle(step.screen, target)
            if not handle:
                return None
            move = _Move(kind, step, handle=handle, near=near, raw_handle=handle)
            if target.checkable and target.cls.casefold() in ("switch", "togglebutton", "checkbox") and kind == "tap":
                move.state = "off" if target.checked else "on"
            return move
        case Type(text=text, clear=clear):
            field_element = target if target is not None else step.screen.focused
            handle = _field_handle(step.screen, field_element, clear) if field_element is not None else ""
            return _Move("type", step, handle=handle, value=text, clear=clear, raw_value=text, raw_handle=handle)
        case Key(key=key):
            return _Move("key", step, value=key)
        case Swipe(direction=direction):
            handle = ""
            if target is not None:
                handle, _ = _handle(step.screen, target)
            return _Move("swipe", step, handle=handle, value=direction)
        case Wait(seconds=seconds):
            return _Move("wait", step, value=f"{seconds:g}")
        case Finish(answer=answer):
            move = _Move("finish", step, raw_value=answer or "")
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
    return element.rid, ""


def _field_handle(screen: Screen, element: ScreenElement, clear: bool) -> str:
    """A text field is named by its hint (``Name``), unless it holds content (it is cleared first, it is a
    password): then by its id."""
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


# ---------------------------------------------------------------- values → parameters


def _abstract(demo: Demo, moves: list[_Move]) -> tuple[list[_Param], str]:
    """Turn the demonstration's values into parameters: fill the moves' placeholders, return the parameters
    and the goal as a phrasing."""
    goal = demo.goal
    known = frozenset(w.casefold() for st in demo.steps for e in st.screen.elements
                      for w in re.findall(r"[A-Za-z0-9]+", " ".join([*e.lines, e.desc])))
    value_spans = spans(goal, known)
    params: list[_Param] = []

    def add(value: str, name: str, description: str) -> None:
        value = value.strip()
        if len(value) < 2 or any(p.value.casefold() == value.casefold() for p in params):
            return
        taken = {p.name for p in params}
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        params.append(_Param(name, value, description))

    only_open = all(m.kind in ("open", "finish") for m in moves)
    for move in moves:
        target = move.step.target
        if move.kind == "type" and move.value and _find_word(goal, move.value) >= 0:
            add(move.value, _value_name(move.value, target, field_handle=move.handle),
                f'the text typed in the "{move.handle}" field' if move.handle else "the text typed")
        elif move.kind in ("tap", "long_press") and not move.near and move.handle and target is not None:
            named = next((line for line in target.labels if _goal_value(goal, line, value_spans)
                          and _listed(move.step.screen, target, line)), None)
            if named is not None:
                move.handle = move.raw_handle = named
                add(named, _value_name(named, target), "the item to tap in the list")
            else:
                move.handle = move.raw_handle = _fixed_part(move.handle, goal)
        elif move.kind == "open" and only_open and _find_word(goal, move.value) >= 0:
            add(move.value, "app", "the app to open")
        elif move.kind == "finish" and move.answer is not None and move.answer[0] == "after":
            holder = next((e for e in move.step.screen.elements if move.answer[2] in e.lines), None)
            for span in value_spans:
                if span.text.casefold() in move.answer[2].casefold() and len(span.text) >= 2:
                    name = _SHAPE_NAMES.get(span.shape) or _value_name(span.text, holder)
                    add(span.text, name, "what the answer is read next to")
        elif move.kind == "finish" and move.value and _find_word(goal, move.value) >= 0:
            add(move.value, "answer", "the answer")
    state = next((m for m in moves if m.state), None)
    if state is not None and re.search(rf"\b{state.state}\b", goal, re.IGNORECASE):
        add(state.state, "state", "on or off: the state the switch should end in")
    _fill_moves(moves, params)
    return params, _phrasing(goal, params)


def _goal_value(goal: str, label: str, value_spans: Sequence[Span]) -> bool:
    """Whether the goal names ``label`` as a value: it occurs there, over a value the goal holds (a name,
    a number, quoted text), not as an ordinary word (``Call`` in ``Call Ann Lee``)."""
    at = _find_word(goal, label)
    if at < 0:
        return False
    end = at + len(label)
    return any(s.start < end and at < s.end for s in value_spans)


def _fixed_part(label: str, goal: str) -> str:
    """A label without a value that comes from elsewhere on the way (``Pay $9.99`` → ``Pay``): the words
    before a number, amount or time that the goal does not give, when there are such words."""
    for span in spans(label):
        if span.shape in STRONG_SHAPES and _find_word(goal, span.text) < 0:
            head = label[: span.start].strip(" :·-")
            return head if any(ch.isalpha() for ch in head) else label
    return label


def _listed(screen: Screen, element: ScreenElement, label: str) -> bool:
    """Whether a tapped label is data (a list item, or a value's shape) rather than a fixed part of the app."""
    return shape(label) in STRONG_SHAPES or in_list(screen, element)


def _value_name(value: str, element: ScreenElement | None, *, field_handle: str | None = None) -> str:
    """A parameter name for a value: by its shape when that is telling, else by the field it was typed in
    (``field_handle``: the hint or id that names the field) or the list it was picked from."""
    kind = shape(value)
    if kind in _SHAPE_NAMES and kind != "digits":
        return _SHAPE_NAMES[kind]
    if field_handle:
        words = re.findall(r"[A-Za-z]+", re.sub(r"\([^)]*\)", " ", field_handle))
        if 1 <= len(words) <= 2 and "_" not in field_handle:
            return "_".join(w.lower() for w in words)
    if element is not None and element.rid:
        return _id_name(element.rid)
    if field_handle is not None:
        return "number" if kind == "digits" else "text"
    return _SHAPE_NAMES.get(kind, "item")


def _id_name(rid: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", rid.casefold()).strip("_") or "value"
    for suffix in _ID_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix) + 2:
            name = name[: -len(suffix)]
            break
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else f"v_{name}"


def _find_word(text: str, value: str) -> int:
    """Where ``value`` occurs in ``text`` as whole words, case aside; -1 if it does not."""
    if not value.strip():
        return -1
    m = re.search(rf"(?<![\w]){re.escape(value.strip())}(?![\w])", text, re.IGNORECASE)
    return m.start() if m else -1


def _substitute(text: str, params: Sequence[_Param]) -> str:
    """Each parameter's value in ``text`` replaced by its placeholder, longest values first."""
    if not text:
        return text
    for p in sorted(params, key=lambda p: -len(p.value)):
        if p.name == "state":
            continue
        text = re.sub(rf"(?<![\w{{]){re.escape(p.value)}(?![\w}}])", lambda _m, n=p.name: f"{{{n}}}", text,
                      flags=re.IGNORECASE)
    return text


def _fill_moves(moves: list[_Move], params: Sequence[_Param]) -> None:
    state = next((p for p in params if p.name == "state"), None)
    for move in moves:
        move.handle = _substitute(move.handle, params)
        move.screen = _substitute(move.screen, params)
        if move.kind in ("type", "finish") or (move.kind == "open" and any(p.name == "app" for p in params)):
            move.value = _substitute(move.value, params)
        if move.answer is not None:
            rule, what, handle, order = move.answer
            move.answer = (rule, what, _substitute(handle, params), order)
        if move.state and state is not None and move.state == state.value.casefold():
            move.state = "{state}"


def _quoted(text: str, start: int, end: int) -> bool:
    return 0 < start and end < len(text) and text[start - 1] in "\"“" and text[end] in "\"”"


def _phrasing(goal: str, params: Sequence[_Param]) -> str:
    """The goal with the first occurrence of each value replaced by its placeholder."""
    taken: list[tuple[int, int, str]] = []
    for p in sorted(params, key=lambda p: -len(p.value)):
        found = [m for m in re.finditer(rf"(?<![\w]){re.escape(p.value)}(?![\w])", goal, re.IGNORECASE)
                 if all(m.end() <= s or m.start() >= e for s, e, _ in taken)]
        quoted = [m for m in found if _quoted(goal, m.start(), m.end())]
        if found:
            m = (quoted or found)[0]
            taken.append((m.start(), m.end(), p.name))
    out = goal
    for start, end, name in sorted(taken, reverse=True):
        out = out[:start] + "{" + name + "}" + out[end:]
    return " ".join(out.split())


# ---------------------------------------------------------------- several demonstrations


def _align(runs: list[list[_Move]], notes: list[str], sources: Sequence[str]) -> list[list[_Move]]:
    """Slots of moves, one move per demonstration each: the steps every demonstration has, in order."""
    slots = [[m] for m in runs[0]]
    for n, run in enumerate(runs[1:], 1):
        base = [slot[0].anchor for slot in slots]
        matcher = difflib.SequenceMatcher(None, base, [m.anchor for m in run], autojunk=False)
        kept = []
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                kept.append(slots[block.a + k] + [run[block.b + k]])
        dropped = len(slots) - len(kept)
        extra = len(run) - len(kept)
        if dropped or extra:
            notes.append(f"{sources[n]}: {dropped} step(s) of the first demonstration and {extra} of this one "
                         "were not common to both and are left out")
        slots = kept
    return slots


def _merge_slot(slot: list[_Move], params: dict[str, _Param]) -> _Move:
    """One move for a slot: the most abstract demonstration's, settled value by value (:func:`_settle`)."""
    best = max(slot, key=lambda m: sum(len(PLACEHOLDER.findall(t)) for t in m.texts()))
    move = replace(best)

    def new_param(raw: str, description: str, field_handle: str | None) -> str:
        name = _free_name(_value_name(raw, move.step.target, field_handle=field_handle), params)
        params[name] = _Param(name, raw, description + " (it differed between demonstrations and the goal did "
                                                       "not say it)")
        return "{" + name + "}"

    if move.kind == "type":
        move.value = _settle([m.value for m in slot], [m.raw_value for m in slot], best.value,
                             lambda: new_param(best.raw_value, f'the text typed in the "{best.handle}" field',
                                               best.handle))
    elif move.kind in ("tap", "long_press") and move.step.target is not None and not move.near:
        move.handle = _settle([m.handle for m in slot], [m.raw_handle for m in slot], best.handle,
                              lambda: new_param(best.raw_handle, "the item to tap", None))
    ends = {_end_state(m) for m in slot}
    if move.state and any(m.state != "{state}" for m in slot):
        # a goal did not say the state: when every demonstration left the switch the same way, that is the step
        move.state = ends.pop() if len(ends) == 1 and None not in ends else "{state}"
    screens = {m.screen for m in slot}
    if len(screens) > 1 and not PLACEHOLDER.search(move.screen):
        move.screen = ""
    move.sensitive = next((m.sensitive for m in slot if m.sensitive), None)
    return move


def _settle(templates: list[str], raws: list[str], abstract: str, new_param: Callable[[], str]) -> str:
    """One value for a slot from its demonstrations: their common form; else, when every demonstration did the
    same and some goal did not name it, the literal value (a constant); else, when the forms differ only in
    which placeholder they use, the most abstract one; else (a part no goal named differed) a new parameter."""
    if len(set(templates)) == 1:
        return templates[0]
    if len(set(raws)) == 1 and any(not PLACEHOLDER.search(t) for t in templates):
        return raws[0]
    if len({PLACEHOLDER.sub("{}", t) for t in templates}) == 1:
        return abstract
    return new_param()


def _end_state(move: _Move) -> str | None:
    """The state a demonstrated switch was left in, or None for other steps."""
    target = move.step.target
    if not move.state or target is None:
        return None
    return "off" if target.checked else "on"


def _broader(value: str, than: str) -> bool:
    """Whether ``value`` makes a better example than ``than``: free text over a name (retrieval takes the
    example's shape as the shape every value must have), a longer text over a shorter one."""
    rank = {"text": 2, "name": 1}
    a, b = rank.get(shape(value), 0), rank.get(shape(than), 0)
    return a > b or (a == b == 2 and len(value.split()) > len(than.split()))


def _free_name(name: str, params: dict[str, _Param]) -> str:
    base, n = name, 1
    while name in params:
        n += 1
        name = f"{base}_{n}"
    return name


# ---------------------------------------------------------------- writing the SOP


def _instruction(move: _Move) -> str:
    """The step's words; :mod:`edgepilot.sop.follow` parses these forms back."""
    match move.kind:
        case "open":
            return f"Open the {move.value} app."
        case "tap" | "long_press":
            verb = "Tap" if move.kind == "tap" else "Long-press"
            if not move.handle:
                return f"{verb} the point ({move.value})."
            if move.near:
                text = f'{verb} the {move.near} next to "{move.handle}"'
                return text + (f" if it is not {move.state}." if move.state else ".")
            if move.scroll:
                return f'Scroll to "{move.handle}" and {verb.lower()} it.'
            return f'{verb} "{move.handle}".'
        case "type":
            where = f' in the "{move.handle}" field' if move.handle else ""
            if move.clear and move.handle:
                return f'Replace the text in the "{move.handle}" field with "{move.value}".'
            prefix = f'Scroll to the "{move.handle}" field and type' if move.scroll and move.handle else "Type"
            return f'{prefix} "{move.value}"{where if not move.scroll else ""}.'
        case "key":
            return f"Press the {move.value} key."
        case "swipe":
            return f'Swipe {move.value} on "{move.handle}".' if move.handle else f"Swipe {move.value}."
        case "wait":
            return f"Wait {move.value} seconds."
    if move.answer is not None:
        rule, what, handle, order = move.answer
        if rule == "in":
            return f'Finish and answer with the {what} in the {order + " " if order else ""}"{handle}".'
        if rule == "after":
            return f'Finish and answer with the {what} after "{handle}".'
        return f'Finish and answer with the text {rule} "{handle}".'
    if move.value:
        return f'Finish and answer with "{move.value}".'
    return "Finish: the task is done."


def _step_line(number: int, move: _Move) -> str:
    line = f"{number}. {_instruction(move)}"
    if move.screen:
        line += f" (screen: {move.screen})"
    if move.sensitive:
        line += f" [sensitive: {move.sensitive}]" if move.sensitive in SENSITIVE_KINDS else " [sensitive]"
    return line


def _scalar(value: object) -> str:
    text = yaml.safe_dump(value, allow_unicode=True, width=100_000, default_flow_style=True).strip()
    return text.removesuffix("...").strip()


def _default_name(phrasing: str, apps: Sequence[str]) -> str:
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", PLACEHOLDER.sub(" ", phrasing))
             if w.lower() not in _NAME_STOPWORDS]
    app = re.sub(r"[^a-z0-9]+", "-", (apps[0] if apps else "task").lower()).strip("-")
    words = [w for w in words if w != app][:4]
    name = "-".join(["learned", app, *words]).strip("-")
    return re.sub(r"-+", "-", name)[:60].strip("-")


def _description(phrasing: str, count: int) -> str:
    text = PLACEHOLDER.sub(lambda m: "<" + m.group(1).replace("_", " ") + ">", phrasing).rstrip(" .?!")
    plural = "s" if count > 1 else ""
    return f"{text} (learned from {count} demonstration{plural})."[:300]


def learn_sop(demos: Sequence[Demo], *, name: str | None = None, classify: Classifier | None = None,
              path: str = "<learned>") -> LearnedSop:
    """Draft an SOP from one or more successful demonstrations of the same kind of task.

    Args:
        demos: the demonstrations, the first one leading (its steps are the ones aligned against).
        name: the SOP's name (a slug); default ``learned-<app>-<words of the goal>``.
        classify: marks sensitive steps (``edgepilot sop learn`` passes the policy engine's rules);
            without it no step is marked.
        path: where the SOP will be saved, for messages.

    Raises:
        SopError: no demonstrations, or the draft does not pass the SOP checks (a value too long for a
            step, too many steps); the message says what to change.
    """
    if not demos:
        raise SopError("no demonstrations to learn from; give one or more trajectory folders")
    notes: list[str] = []
    moves, phrasings, params = _draft(demos, classify, notes)
    if len(moves) > MAX_STEPS:
        raise SopError(f"the demonstration has {len(moves)} steps, more than an SOP may have ({MAX_STEPS}); "
                       "record the task in shorter parts")
    text = _render(demos, moves, phrasings, params, name, notes)
    try:
        sop = parse_sop(text, path)
    except SopError as exc:
        raise SopError(f"the drafted SOP does not pass the checks; edit the demonstration or write the SOP by "
                       f"hand:\n{exc}", exc.problems) from exc
    return LearnedSop(sop, text, tuple(notes))


def _draft(demos: Sequence[Demo], classify: Classifier | None,
           notes: list[str]) -> tuple[list[_Move], list[str], dict[str, _Param]]:
    """The merged steps, the phrasings and the parameters of the demonstrations."""
    runs: list[list[_Move]] = []
    phrasings: list[str] = []
    params: dict[str, _Param] = {}
    for demo in demos:
        moves, why = _moves(demo)
        notes.extend(why)
        found, phrasing = _abstract(demo, moves)
        if classify is not None:
            for move in moves:
                kind = classify(move.step) if move.kind != "finish" else None
                move.sensitive = kind if kind in SENSITIVE_KINDS or kind is None else "sensitive"
        for p in found:
            if p.name not in params:
                params[p.name] = p
            elif _broader(p.value, params[p.name].value):
                params[p.name] = replace(p, description=params[p.name].description)
        if phrasing not in phrasings:
            phrasings.append(phrasing)
        runs.append(moves)
    moves = [_merge_slot(slot, params) for slot in _align(runs, notes, [d.source for d in demos])]
    if not moves or moves[-1].kind != "finish":
        moves.append(runs[0][-1])
    return moves, phrasings, params


def _render(demos: Sequence[Demo], moves: list[_Move], phrasings: list[str], params: dict[str, _Param],
            name: str | None, notes: list[str]) -> str:
    """The SOP file: front matter, a comment naming the demonstrations, the numbered steps."""
    lines = [_step_line(n, m) for n, m in enumerate(moves, 1)]
    for n, move in enumerate(moves, 1):
        if move.kind == "type" and move.value and not PLACEHOLDER.search(move.value):
            notes.append(f'step {n} types "{move.value}" every time: the goal does not say it, so it stays as '
                         "demonstrated (edit the step if it should change from task to task)")
    used = set(PLACEHOLDER.findall("\n".join(lines))) | {n for p in phrasings for n in PLACEHOLDER.findall(p)}
    declared = [p for p in params.values() if p.name in used]
    for p in declared:
        if not any("{" + p.name + "}" in phrasing for phrasing in phrasings):
            notes.append(f"{{{p.name}}} differed between the demonstrations but no goal names it: a task must "
                         "give it, or the step should say where its value comes from")
    apps = _apps(demos, used)
    front = [
        "---",
        f"name: {_scalar(name or _default_name(phrasings[0], apps))}",
        f"description: {_scalar(_description(phrasings[0], len(demos)))}",
        f"apps: {_scalar(apps)}",
        "phrasings:",
        *[f"  - {_scalar(p)}" for p in phrasings],
    ]
    if declared:
        front.append("params:")
        front += [f"  {p.name}: {_scalar({'description': p.description, 'example': p.value})}" for p in declared]
    front += ["version: 1", "---"]
    sources = ", ".join(Path(d.source).name or d.source for d in demos)
    body = [f"<!-- drafted by edgepilot sop learn from {len(demos)} demonstration(s): {sources} -->", *lines]
    return "\n".join(front + body) + "\n"


def _apps(demos: Iterable[Demo], params: Iterable[str] = ()) -> list[str]:
    demos = list(demos)
    if "app" in params:  # the app is the task's to say: the SOP belongs to the screen it starts from
        first = demos[0].steps[0].screen
        return [a for a in (first.title, first.package) if a] or ["Android"]
    labels: list[str] = []
    packages: list[str] = []
    for demo in demos:
        for step in demo.steps:
            if isinstance(step.action, OpenApp) and step.action.app not in labels:
                labels.append(step.action.app)
            for package in (step.screen.package, step.after.package if step.after else ""):
                if package and package not in packages and not package.endswith(("launcher3", "systemui")):
                    packages.append(package)
    apps = (labels + packages)[:10]
    return apps or ["Android"]


def demos_from(trajectories: Iterable[Any]) -> list[Demo]:
    """:meth:`Demo.from_trajectory` for each trajectory (all errors reported at once).

    Raises:
        SopError: one or more trajectories cannot be learned from; the message lists each.
    """
    demos, problems = [], []
    for trajectory in trajectories:
        try:
            demos.append(Demo.from_trajectory(trajectory))
        except SopError as exc:
            problems.append(str(exc))
    if problems:
        raise SopError("\n".join(problems))
    return demos


