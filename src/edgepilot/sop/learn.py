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

Demonstrations are read in :mod:`edgepilot.sop.demo`; step 1 is
:mod:`edgepilot.sop.moves`, steps 2 and 3 :mod:`edgepilot.sop.generalise`;
this module classifies, writes the SOP file and checks it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from edgepilot.actions import OpenApp
from edgepilot.errors import SopError
from edgepilot.sop.demo import OK_OUTCOMES, Classifier, Demo, DemoStep
from edgepilot.sop.format import MAX_STEPS, PLACEHOLDER, SENSITIVE_KINDS, Sop, parse_sop
from edgepilot.sop.generalise import STRONG_SHAPES, abstract_values, align, broader, merge_slot
from edgepilot.sop.moves import ANSWER_WORDS, Move, MoveKind, Param, draft_moves

# names that lived here before the drafting steps moved out, for the code that imports them from here
__all__ = [
    "ANSWER_WORDS", "OK_OUTCOMES", "STRONG_SHAPES", "Classifier", "Demo", "DemoStep", "LearnedSop", "MoveKind",
    "learn_sop",
]

_NAME_STOPWORDS = frozenset("a an the to of for in on at by with from and or my me i you your it its that this is "
                            "please can could would will what which who how when where then".split())


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


# ---------------------------------------------------------------- writing the SOP


def _instruction(move: Move) -> str:
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


def _step_line(number: int, move: Move) -> str:
    line = f"{number}. {_instruction(move)}"
    if move.screen:
        line += f" (screen: {move.screen})"
    if move.sensitive:
        line += f" [sensitive: {move.sensitive}]" if move.sensitive in SENSITIVE_KINDS else " [sensitive]"
    return line


def yaml_scalar(value: object) -> str:
    """``value`` as one line of YAML (a string quoted where it must be): for an SOP's front matter."""
    text = yaml.safe_dump(value, allow_unicode=True, width=100_000, default_flow_style=True).strip()
    return text.removesuffix("...").strip()


def default_name(phrasing: str, apps: Sequence[str], prefix: str = "learned") -> str:
    """A drafted SOP's name: ``PREFIX-<app>-<up to four words of the goal>``."""
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", PLACEHOLDER.sub(" ", phrasing))
             if w.lower() not in _NAME_STOPWORDS]
    app = re.sub(r"[^a-z0-9]+", "-", (apps[0] if apps else "task").lower()).strip("-")
    words = [w for w in words if w != app][:4]
    name = "-".join([prefix, app, *words]).strip("-")
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
           notes: list[str]) -> tuple[list[Move], list[str], dict[str, Param]]:
    """The merged steps, the phrasings and the parameters of the demonstrations."""
    runs: list[list[Move]] = []
    phrasings: list[str] = []
    params: dict[str, Param] = {}
    for demo in demos:
        moves, why = draft_moves(demo)
        notes.extend(why)
        found, phrasing = abstract_values(demo, moves)
        if classify is not None:
            for move in moves:
                kind = classify(move.step) if move.kind != "finish" else None
                move.sensitive = kind if kind in SENSITIVE_KINDS or kind is None else "sensitive"
        for p in found:
            if p.name not in params:
                params[p.name] = p
            elif broader(p.value, params[p.name].value):
                params[p.name] = replace(p, description=params[p.name].description)
        if phrasing not in phrasings:
            phrasings.append(phrasing)
        runs.append(moves)
    moves = [merge_slot(slot, params) for slot in align(runs, notes, [d.source for d in demos])]
    if not moves or moves[-1].kind != "finish":
        moves.append(runs[0][-1])
    return moves, phrasings, params


def _render(demos: Sequence[Demo], moves: list[Move], phrasings: list[str], params: dict[str, Param],
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
        f"name: {yaml_scalar(name or default_name(phrasings[0], apps))}",
        f"description: {yaml_scalar(_description(phrasings[0], len(demos)))}",
        f"apps: {yaml_scalar(apps)}",
        "phrasings:",
        *[f"  - {yaml_scalar(p)}" for p in phrasings],
    ]
    if declared:
        front.append("params:")
        front += [f"  {p.name}: {yaml_scalar({'description': p.description, 'example': p.value})}" for p in declared]
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
