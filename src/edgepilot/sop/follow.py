"""Carry out an SOP's steps on a screen, without a model: the SOP checker (``edgepilot sop check``).

:class:`SopFollower` reads each step's words, finds what they name on the
screen (a line of an element, its description or its id) and gives one
:class:`~edgepilot.actions.Action` at a time. It understands the step forms
that ``edgepilot sop learn`` writes, which are also the plain way to write
steps by hand:

    Open the Settings app.
    Tap "Network & internet".                Scroll to "{name}" and tap it.
    Long-press "{name}".                     Tap the switch next to "Use Wi-Fi" if it is not {state}.
    Type "{message}" in the "Text message" field.
    Replace the text in the "label" field with "{label}".
    Press the back key.                      Swipe up.   Swipe down on "Status bar".   Wait 2 seconds.
    Finish: the task is done.                Finish and answer with the text of "contact_phone".
    Finish and answer with the text below "Phone".    ... the amount after "{account}".
    Finish and answer with the number in the last "message_text".

A step may say more after these words (``Tap "{name}" in the list (type in
"Search contacts" if it is not shown).``): that is advice, and only the first
form counts. A step may also offer a second way after ``, or `` written in a
form of its own (``Tap "{payee}" under "To", or type "{payee}" in the
"Recipient name" field.``): either way does the step (:func:`read_alternatives`);
the follower takes the first way whose target is in sight. When
the target is not on the screen the follower scrolls (up to
:data:`MAX_SCROLLS` times each way) before it gives up. A step that names a
parameter the task left unfilled, as the only words of a tap, taps the item
of the screen whose text the task sentence contains (what a person would do).

It proves that an SOP can be followed to the end on a phone; it does not judge
whether the steps are wise. It imports nothing from the agent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from edgepilot.actions import (
    Action,
    Click,
    DoubleClick,
    Finish,
    Key,
    KeyName,
    LongPress,
    OpenApp,
    RightClick,
    Swipe,
    Tap,
    Type,
    Wait,
    parse_action,
)
from edgepilot.errors import ActionError, SopError
from edgepilot.perception.types import Observation
from edgepilot.sop.carry import steps_with_kept
from edgepilot.sop.format import PLACEHOLDER, Sop, SopStep, fill_text
from edgepilot.sop.keys import HOTKEY_FORM, WAYS, hotkey_action
from edgepilot.sop.learn import ANSWER_WORDS
from edgepilot.sop.retrieve import Retriever
from edgepilot.sop.screen import LINE_JOIN, Screen, ScreenElement, find, in_list, next_to
from edgepilot.sop.values import shape, spans

MAX_SCROLLS = 5
LIST_TAP = re.compile(r'^Tap "(?P<value>[^"]+)" in the list')
"""A step that taps the item of a list a task names (``Tap "Recipes" in the list.``), as app-memory routes write
it: its value is an item the goal names, which the list may lack."""
_SHAPE_OF_WORDS = {word: shape for shape, word in ANSWER_WORDS.items()}
_Q = r'"(?P<{}>[^"]+)"'
FORMS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(pattern, re.IGNORECASE)) for name, pattern in (
    ("open", r"^open the app " + _Q.format("app")),
    ("open", r"^open (?:the )?(?P<app>.+?) app\b"),
    ("near", r"^(?P<verb>tap|long-press) the (?P<what>[\w -]+?) next to " + _Q.format("handle")
     + r"(?: if it is not (?P<state>on|off)\b)?"),
    ("near", r"^(?P<verb>tap) the " + _Q.format("handle") + r" (?P<what>switch|toggle|checkbox)"
     r"(?: if it is not (?:already )?(?P<state>on|off)\b)?"),
    ("near", r"^if " + _Q.format("handle") + r" is (?P<unless>on|off), tap it\b"),
    ("scroll", r"^scroll to " + _Q.format("handle") + r" and (?P<verb>tap|long-press) it"),
    ("scroll_type", r"^scroll to the " + _Q.format("field") + r' field and type "(?P<value>.*)"\.?$'),
    ("tap", r"^(?P<verb>tap|long-press|click|double-click|right-click) " + _Q.format("handle")),
    ("replace", r"^replace the text in the " + _Q.format("field") + r' field with "(?P<value>.*)"\.?$'),
    ("type", r'^type "(?P<value>.*)" (?:in|into) the ' + _Q.format("field") + " field"),
    ("type_focused", r'^type "(?P<value>.*)"\.?$'),
    ("hotkey", HOTKEY_FORM),
    ("key", r"^press (?:the )?(?P<key>[a-z_]+)(?: key)?\b"),
    ("swipe", r"^swipe (?P<direction>up|down|left|right)(?: on " + _Q.format("handle")
     + r"| (?:on|from) the (?P<place>[a-z -]+?)(?= at\b| to\b|[,.;]|$))?"),
    ("wait", r"^wait (?P<seconds>\d+(?:\.\d+)?) seconds?"),
    ("answer_literal", r'^finish and answer with "(?P<value>.*)"\.?$'),
    ("answer_after", r"^finish and answer with the (?P<what>[\w ]+?) after " + _Q.format("handle")),
    ("answer_in", r"^finish and answer with the (?P<what>[\w ]+?) in the (?:(?P<order>first|last) )?"
     + _Q.format("handle")),
    ("answer_of", r"^finish and answer with the text (?P<rule>of|below) " + _Q.format("handle")),
    ("finish", r"^finish\b"),
))
FORMS_HELP = ('Open the X app; Tap "X"; Long-press "X"; Click "X"; Double-click "X"; Press ctrl+s; '
              'Scroll to "X" and tap it; Tap the switch next to "X" '
              '[if it is not on|off]; Type "V" in the "F" field; Replace the text in the "F" field with "V"; '
              'Press the back key; Swipe up [on "X" | from the X]; Wait N seconds; Finish; Finish and answer with ...')


@dataclass(frozen=True)
class Instruction:
    """A step's words read as one action form (``FORMS``) and its parts."""

    form: str
    parts: dict[str, str]

    def get(self, name: str) -> str:
        return self.parts.get(name) or ""


def read_instruction(text: str) -> Instruction | None:
    """The form of a step's words, or None when the follower cannot carry it out."""
    text = " ".join(text.split())
    for form, pattern in FORMS:
        m = pattern.search(text)
        if m is not None:
            return Instruction(form, {k: v for k, v in m.groupdict().items() if v is not None})
    return None


def read_alternatives(text: str) -> list[Instruction]:
    """Every way a step's words give to do it: the first form, then each one after ``, or `` (outside
    quotes) that fits a form of its own. Empty when the first words fit no form (a step to read, say).

    ``Tap "X" under "To", or type "X" in the "Recipient name" field.`` gives a tap and a type; in
    ``Type "X" in the "To" field, or pick X from the list.`` the second way fits no form and is left out.
    """
    text = " ".join(text.split())
    first = read_instruction(text)
    if first is None:
        return []
    ways = [first]
    for m in WAYS.finditer(text):
        if text.count('"', 0, m.start()) % 2 == 0:  # not inside a quoted value
            other = read_instruction(text[m.end():])
            if other is not None:
                ways.append(other)
    return ways


def way_subgoal(way: Instruction) -> str | None:
    """One way of doing a step in the words of a planner's subgoal, the forms the decider's grammar is
    grounded by (``tap "X"``, ``long press "X"``, ``type "V" into F``, ``press enter``, ``swipe up``,
    ``open Settings``, ``click "X"``, ``double click "X"``, ``press ctrl+s``, ``replace the text in F with "V"``);
    None for a form those words cannot say (a switch named by the label beside it, a
    swipe on a named element, a wait) and for finishing, whose answer the planner reads off the screen.

    It is a rewrite of the words alone: whether the screen has what they name is the grounding's business.
    """
    form = way.form
    if form == "open":
        app = way.get("app")
        return None if PLACEHOLDER.search(app) else f"open {app}"  # ``Open the app "{app}"``: named later
    if form in ("tap", "scroll"):
        verb = _SUBGOAL_VERBS.get(way.get("verb").lower(), "tap")
        return f'{verb} "{way.get("handle")}"'
    if form == "replace":
        return f'replace the text in {way.get("field")} with "{way.get("value")}"'
    if form in ("type", "scroll_type"):
        return f'type "{way.get("value")}" into {way.get("field")}'
    if form == "type_focused":
        return f'type "{way.get("value")}"'
    if form == "key":
        key = way.get("key").lower()
        return f"press {key}" if key in get_args(KeyName) else None
    if form == "hotkey":
        return f"press {way.get('keys').lower()}"
    if form == "swipe" and not way.get("handle"):  # a place (``from the status bar``) is left to the decider
        return f"swipe {way.get('direction').lower()}"
    return None


_SUBGOAL_VERBS = {"long-press": "long press", "click": "click", "double-click": "double click",
                  "right-click": "right click"}
"""A step's verb in a planner's subgoal words (a tap otherwise)."""
_LOOSE_TAP = re.compile(r'\b(?P<verb>tap|long-press|click|double-click)\b[^"]*?"(?P<handle>[^"]+)"', re.IGNORECASE)
_LOOSE_TYPE = re.compile(r'\btype "(?P<value>[^"]*)"', re.IGNORECASE)
_LOOSE_FIELD = re.compile(r'"(?P<field>[^"]+)" field\b|\bthe (?P<bare>[a-z]+(?: [a-z]+)?) field\b', re.IGNORECASE)
_ADVICE = re.compile(r"\([^)]*\)")
_GO_BACK = re.compile(r"\bgo back\b", re.IGNORECASE)
_CONDITION = re.compile(r"\b(?:if|unless)\b", re.IGNORECASE)


def step_subgoals(text: str) -> list[str]:
    """A step's ways in the words of a planner's subgoal (:func:`way_subgoal`), first way first.

    A step whose words fit no form but still say to tap or type something quoted (``Tap the note "To do"``,
    ``Check the amount, then tap "Confirm transfer"``, ``Clear the "Phone" field and type "555-0199"``) is
    read loosely: the first of those verbs, with the quoted words after it (and a quoted ``"F" field``
    for typing). Empty when the step names nothing to act on (reading, finishing).
    """
    ways = read_alternatives(text) or read_loosely(text)
    return [w for w in map(way_subgoal, ways) if w]


def read_loosely(text: str) -> list[Instruction]:
    """A step that fits no form read loosely: the first verb that taps or types something quoted, with the
    quoted words after it (and a quoted ``"F" field`` for typing; ``Clear the "F" field and type`` replaces
    its text). Empty when the step says neither, or when it says to act only on a condition (``if``,
    ``unless``): a loose reading would act whatever the screen shows."""
    text = " ".join(text.split())
    if _CONDITION.search(_ADVICE.sub("", text)):  # advice in parentheses (``scroll if it is not shown``): no condition
        return []
    tap, typed = _LOOSE_TAP.search(text), _LOOSE_TYPE.search(text)
    if typed is not None and (tap is None or typed.start() < tap.start()):
        if re.match(r"\s*followed by\b", text[typed.end():], re.IGNORECASE):  # more than the quoted words
            return []
        field = _LOOSE_FIELD.search(text)
        if field is None:
            return [Instruction("type_focused", {"value": typed["value"]})]
        form = "replace" if re.search(r"\bclear\b", text[:typed.start()], re.IGNORECASE) else "type"
        return [Instruction(form, {"value": typed["value"], "field": field["field"] or field["bare"]})]
    if tap is not None:
        back = {"back_first": "yes"} if _GO_BACK.search(text[:tap.start()]) else {}
        return [Instruction("tap", {"verb": tap["verb"], "handle": tap["handle"], **back})]
    return []


class SopFollower:
    """Follows an SOP step by step on whatever screen it is shown; ``next_action`` is its one method.

    Args:
        sop: the SOP to follow.
        task: the task sentence; the SOP's parameters are filled from it.
        params: values to use instead of filling them from the task.
        library: other SOPs whose words help tell values from ordinary words when filling the parameters
            (``I`` or ``Which`` at the start of a question is not a name); default: the SOP alone.
        max_scrolls: scrolls each way before a missing target is an error.

    Raises:
        SopError: (from :meth:`next_action`) a step cannot be carried out: its words fit no form, a
            parameter it needs has no value, or what it names is not on the screen even after scrolling.
    """

    name = "sop-follower"

    def __init__(self, sop: Sop, task: str, *, params: Mapping[str, str] | None = None,
                 library: Iterable[Sop] = (), max_scrolls: int = MAX_SCROLLS) -> None:
        self.sop = sop
        if params is None:
            params = fill_from_task(sop, task, library)
        self.task = task
        self.params: dict[str, str] = dict(params)
        self.max_scrolls = max_scrolls
        self.pos = 0
        self._scrolls = 0
        self._direction: Literal["up", "down"] = "up"
        self._last_scrolled: tuple[ScreenElement, ...] | None = None
        self._went_back = False
        self.done: list[int] = []
        """The numbers of the steps carried out so far, in order (a skipped switch step counts)."""
        self.loose: set[int] = set()
        """The numbers of the steps read loosely (:func:`read_loosely`): in no form, so carried out as a guess."""

    @property
    def step(self) -> SopStep | None:
        """The step the follower is on, or None after the last."""
        return self.sop.steps[self.pos] if self.pos < len(self.sop.steps) else None

    def next_action(self, obs: Observation) -> Action:
        """The action for the current step on this screen (a scroll while its target is not in sight)."""
        screen = Screen.from_observation(obs)
        while (step := self.step) is not None:
            action = self._act(step, screen)
            if action == "skip":
                self._next()
                continue
            if action is None:
                return self._scroll(step, screen)
            if isinstance(action, _Before):  # a move the step makes before its own, the step still to do
                return action.action
            self._next()
            return action
        return Finish(status="success")

    def keep(self, value: str) -> None:
        """The current step read ``value`` and keeps it (``Read the code ... and remember it``: docs/sops.md,
        "Values kept for later"): the later steps that use it say it, quoted, and the follower moves on."""
        self.sop = self.sop.model_copy(update={"steps": steps_with_kept(self.sop.steps, self.pos + 1, value)})
        self._next()

    # ------------------------------------------------------------ one step

    def _next(self) -> None:
        self.done.append(self.pos + 1)
        self.pos += 1
        self._scrolls = 0
        self._direction = "up"
        self._last_scrolled = None
        self._went_back = False

    def _act(self, step: SopStep, screen: Screen) -> Action | _Before | str | None:
        """The step's action, ``"skip"`` when it has nothing to do here, None when its target is not in sight."""
        filled = fill_text(step.text, self.params)
        ways = read_alternatives(filled)
        if not ways and (ways := read_loosely(filled)):
            self.loose.add(self.pos + 1)
        if not ways:
            raise self._error(step, f"its words fit no form the SOP checker knows ({FORMS_HELP}), nor say to "
                                    "tap or type something quoted")
        if ways[0].get("back_first") and not self._went_back:  # ``Go back to the list and tap "X"``
            self._went_back = True
            return _Before(Key(key="back"))
        for instruction in ways:  # a second way only when the first one's target is not in sight
            action = self._act_one(step, screen, instruction, filled)
            if action is not None:
                return action
        return None

    def _act_one(self, step: SopStep, screen: Screen, instruction: Instruction, filled: str) -> Action | str | None:
        """:meth:`_act` for one way of doing the step."""
        form = instruction.form
        late = _lone(instruction.get("app" if form == "open" else "handle")) if form in _LATE_FORMS else None
        unfilled = [name for name in PLACEHOLDER.findall(filled) if name != late]
        if unfilled:
            raise self._error(step, f"the task does not say what {{{unfilled[0]}}} is (filled from the task: "
                                    f"{self.params or 'nothing'}); name it in the task or pass it")
        if form == "open":
            app = instruction.get("app")
            if late is not None:  # an app the task names, shown on the screen
                element, app = self._named_by_task(screen)
                if element is None:
                    return None
                self.params[late] = app
            return OpenApp(app=app)
        if form in ("tap", "scroll", "near"):
            return self._tap(step, screen, instruction)
        if form in ("type", "replace", "scroll_type", "type_focused"):
            return self._type(step, screen, instruction)
        if form == "hotkey":
            return hotkey_action(instruction.get("keys"))
        if form == "key":
            try:
                return parse_action({"type": "key", "key": instruction.get("key").lower()})
            except ActionError as exc:
                raise self._error(step, f"no key called {instruction.get('key')!r}") from exc
        if form == "swipe":
            target = None
            if instruction.get("handle"):
                hits = find(screen, instruction.get("handle"))
                if not hits:
                    return None
                target = hits[0].index
            elif instruction.get("place"):  # ``from the status bar``: that element when the screen has one
                target = next((e.index for e in find(screen, instruction.get("place"))), None)
            return Swipe(direction=instruction.get("direction").lower(), target=target)  # type: ignore[arg-type]
        if form == "wait":
            return Wait(seconds=min(30.0, float(instruction.get("seconds"))))
        if form == "finish":
            return Finish(status="success")
        return self._answer(step, screen, instruction)

    def _tap(self, step: SopStep, screen: Screen, instruction: Instruction) -> Action | str | None:
        handle = instruction.get("handle")
        if instruction.form == "near":
            control, state = near_control(screen, instruction)
            if control is None:
                return None
            if state and control.checked == (state == "on"):
                return "skip"
            element = control
        else:
            element = self._target(screen, handle, want="tap")
            if element is None:
                return None
        verb = instruction.get("verb").lower()
        kind = {"long-press": LongPress, "click": Click, "double-click": DoubleClick, "right-click": RightClick}
        return kind.get(verb, Tap)(target=element.index)

    def _type(self, step: SopStep, screen: Screen, instruction: Instruction) -> Action | None:
        value = instruction.get("value")
        if instruction.form == "type_focused":
            return Type(text=value)
        field = instruction.get("field")
        hits = find(screen, field, want="type")
        if not hits:
            return None
        element = next((h for h in hits if h.editable), hits[0])  # the field, not a label that says the same
        if not element.editable:  # a label above its field (or, in GTK's file choosers, right after it)
            near = [*screen.elements[element.index + 1: element.index + 3], *screen.elements[max(0, element.index - 1):
                                                                                             element.index][::-1]]
            element = next((e for e in near if e.editable), element)
        return Type(text=value, target=element.index, clear=instruction.form == "replace")

    def _answer(self, step: SopStep, screen: Screen, instruction: Instruction) -> Action | None:
        form, handle = instruction.form, instruction.get("handle")
        if form == "answer_literal":
            return Finish(answer=instruction.get("value"))
        wanted = _SHAPE_OF_WORDS.get(instruction.get("what").lower(), "text")
        answer: str | None = None
        if form == "answer_after":
            answer = _after(screen, handle, wanted)
        elif form == "answer_in":
            hits = [e for e in screen.elements if e.rid == handle] or find(screen, handle)
            if hits:
                element = hits[-1] if instruction.get("order").lower() == "last" else hits[0]
                answer = _value_in(element.text, wanted)
        else:
            hits = find(screen, handle)
            if hits and instruction.get("rule") == "below":
                hits = [e for e in screen.elements[hits[0].index + 1: hits[0].index + 2]]
            answer = hits[0].text if hits else None
        if not answer:
            return None
        return Finish(status="success", answer=answer)

    # ------------------------------------------------------------ values

    def _target(self, screen: Screen, handle: str, *, want: str) -> ScreenElement | None:
        """The element a tap names; a lone unfilled placeholder takes the item the task sentence names."""
        late = _lone(handle)
        if late is not None:
            element, value = self._named_by_task(screen)
            if element is not None:
                self.params[late] = value
            return element
        hits = find(screen, handle, want=want)
        return hits[0] if hits else None

    def _named_by_task(self, screen: Screen, *, listed: bool = True) -> tuple[ScreenElement | None, str]:
        """The interactive element whose line the task sentence contains: the longest such line, one that
        is not already another parameter's value if there is one. With ``listed``, only items of a list
        (contacts, alarms, products: what a parameter picks), not the app's fixed parts."""
        task, used = self.task.casefold(), {v.casefold() for v in self.params.values()}
        found = [(element, line) for element in screen.elements if (element.clickable or element.checkable)
                 and (not listed or in_list(screen, element))
                 for line in element.labels if re.search(rf"(?<!\w){re.escape(line.casefold())}(?!\w)", task)]
        found.sort(key=lambda hit: (hit[1].casefold() not in used, len(hit[1])), reverse=True)
        return found[0] if found else (None, "")

    def _scroll(self, step: SopStep, screen: Screen) -> Action:
        """Scroll towards the end of the list, then back; a scroll that moved nothing turns back at once."""
        if self._last_scrolled is not None and (self._last_scrolled == screen.elements
                                                or self._scrolls >= self.max_scrolls):
            if self._direction == "down":
                where = f' on the screen "{screen.title}"' if screen.title else ""
                raise self._error(step, f"what it names is not{where}, even after scrolling both ways")
            self._direction, self._scrolls = "down", 0
        self._scrolls += 1
        self._last_scrolled = screen.elements
        return Swipe(direction=self._direction)

    def _error(self, step: SopStep, why: str) -> SopError:
        return SopError(f"{self.sop.name} step {step.number} ({step.text!r}): {why}")


def near_control(screen: Screen, instruction: Instruction) -> tuple[ScreenElement | None, str]:
    """For a step of the ``near`` form (``Tap the switch next to "X" if it is not on``, ``If "X" is off, tap it``):
    the control it names on ``screen`` (None when not in sight) and the state the step wants (``on``, ``off``, or
    ``''`` when it wants a tap whatever the state)."""
    label = next(iter(find(screen, instruction.get("handle"))), None)
    control = label if label is not None and label.checkable else \
        next_to(screen, label) if label is not None else None
    unless = instruction.get("unless").lower()  # ``If "X" is off, tap it``: wanted on
    return control, instruction.get("state").lower() or {"on": "off", "off": "on"}.get(unless, "")


def switch_step(text: str, obs: Observation) -> Action | str | None:
    """What a filled step that sets a switch (the ``near`` form) asks on this screen, decided from the switch's own
    state: a tap on it, ``"skip"`` when it already shows the state wanted, None when the step is of another form,
    the switch is not in sight, or the step wants no particular state (a model decides those)."""
    way = read_instruction(text)
    if way is None or way.form != "near" or way.get("verb").lower() not in ("", "tap"):
        return None
    control, state = near_control(Screen.from_observation(obs), way)
    if control is None or not state or not control.checkable:
        return None
    return "skip" if control.checked == (state == "on") else Tap(target=control.index)


def fill_from_task(sop: Sop, task: str, library: Iterable[Sop] = ()) -> dict[str, str]:
    """The SOP's parameters found in the task sentence.

    Filled twice: next to the library's SOPs, whose words tell ordinary words from values (``I`` and
    ``Which`` are not names), and alone, where words that other SOPs use can still be values (``off``).
    The first wins; from the second, only values with a telling shape (a time, a number, on/off...) are
    added, since a name found by the SOP alone may well be an ordinary word.
    """

    others = [s for s in library if s.name != sop.name]
    params = Retriever([*others, sop]).fill(sop, task) if others else {}
    for name, value in Retriever([sop]).fill(sop, task).items():
        if name not in params and (not others or shape(value) not in ("name", "text")):
            params[name] = value
    return {name: params[name] for name in sop.params if name in params}


_LATE_FORMS = ("open", "tap", "scroll")


@dataclass(frozen=True)
class _Before:
    """An action a step takes before the one it is for (the back press of ``Go back ... and tap "X"``)."""

    action: Action


def _lone(text: str) -> str | None:
    """The name of a placeholder that is all of ``text`` (a value the screen may supply), else None."""
    m = re.fullmatch(r"\{([a-z_][a-z0-9_]*)\}", text)
    return m.group(1) if m else None


def _after(screen: Screen, prefix: str, wanted: str) -> str | None:
    """The value after ``prefix`` in an element's text: the rest of that line, or the first value of the
    wanted shape after it."""
    key = prefix.casefold()
    for element in screen.elements:
        text = element.text
        at = text.casefold().find(key)
        if at < 0:
            continue
        rest = text[at + len(key):].lstrip(" ·:")
        value = _value_in(rest, wanted) if wanted != "text" else rest.split(LINE_JOIN)[0].strip()
        if value:
            return value
    return None


def _value_in(text: str, wanted: str) -> str | None:
    """The first value of shape ``wanted`` in ``text`` (the whole text for ``text``)."""
    if wanted == "text":
        return text.strip() or None
    for span in spans(text):
        if span.shape == wanted or (wanted == "amount" and span.shape == "digits"):
            return span.text
    return None
