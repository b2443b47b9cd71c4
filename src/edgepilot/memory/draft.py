"""A procedure drafted from an app memory's route: `edgepilot sop draft --from-memory "GOAL"` (docs/memory.md).

The route the agent would follow for the goal (:func:`edgepilot.memory.routes.route_procedure`) is written
as an SOP file for a person to read, check (`edgepilot sop check`) and add (`edgepilot sop add`). Values the
goal gave become parameters: text the route types (`Type "555-0199" in the "Phone" field.` →
`{phone}`) and a list item it picks (`Tap "Recipes" in the list.` → `{item}`), wherever the goal says them;
the goal, with those values replaced by their parameters, is the procedure's first phrasing. What the goal
does not say stays as the route has it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from edgepilot.errors import SopError
from edgepilot.memory.model import AppMemory
from edgepilot.memory.routes import recall, route_procedure, two_app_route
from edgepilot.sop.follow import LIST_TAP
from edgepilot.sop.format import SopStep, parse_sop
from edgepilot.sop.learn import LearnedSop, default_name, yaml_scalar
from edgepilot.sop.understand import clean_goal
from edgepilot.sop.values import shape

_TYPED = re.compile(r'^Type "(?P<value>[^"]+)" in the "(?P<field>[^"]+)" field')
_REPLACED = re.compile(r'^Replace the text in the "(?P<field>[^"]+)" field with "(?P<value>[^"]+)"')
_STOP_NAME = frozenset({"the", "a", "an", "my", "to", "in", "on", "of", "for", "and", "or", "please", "pls", "it"})
_QUOTES = frozenset({'""', "''", "“”", "‘’", "«»"})
_SHAPE_NAMES = frozenset({"phone", "email", "time", "amount", "url", "pin", "date"})
"""Shapes of a typed value (:func:`edgepilot.sop.values.shape`) that name its parameter better than its field."""


def _field_name(label: str) -> str:
    """A parameter name from a field's label: its first two words that say something (``To: type a name or
    number`` → ``type_name``)."""
    words = [w for w in re.findall(r"[a-z0-9]+", label.casefold()) if w not in _STOP_NAME and len(w) > 1]
    return _slug(" ".join(words[:2]), "value")


def _slug(text: str, fallback: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.casefold())
    name = "_".join(words)[:30].strip("_")
    return name if name and name[0].isalpha() else fallback


def _in_goal(value: str, goal: str) -> re.Match[str] | None:
    return re.search(r"(?<!\w)" + re.escape(value) + r"(?!\w)", goal, re.IGNORECASE)


def draft_from_memory(goal: str, memories: Iterable[AppMemory], *, name: str | None = None) -> LearnedSop:
    """The procedure an app memory's route gives ``goal``, as a draft SOP.

    Raises:
        GoalError: the goal is empty, far too long, or has no words.
        SopError: nothing remembered fits the goal (explore the app first), or the draft fails the SOP checks.
    """
    goal = clean_goal(goal)  # an empty, far too long or wordless goal is a clear error, as for `edgepilot run`
    memories = list(memories)
    if not memories:
        raise SopError("no app memories: explore an app first (`edgepilot explore --app NAME`)")
    targets = recall(goal, memories)
    carried = two_app_route(goal, memories)  # a value read in one app and used in another
    if not targets and carried is None:
        apps = ", ".join(sorted(m.app for m in memories))
        raise SopError(f"nothing in the memories of {apps} fits {goal!r}; explore the app the goal is about "
                       "(`edgepilot explore --app NAME`), or word the goal as its screens do")
    route = carried or route_procedure(goal, targets[0])
    memory = next(m for m in memories if m.app == route.sop.apps[0])
    described = route.sop.description if carried is not None else targets[0].describe()
    params: dict[str, tuple[str, str]] = {}  # name -> (value, description)
    phrasing = goal.strip()
    steps: list[SopStep] = []
    for step in route.sop.steps:
        text = step.text
        for pattern, kind in ((_TYPED, "typed"), (_REPLACED, "typed"), (LIST_TAP, "picked")):
            m = pattern.match(text)
            found = _in_goal(m["value"], phrasing) if m is not None else None
            if found is None:
                continue
            if kind == "typed":
                known = shape(m["value"])
                pname = known if known in _SHAPE_NAMES else _field_name(m["field"])
                what = f"what to type in the {m['field']} field"
            else:
                pname = "item"
                what = "the list item the task is about"
            while pname in params and params[pname][0].casefold() != m["value"].casefold():
                pname += "_2"
            params[pname] = (m["value"], what)
            text = text[:m.start("value")] + "{" + pname + "}" + text[m.end("value"):]
            start, end = found.start(), found.end()
            if 0 < start and end < len(phrasing) and phrasing[start - 1] + phrasing[end] in _QUOTES:
                start, end = start - 1, end + 1  # a quoted value: the placeholder stands for it, quotes too
            phrasing = phrasing[:start] + "{" + pname + "}" + phrasing[end:]
        steps.append(step.model_copy(update={"text": text}))
    apps = list(route.sop.apps)
    sop_name = name or default_name(phrasing, apps[::2], prefix="memory")
    front = ["---", f"name: {yaml_scalar(sop_name)}",
             f"description: {yaml_scalar(f'Drafted from the memory of {memory.app}: {described}'[:300])}",
             f"apps: {yaml_scalar(apps)}",
             "phrasings:", f"  - {yaml_scalar(phrasing)}"]
    if params:
        front.append("params:")
        front += [f"  {p}: {yaml_scalar({'description': d, 'example': v})}" for p, (v, d) in params.items()]
    explored = f", explored {memory.explored_at}" if memory.explored_at else ""
    front += ["version: 1", "---",
              f"<!-- drafted by edgepilot sop draft --from-memory from {memory.app} {memory.app_version}{explored}: "
              "read every step, then `edgepilot sop check` it and `edgepilot sop add` it -->"]
    text = "\n".join(front + [s.render() for s in steps]) + "\n"
    notes = [f"{'the route is' if carried else 'the route ends at'} {described} (score {route.score:.2f}); other "
             "candidates: "
             + (", ".join(f"{t.describe()} ({t.score:.2f})" for t in targets[(0 if carried else 1):]) or "none")]
    notes += [f"step {s.number} keeps {m['value']!r}: the goal does not say it" for s in steps
              if (m := _TYPED.match(s.text)) is not None and "{" not in m["value"]]
    try:
        sop = parse_sop(text, f"{sop_name}.md")
    except SopError as exc:
        raise SopError(f"the drafted procedure does not pass the checks:\n{exc}", exc.problems) from exc
    return LearnedSop(sop, text, tuple(notes))
