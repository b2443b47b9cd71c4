"""Values a procedure reads on one screen and uses on another: the focus memory of a task across apps.

A step that reads a value to keep says so: ``Read the balance shown under "Savings" and remember it``. A later
step uses it by the words ``the WHAT you remembered``: ``Type the code you remembered in the "Note" field``,
``Type "Ann Lee: " followed by the number you remembered in the "Text message" field``. The agent takes the value
off the screen at the reading step (:func:`kept_choices` gives what it can be; the model chooses where more than
one fits) and the procedure's later steps are rewritten with it quoted (:func:`with_kept`), so that they are
grounded, shown and checked like any step that quotes its text (docs/sops.md, "Values kept for later").
"""

from __future__ import annotations

import re

from edgepilot.perception.types import Observation
from edgepilot.sop.format import MAX_STEP_CHARS, SopStep
from edgepilot.sop.retrieve import QUOTED
from edgepilot.sop.screen import Screen, find
from edgepilot.sop.values import shape, values_in

KEEPS = re.compile(r"^read\b(?P<what>.*?)\band (?:remember|keep) it\b", re.IGNORECASE)
"""A step that reads a value and keeps it for a later step (``Read the code ... and remember it``)."""

USES = re.compile(r'(?:"(?P<prefix>[^"]*)" followed by )?\bthe (?P<what>[\w ]+?) you remembered\b'
                  r'(?:,? as shown(?: \([^)]*\))?,?)?', re.IGNORECASE)
"""Where a step uses a kept value (``the code you remembered``; ``"Ann: " followed by the number you remembered``;
``the balance you remembered, as shown (like $1,234.56),``)."""

_FIELD = re.compile(r'\bin the "(?P<field>[^"]+)" field\b', re.IGNORECASE)
_WORD_SHAPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("code", ("digits",)), ("pin", ("digits",)), ("phone", ("phone",)), ("number", ("phone", "digits", "amount")),
    ("balance", ("amount",)), ("amount", ("amount",)), ("price", ("amount",)), ("total", ("amount", "digits")),
    ("time", ("time",)), ("email", ("email",)), ("address", ("email",)), ("website", ("domain",)))
"""The words of a reading step that name the shape of what it reads, likeliest first (``Read the code ...``:
digits; a ``number`` is a phone number above "Mobile", a plain number on a calculator's display)."""


def what_kept(text: str) -> str | None:
    """What a procedure step reads and keeps for later, in its words (``the code in the newest message``), or None
    for a step that keeps nothing (:data:`KEEPS`)."""
    m = KEEPS.match(" ".join(text.split()))
    return None if m is None else " ".join(m["what"].split())


def keeps(text: str) -> bool:
    """Whether a procedure step reads a value and keeps it for later (:data:`KEEPS`)."""
    return what_kept(text) is not None


def uses(text: str) -> bool:
    """Whether a procedure step uses a value kept earlier (:data:`USES`)."""
    return USES.search(" ".join(text.split())) is not None


def wanted_shapes(text: str) -> tuple[str, ...]:
    """The shapes the value a reading step keeps may have, likeliest first, from the words before ``and remember
    it`` (a ``code`` is digits, a ``number`` a phone number or a plain number, a ``balance`` an amount, a ``time``
    a time); empty when they name none (``the text in the "Note" field``, ``the line "Monday: ..."``)."""
    what = what_kept(text)
    if what is None:
        return ()
    words = re.findall(r"[a-z]+", QUOTED.sub(" ", what).casefold())
    return next((wanted for word in words for name, wanted in _WORD_SHAPES if word == name), ())


def kept_choices(obs: Observation, text: str, choices: list[str]) -> list[str]:
    """What the value kept at reading step ``text`` can be, best first, out of the screen's ``choices`` (the
    answer choices for the step: :func:`edgepilot.agent.roles.answer_choices`).

    A step that reads ``in the "F" field`` reads the text of that field: all of it, or where the step names a
    shape (:func:`wanted_shapes`), the values of that shape inside it (``the time in the "Note" field`` is the time
    the note gives, not the note). Else the choices of the likeliest shape the step names that some have. Empty
    where the step names shapes and no choice has one of them (the value is not on this screen); all the choices
    where it names none.
    """
    flat = " ".join(text.split())
    field = _FIELD.search(flat)
    wanted = wanted_shapes(flat)
    if field is not None:
        texts = field_texts(obs, field["field"])
        if texts and not wanted:
            return texts
        if texts:
            choices = list(dict.fromkeys(c for t in texts for c in (t, *values_in(t))))
    if not wanted:
        return choices
    return next(([c for c in choices if shape(c) == one] for one in wanted if any(shape(c) == one for c in choices)),
                [])


def steps_with_kept(steps: tuple[SopStep, ...], after: int, value: str) -> tuple[SopStep, ...]:
    """``steps`` with the kept ``value`` said (:func:`with_kept`) in each step past the first ``after`` that uses
    it: what the agent's progress and the SOP checker do once a reading step kept a value."""
    return tuple(step.model_copy(update={"text": with_kept(step.text, value)[:MAX_STEP_CHARS]})
                 if i > after and uses(step.text) else step for i, step in enumerate(steps, start=1))


def field_texts(obs: Observation, name: str) -> list[str]:
    """The texts of the filled fields that ``name`` names: by their hint (a filled field keeps it, though the
    screen shows its text instead: ``Note`` names the note's text), else by the rules of a step's quoted words
    (:func:`~edgepilot.sop.screen.find`)."""
    key = " ".join(name.split()).casefold()
    texts = [node.text.strip() for node in obs.elements
             if node.editable and not node.password and node.text.strip()
             and " ".join(node.hint.split()).casefold() == key]
    if not texts:
        screen = Screen.from_observation(obs)
        texts = [e.text.strip() for e in find(screen, name, want="type") if e.editable and not e.password
                 and e.text.strip()]
    return list(dict.fromkeys(texts))


def with_kept(text: str, value: str) -> str:
    """Step ``text`` with the kept ``value`` quoted where it says to use it (:data:`USES`); the text unchanged
    where it does not. ``Type the code you remembered in the "Note" field.`` becomes ``Type "482913" in the "Note"
    field.``"""
    flat = " ".join(text.split())
    return USES.sub(lambda m: '"' + (m["prefix"] or "") + value.replace('"', "'") + '"', flat)
