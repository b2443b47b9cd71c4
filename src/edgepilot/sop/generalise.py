"""Generalising drafted steps: values become ``{param}`` placeholders, several demonstrations one set of steps.

Steps 2 and 3 of :func:`edgepilot.sop.learn.learn_sop`: a value the goal
sentence names (the contact, the message, the on/off of a switch) becomes a
parameter, and the goal with the same placeholders a phrasing; the steps of
several demonstrations are aligned by what each acts on, and a value that
differs between them without a goal naming it becomes a parameter too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from edgepilot.sop.demo import Demo
from edgepilot.sop.format import PLACEHOLDER
from edgepilot.sop.moves import Move, Param
from edgepilot.sop.screen import Screen, ScreenElement, in_list
from edgepilot.sop.values import Span, shape, spans

STRONG_SHAPES = frozenset({"time", "email", "card", "phone", "domain", "amount", "digits", "weekday"})
_SHAPE_NAMES = {"time": "time", "email": "email", "phone": "phone", "amount": "amount", "card": "card_number",
                "domain": "website", "weekday": "day", "digits": "number"}
_ID_SUFFIXES = ("_option", "_row", "_item", "_field", "_input", "_edit", "_button", "_view")


def abstract_values(demo: Demo, moves: list[Move]) -> tuple[list[Param], str]:
    """Turn the demonstration's values into parameters: fill the moves' placeholders, return the parameters
    and the goal as a phrasing."""
    goal = demo.goal
    known = frozenset(w.casefold() for st in demo.steps for e in st.screen.elements
                      for w in re.findall(r"[A-Za-z0-9]+", " ".join([*e.lines, e.desc])))
    value_spans = spans(goal, known)
    params: list[Param] = []
    only_open = all(m.kind in ("open", "finish") for m in moves)
    for move in moves:
        _move_values(move, goal, value_spans, only_open, params)
    state = next((m for m in moves if m.state), None)
    if state is not None and re.search(rf"\b{state.state}\b", goal, re.IGNORECASE):
        _add(params, state.state, "state", "on or off: the state the switch should end in")
    _fill_moves(moves, params)
    return params, _phrasing(goal, params)


def _add(params: list[Param], value: str, name: str, description: str) -> None:
    """A parameter for ``value``, unless it is too short to be one or another parameter holds it; a name
    already taken gets a number."""
    value = value.strip()
    if len(value) < 2 or any(p.value.casefold() == value.casefold() for p in params):
        return
    taken = {p.name for p in params}
    base, n = name, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    params.append(Param(name, value, description))


def _move_values(move: Move, goal: str, value_spans: Sequence[Span], only_open: bool, params: list[Param]) -> None:
    """The parameters one step's values make, when the goal names them (a tapped label the goal does not name
    loses the part that comes from elsewhere)."""
    target = move.step.target
    if move.kind == "type" and move.value and _find_word(goal, move.value) >= 0:
        _add(params, move.value, _value_name(move.value, target, field_handle=move.handle),
             f'the text typed in the "{move.handle}" field' if move.handle else "the text typed")
    elif move.kind in ("tap", "long_press") and not move.near and move.handle and target is not None:
        named = next((line for line in target.labels if _goal_value(goal, line, value_spans)
                      and _listed(move.step.screen, target, line)), None)
        if named is not None:
            move.handle = move.raw_handle = named
            _add(params, named, _value_name(named, target), "the item to tap in the list")
        else:
            move.handle = move.raw_handle = _fixed_part(move.handle, goal)
    elif move.kind == "open" and only_open and _find_word(goal, move.value) >= 0:
        _add(params, move.value, "app", "the app to open")
    elif move.kind == "finish" and move.answer is not None and move.answer[0] == "after":
        holder = next((e for e in move.step.screen.elements if move.answer[2] in e.lines), None)
        for span in value_spans:
            if span.text.casefold() in move.answer[2].casefold() and len(span.text) >= 2:
                name = _SHAPE_NAMES.get(span.shape) or _value_name(span.text, holder)
                _add(params, span.text, name, "what the answer is read next to")
    elif move.kind == "finish" and move.value and _find_word(goal, move.value) >= 0:
        _add(params, move.value, "answer", "the answer")


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


def _substitute(text: str, params: Sequence[Param]) -> str:
    """Each parameter's value in ``text`` replaced by its placeholder, longest values first."""
    if not text:
        return text
    for p in sorted(params, key=lambda p: -len(p.value)):
        if p.name == "state":
            continue
        text = re.sub(rf"(?<![\w{{]){re.escape(p.value)}(?![\w}}])", lambda _m, n=p.name: f"{{{n}}}", text,
                      flags=re.IGNORECASE)
    return text


def _fill_moves(moves: list[Move], params: Sequence[Param]) -> None:
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


def _phrasing(goal: str, params: Sequence[Param]) -> str:
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


def align(runs: list[list[Move]], notes: list[str], sources: Sequence[str]) -> list[list[Move]]:
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


def merge_slot(slot: list[Move], params: dict[str, Param]) -> Move:
    """One move for a slot: the most abstract demonstration's, settled value by value (:func:`_settle`)."""
    best = max(slot, key=lambda m: sum(len(PLACEHOLDER.findall(t)) for t in m.texts()))
    move = replace(best)

    def new_param(raw: str, description: str, field_handle: str | None) -> str:
        name = _free_name(_value_name(raw, move.step.target, field_handle=field_handle), params)
        params[name] = Param(name, raw, description + " (it differed between demonstrations and the goal did "
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


def _end_state(move: Move) -> str | None:
    """The state a demonstrated switch was left in, or None for other steps."""
    target = move.step.target
    if not move.state or target is None:
        return None
    return "off" if target.checked else "on"


def broader(value: str, than: str) -> bool:
    """Whether ``value`` makes a better example than ``than``: free text over a name (retrieval takes the
    example's shape as the shape every value must have), a longer text over a shorter one."""
    rank = {"text": 2, "name": 1}
    a, b = rank.get(shape(value), 0), rank.get(shape(than), 0)
    return a > b or (a == b == 2 and len(value.split()) > len(than.split()))


def _free_name(name: str, params: dict[str, Param]) -> str:
    base, n = name, 1
    while name in params:
        n += 1
        name = f"{base}_{n}"
    return name

