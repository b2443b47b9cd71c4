"""Actions in words, naming the element each aims at: what logs, prompts, confirmations and the audit show."""

from __future__ import annotations

from typing import Any

from edgepilot.actions import (
    Action,
    Click,
    DoubleClick,
    Drag,
    Finish,
    Hotkey,
    Key,
    LongPress,
    OpenApp,
    Point,
    RightClick,
    Scroll,
    Swipe,
    Tap,
    Type,
    Wait,
    action_to_json,
)
from edgepilot.perception.types import Observation


def describe_action(action: Action, obs: Observation | None = None) -> str:
    """A short human form of an action, naming the element it aims at: ``tap [3] "Settings"``."""
    def target(t: Any) -> str:
        if isinstance(t, Point):
            return f"({t.x},{t.y})"
        if t is None:
            return ""
        label = ""
        if obs is not None and 0 <= t < len(obs.elements):
            label = " ".join(obs.elements[t].label.split())[:40]
        return f"[{t}]" + (f' "{label}"' if label else "")

    if isinstance(action, (Tap, LongPress, Click, DoubleClick, RightClick)):
        return f"{action.type} {target(action.target)}"
    if isinstance(action, Drag):
        return f"drag {target(action.target)} to {target(action.to)}"
    if isinstance(action, Scroll):
        return f"scroll {action.direction}" + (f" on {target(action.target)}" if action.target is not None else "")
    if isinstance(action, Hotkey):
        return "press " + "+".join(action.keys)
    if isinstance(action, Type):
        into = f" into {target(action.target)}" if action.target is not None else ""
        return f'type "{action.text[:60]}"{into}'
    if isinstance(action, Swipe):
        return f"swipe {action.direction}" + (f" on {target(action.target)}" if action.target is not None else "")
    if isinstance(action, Key):
        return f"press {action.key}"
    if isinstance(action, OpenApp):
        return f"open {action.app}"
    if isinstance(action, Wait):
        return f"wait {action.seconds:g} s"
    if isinstance(action, Finish):
        return f"finish ({action.status})" + (f': "{action.answer[:60]}"' if action.answer else "")
    return action_to_json(action)
