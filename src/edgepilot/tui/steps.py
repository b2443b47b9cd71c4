"""One step of a run as the TUI shows it: from a live ``step`` event or a trajectory's step line.

Both shapes share the fields that matter here (``index``, ``thought``,
``action``, ``gate``, ``outcome``, ``ms``, ``error``); a live event also has a
one-line ``summary`` and the ``elements`` the model saw, a trajectory step has
``screen`` (the same list) and ``screenshot`` (its PNG's file name). Nothing
in either is trusted to have a shape, and every text in them (thoughts,
screen text) is shown as plain text (a Rich ``Text``, never markup) with
control and invisible characters shown as escapes (:mod:`edgepilot.safetext`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rich.text import Text

from edgepilot.actions import parse_action
from edgepilot.perception.describe import describe_action
from edgepilot.safetext import for_terminal

OUTCOME_STYLES = {"worked": "green", "finished": "bold green", "changed": "cyan", "no_change": "yellow",
                  "wrong_screen": "yellow", "failed": "red", "refused": "yellow", "invalid": "red"}
STATUS_STYLES = {"finished": "bold green", "gave_up": "bold yellow", "budget": "bold yellow", "stuck": "bold yellow",
                 "stopped": "bold yellow", "error": "bold red", "interrupted": "bold yellow",
                 "unverified": "bold yellow", "impossible": "bold red", "needs_input": "bold yellow"}


def clean(value: Any, limit: int = 400) -> str:
    """Any value as one line safe for the terminal: control and invisible characters shown as escapes
    (``\\x1b``, ``\\u202e``), newlines as `` / ``, cut at ``limit`` (:func:`edgepilot.safetext.for_terminal`)."""
    return for_terminal(value, limit=limit, newlines=False)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def seconds(ms: Any) -> str:
    """Milliseconds as ``1.6 s`` ('' when not a number)."""
    if isinstance(ms, bool) or not isinstance(ms, (int, float)):
        return ""
    return f"{ms / 1000:.1f} s"


def step_number(step: Mapping[str, Any], fallback: int = 0) -> int:
    index = step.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else fallback


def elements_text(step: Mapping[str, Any]) -> str:
    """The numbered element list the model saw at this step (event ``elements`` or trajectory ``screen``)."""
    text = step.get("elements") or step.get("screen") or ""
    if not isinstance(text, str):
        return ""
    return "\n".join(clean(line, 200) for line in text.splitlines())


def action_summary(step: Mapping[str, Any]) -> str:
    """The action in a short human form: the event's ``summary``, else one rebuilt from the action's JSON."""
    summary = step.get("summary")
    if isinstance(summary, str) and summary:
        return clean(summary, 160)
    action = step.get("action")
    if not isinstance(action, dict):
        return "(no valid action)"

    try:
        parsed = parse_action(action)
    except Exception:  # an older or damaged trajectory: show what is there
        return clean(" ".join(f"{k}={v}" for k, v in action.items()), 160)
    text = describe_action(parsed)
    target = action.get("target")
    if isinstance(target, int) and not isinstance(target, bool):
        label = _label(elements_text(step), target)
        if label:
            text = text.replace(f"[{target}]", f"[{target}] {label}", 1)
    return clean(text, 160)


def _label(screen: str, index: int) -> str:
    for line in screen.splitlines():
        if line.startswith(f"[{index}] "):
            quoted = re.search(r'"([^"]*)"', line)
            return f'"{quoted.group(1)[:40]}"' if quoted else ""
    return ""


def step_text(step: Mapping[str, Any], fallback_index: int = 0) -> Text:
    """The step as a few lines: number, action and time; the thought; the policy's word; the outcome."""
    number = step_number(step, fallback_index) + 1
    out = Text()
    out.append(f"{number:>3} ", style="bold")
    out.append(action_summary(step), style="bold" if step.get("action") else "bold red")
    total = seconds(_dict(step.get("ms")).get("total"))
    if total:
        out.append(f"  {total}", style="dim")
    thought = clean(step.get("thought"), 300)
    if thought:
        out.append("\n    thought: ", style="dim")
        out.append(thought, style="italic")
    gate = _dict(step.get("gate"))
    if gate.get("asked"):
        answer = clean(gate.get("answer"), 20)
        out.append("\n    asked:   ", style="dim")
        out.append(f"{clean(gate.get('rule'), 60)} → {answer}", style="green" if answer in ("yes", "always") else
                   "yellow")
    if gate and gate.get("allowed") is False:
        out.append("\n    refused: ", style="dim")
        out.append(clean(gate.get("reason"), 300), style="yellow")
    outcome = _dict(step.get("outcome"))
    kind = clean(outcome.get("kind"), 30)
    if kind and kind != "refused":
        out.append("\n    outcome: ", style="dim")
        out.append(kind, style=OUTCOME_STYLES.get(kind, ""))
        note = clean(outcome.get("note"), 200)
        if note:
            out.append(f" — {note}")
    error = clean(step.get("error"), 300)
    if error and kind != "invalid":
        out.append("\n    error:   ", style="dim")
        out.append(error, style="red")
    return out


def result_text(result: Mapping[str, Any]) -> Text:
    """How a run ended, on one line: status, reason, steps and time, answer."""
    status = clean(result.get("status"), 30) or "unknown"
    out = Text()
    out.append(status.upper(), style=STATUS_STYLES.get(status, "bold"))
    reason = clean(result.get("reason"), 300)
    if reason:
        out.append(f": {reason}")
    steps = result.get("steps")
    took = result.get("seconds")
    if isinstance(steps, int) and not isinstance(steps, bool):
        out.append(f" · {steps} step{'s' if steps != 1 else ''}", style="dim")
        if isinstance(took, (int, float)) and not isinstance(took, bool):
            out.append(f" in {took:.1f} s", style="dim")
    answer = clean(result.get("answer"), 200)
    if answer:
        out.append(f" · answer: {answer}")
    return out
