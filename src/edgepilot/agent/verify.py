"""Check a finished run against its goal before it is reported as a success (docs/trajectories.md, "Statuses").

A run that the agent says is done is checked against the procedure it followed and the values the goal gave:

- every value a step says to tap (``Tap "{title}"``) was tapped, or typed: the note deleted is the one named,
  the message went to the one named;
- every value a step says to type (``Type "{message}" ...``) was typed;
- a procedure that ends in an answer got one: not empty, of the kind asked (a balance is an amount, a code has
  digits, a number or address is a phone number or an e-mail address, a temperature has digits), and with
  every value in it read off a screen the run saw, never made up.

A run that fails a check ends ``unverified`` with the check that failed. A model agent's run with no procedure
(or along an app memory's route) has nothing to be checked against: it ends ``unverified`` too, and its reason
says nothing checked it, so exit status 0 means a checked success (docs/trajectories.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from edgepilot.actions import Finish, Type
from edgepilot.perception.describe import describe_action
from edgepilot.sop.understand import answers
from edgepilot.sop.values import shape, values_in

_STEP_TAP = re.compile(r"\bTap (?:the [a-z ]+ )?\"?\{([a-z_][a-z0-9_]*)\}\"?", re.I)
_STEP_TYPE = re.compile(r"\bType \"\{([a-z_][a-z0-9_]*)\}\"", re.I)
_KINDS: tuple[tuple[re.Pattern[str], tuple[str, ...], str], ...] = (
    (re.compile(r"\bbalance\b", re.I), ("amount",), "an amount of money"),
    (re.compile(r"\bcode\b", re.I), ("digits",), "a code with digits"),
    (re.compile(r"\bemail|e-mail\b", re.I), ("email",), "an e-mail address"),
    (re.compile(r"\b(?:phone )?number\b", re.I), ("phone",), "a phone number"),
    (re.compile(r"\b(?:temperature|high|low|degrees|warm|hot|cold)\b", re.I), ("digits",), "a temperature"),
    (re.compile(r"\bversion\b", re.I), ("digits",), "a version number"),
)


_STEP_KINDS = (
    *(kind for kind in _KINDS if "phone" not in kind[1]),
    (re.compile(r"\bphone number\b", re.I), ("phone",), "a phone number"),
    (re.compile(r"\bnumber\b", re.I), ("digits", "amount", "phone"), "a number"),
    (re.compile(r"\bsize\b", re.I), ("size",), "a size (width x height)"),
)
"""What a procedure's last step says the answer is (``Finish and answer with the number the display shows``): a
number there is any number, where a goal's ``number`` asks for a phone number (``the library's number``)."""


def _words(text: str) -> str:
    return " ".join(text.casefold().split())


def _seen_text(steps: Sequence[Any]) -> str:
    """Every text and description the run's screens showed, lower-cased."""
    parts: list[str] = []
    for step in steps:
        for node in getattr(step.obs, "nodes", ()):
            parts.extend(x for x in (getattr(node, "text", ""), getattr(node, "content_desc", "")) if x)
    return _words(" \n ".join(parts))


def answer_kind(goal: str, final_step: str) -> tuple[tuple[str, ...], str] | None:
    """The shapes an answer must contain for this goal, and their name; None when any answer will do."""
    for pattern, shapes, name in _KINDS:
        if pattern.search(goal):
            return shapes, name
    for pattern, shapes, name in _STEP_KINDS:
        if pattern.search(final_step):
            return shapes, name
    return None


def check_result(match: Any | None, goal: str, steps: Sequence[Any], answer: str | None) -> str | None:
    """Why a run the agent finished is not a checked success, or None when every check holds.

    Args:
        match: the procedure followed (an :class:`~edgepilot.sop.retrieve.Match`), or None.
        goal: the goal as typed.
        steps: the run's steps (``StepReport``).
        answer: the answer the agent finished with.
    """
    if match is None:
        return None
    params = dict(match.params)
    acted = [step for step in steps if step.action is not None and not isinstance(step.action, Finish)
             and (step.gate is None or step.gate.allowed)]
    tapped = _words(" \n ".join(describe_action(step.action, step.obs) for step in acted))
    typed = _words(" \n ".join(step.action.text for step in acted if isinstance(step.action, Type)))
    for raw in match.sop.steps:
        failures = []
        for way in raw.text.split(", or "):  # any of a step's ways completes it
            wanted = [(n, "typed") for n in _STEP_TYPE.findall(way)] + [(n, "tapped") for n in _STEP_TAP.findall(way)]
            missed = [(n, how) for n, how in wanted if params.get(n)
                      and _words(params[n]) not in typed and (how == "typed" or _words(params[n]) not in tapped)]
            if not wanted or not missed:
                failures = []
                break
            failures.append(missed[0])
        if failures:
            name, how = failures[0]
            return (f"the goal's {name} {params[name]!r} was never typed" if how == "typed"
                    else f"nothing named {params[name]!r} was tapped (the goal's {name})")
    unmet = finish_unmet(match, steps)
    if unmet:
        return unmet
    if not answers(match.sop):
        return None
    if not answer or not answer.strip():
        return "the goal asks for an answer and the agent gave none"
    last = match.sop.steps[-1].text if match.sop.steps else ""
    kind = answer_kind(goal, last)
    found = values_in(answer)
    if kind is not None:
        shapes, name = kind
        if not any(shape(v) in shapes or (s == "digits" and re.search(r"\d", v)) for v in found for s in shapes):
            return f"the answer {answer!r} is not {name}"
    seen = _seen_text(steps)
    made_up = [v for v in found if _words(v) not in seen and _words(v.lstrip("$")) not in seen]
    if made_up:
        return f"the answer's {made_up[0]!r} was not on any screen the run saw"
    return None


_GONE = re.compile(r"\b(?:is|are) gone\b|\bno longer (?:shows?|in|listed)\b|\bdisappears?\b", re.I)


def finish_unmet(match: Any, steps: Sequence[Any]) -> str | None:
    """What the screen the agent finished on shows against the procedure's last step, ``Finish when ...``: a
    value it says is gone (``Finish when "{title}" is gone from the list``; ``the alarm is gone``: the value
    its steps tap) still shown, or a quoted text it says shows (``"{network}" shows "Connected"``) not shown.
    None when they agree, or when the last step says nothing this can check."""
    filled = match.steps[-1].text if match.sop.steps else ""
    m = re.match(r"\s*Finish when (.*?)(?:\s*\(screen:[^)]*\))?\.?\s*$", filled, re.I)
    if m is None or not steps:
        return None
    cond = m[1]
    final = _seen_text(steps[-1:])
    if not final:
        return None
    quoted = [q for q in re.findall(r'"([^"]+)"', cond) if q.strip()]
    params = dict(match.params)
    if _GONE.search(cond):
        named = quoted or [v for v in params.values() if v and _words(v) in _words(cond)] or [
            params[n] for raw in match.sop.steps for n in _STEP_TAP.findall(raw.text) if params.get(n)]
        still = next((v for v in named if _words(v) in final), None)
        return f"{still!r} still shows, where the procedure ends with it gone" if still else None
    missing = next((q for q in quoted if _words(q) not in final), None)
    return f"the screen it finished on does not show {missing!r} ({cond})" if missing else None


def nothing_found(match: Any | None, action: Any, after: Any, before: Any = None) -> str | None:
    """Why the goal cannot be done here, when searching for a value the procedure needs to find (a contact, a
    note) left no element but the search field itself showing it: ``nothing named 'Bob' here``; None otherwise.

    Only typing into a search field counts (its text, hint, name or id says so: a recipient field may take any
    name), only a value that a step says to tap (``Tap "{name}" ...``), and never a phone number or other
    number."""
    if match is None or not isinstance(action, Type) or not action.text.strip():
        return None
    field = _target_node(before, action.target)
    if field is None or "search" not in " ".join(
            [field.text, field.content_desc, field.hint, field.name, field.resource_id]).lower():
        return None
    typed = _words(action.text)
    wanted = {name for raw in match.sop.steps for name in _STEP_TAP.findall(raw.text)}
    hit = next((name for name in wanted if _words(str(match.params.get(name, ""))) == typed), None)
    if hit is None or shape(action.text) in ("phone", "digits", "email", "card", "amount", "time"):
        return None
    shown = [node for node in getattr(after, "nodes", ()) if not node.editable and node.visible
             and typed in _words(f"{node.text} {node.content_desc}")]
    if shown:
        return None
    app = getattr(after, "package", "") or "this app"
    return f"nothing named {action.text.strip()!r} was found in {app} (the goal's {hit})"


def _target_node(obs: Any, target: Any) -> Any:
    """The node an action's element index points at in ``obs`` (None for a point or no observation)."""
    if obs is None or not isinstance(target, int):
        return None
    elements = getattr(obs, "elements", ())
    if not 0 <= target < len(elements):
        return None
    return elements[target]
