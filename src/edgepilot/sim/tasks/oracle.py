"""The oracle agent: follows a task's reference solution against the live screen.

It is privileged (it reads the phone's state to decide ``when`` steps), but it
acts only through :data:`~edgepilot.actions.Action` values, which the caller
sends to the device (over adb for the virtual phone). It is the proof that
every task is solvable and the first teacher for distillation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgepilot.actions import Action, Finish, Key, LongPress, OpenApp, Swipe, Tap, Type, Wait
from edgepilot.errors import TaskError
from edgepilot.perception.types import Observation, UINode
from edgepilot.sim.tasks.model import Check, TaskInstance

MAX_SCROLLS = 5
SELECTOR_KEYS = {"text", "text_contains", "desc", "id", "class", "nth", "scroll"}


def select(obs: Observation, selector: dict[str, Any]) -> list[int]:
    """Indices of the elements that match a solution selector."""

    def ok(n: UINode) -> bool:
        if "text" in selector and str(selector["text"]).strip().casefold() not in {
            line.strip().casefold() for line in (n.text or n.hint).splitlines() or [""]
        }:
            return False
        if "text_contains" in selector and str(selector["text_contains"]).casefold() not in n.text.casefold():
            return False
        if "desc" in selector and n.content_desc.casefold() != str(selector["desc"]).casefold():
            return False
        if "id" in selector and n.resource_id.rsplit("/", 1)[-1] != selector["id"]:
            return False
        if "class" in selector and n.short_class != selector["class"]:
            return False
        return True

    hits = [i for i, n in enumerate(obs.elements) if ok(n)]
    if "nth" in selector and hits:
        nth = int(selector["nth"])
        return [hits[nth]] if -len(hits) <= nth < len(hits) else []
    return hits


class Oracle:
    """Plays one task instance's reference solution, one action per call.

    Args:
        instance: the task.
        state: returns the phone's state snapshot (the oracle's privilege).
    """

    name = "oracle"

    def __init__(self, instance: TaskInstance, state: Callable[[], dict[str, Any]]) -> None:
        self.instance = instance
        self.state = state
        self.steps: list[dict[str, Any]] = instance.filled(instance.template.solution)
        self.pos = 0
        self.scrolls = 0
        self.scroll_direction = "up"

    def next_action(self, obs: Observation) -> Action:
        """The next action for this screen.

        Raises:
            TaskError: a step's element cannot be found even after scrolling.
        """
        while self.pos < len(self.steps):
            step = dict(self.steps[self.pos])
            when = step.pop("when", None)
            if when is not None and not Check.model_validate(when).holds(self.state(), None):
                self.pos += 1
                continue
            if len(step) != 1:
                raise TaskError(f"{self._where()}: a solution step needs exactly one action key, got {sorted(step)}")
            (kind, arg), = step.items()
            action = self._action(kind, arg, obs)
            if action is None:  # scrolled instead
                return self._scroll_action(kind, arg)
            self.pos += 1
            self.scrolls = 0
            self.scroll_direction = "up"
            return action
        return Finish(status="success")

    def _where(self) -> str:
        return f"{self.instance.template.id} step {self.pos + 1}"

    def _target(self, arg: dict[str, Any], obs: Observation, *, typing: bool = False) -> int | None:
        selector = {k: v for k, v in arg.items() if k in SELECTOR_KEYS and not (typing and k == "text")}
        if not selector:
            raise TaskError(f"{self._where()}: the step has no selector (text/desc/id/class)")
        hits = select(obs, selector)
        actionable = [i for i in hits if obs.elements[i].actionable]
        return (actionable or hits or [None])[0]

    def _action(self, kind: str, arg: Any, obs: Observation) -> Action | None:
        if kind == "open_app":
            return OpenApp(app=str(arg))
        if kind == "key":
            return Key(key=str(arg))
        if kind == "wait":
            return Wait(seconds=float(arg))
        if kind == "finish":
            answer = (arg or {}).get("answer")
            return Finish(status="success", answer=None if answer is None else str(answer))
        if kind == "swipe":
            target = self._target(arg, obs) if set(arg) & (SELECTOR_KEYS - {"nth", "scroll"}) else None
            return Swipe(direction=arg.get("direction", "up"), target=target)
        if kind in ("tap", "long_press", "type"):
            index = self._target(arg, obs, typing=kind == "type")
            if index is None:
                return None
            if kind == "tap":
                return Tap(target=index)
            if kind == "long_press":
                return LongPress(target=index)
            return Type(text=str(arg.get("text", "")), target=index, clear=bool(arg.get("clear", False)))
        raise TaskError(f"{self._where()}: unknown solution step {kind!r}")

    def _scroll_action(self, kind: str, arg: Any) -> Action:
        if arg.get("scroll", True) is False or self.scrolls >= 2 * MAX_SCROLLS:
            raise TaskError(
                f"{self._where()}: oracle found no element for {kind} {arg} "
                "(a bug in the task or the phone)"
            )
        self.scrolls += 1
        if self.scrolls == MAX_SCROLLS:
            self.scroll_direction = "down"
        return Swipe(direction=self.scroll_direction)
