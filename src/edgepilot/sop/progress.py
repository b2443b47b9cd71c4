"""Where a run stands in its SOP: the current step, moving on, and a guess from the screen's title.

The planner owns the decision; this is the bookkeeping it and the trajectory
share. Immutable: every move returns a new :class:`SopProgress`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from edgepilot.actions import Action, Click, DoubleClick, Hotkey, Key, LongPress, OpenApp, RightClick, Tap, Type
from edgepilot.perception.types import Observation
from edgepilot.sop.carry import steps_with_kept
from edgepilot.sop.follow import Instruction, read_alternatives, read_instruction, read_loosely
from edgepilot.sop.format import Sop, SopStep, render_steps
from edgepilot.sop.retrieve import Match
from edgepilot.sop.screen import Screen, find


@dataclass(frozen=True)
class SopProgress:
    """A filled SOP and the number of the step the run is on (``len(steps) + 1`` once past the last)."""

    sop: Sop
    steps: tuple[SopStep, ...]
    params: dict[str, str]
    current: int = 1
    departed: str | None = None
    """Why the run left the procedure (the reflector's reason), or None while it follows it."""
    floor: int = 1
    """The first step the run may return to: past a step that kept a value (:meth:`keep`), the screen it read
    does not take the run back to it."""

    @classmethod
    def start(cls, match: Match) -> SopProgress:
        """Progress at step 1 of a retrieved SOP, its parameters filled."""
        return cls(match.sop, match.steps, dict(match.params))

    @property
    def done(self) -> bool:
        return self.current > len(self.steps)

    @property
    def step(self) -> SopStep | None:
        """The current step, or None once past the last one."""
        return None if self.done else self.steps[self.current - 1]

    def advance(self, to: int | None = None) -> SopProgress:
        """Move to step ``to`` (default: the next one); clamped to 1..len+1."""
        target = self.current + 1 if to is None else to
        return replace(self, current=max(1, min(len(self.steps) + 1, target)), departed=None)

    def keep(self, number: int, value: str) -> SopProgress:
        """Past reading step ``number``, which kept ``value`` for later (``Read the code ... and remember it``):
        the steps after it that use the value say it, quoted (:func:`~edgepilot.sop.carry.with_kept`), and the
        run is on the next step."""
        return replace(self, steps=steps_with_kept(self.steps, number, value), floor=number + 1).advance(number + 1)

    def done_by(self, action: Action, before: Observation | None = None) -> bool:
        """Whether ``action``, having worked on the screen ``before``, may count as the current step done.

        A step may give more than one way to do it (``Tap "X" under "To", or type "X" in the
        "Recipient name" field``: :func:`~edgepilot.sop.follow.read_alternatives`); doing any of them counts.
        A way that says to type (``Type "V" in the "F" field``) is done only by typing, and one that
        says to open an app only by opening one: a tap that "worked" in their place (a premature
        ``Log in`` before the PIN) does not move the procedure on, so its ``<- now`` stays on the step
        still to do. A way that says to tap ``"X"`` (``Tap "X"``, ``Scroll to "X" and tap it``) is done
        only by a tap, and, when ``before`` shows what ``"X"`` names, only by a tap on it: a tap on
        ``Wi-Fi`` at ``Tap "Airplane mode"`` works (a screen opens) without doing the step. Going back
        or home is never a step that does not say to press that key: a back press at ``Read the value
        under "Android version"`` leaves the screen to read. Other steps (switches, scrolls, reading)
        count any other action that worked.
        """
        if self.step is None:
            return True
        ways = read_alternatives(self.step.text) or read_loosely(self.step.text)
        return any(_does(way, action, before) for way in ways) if ways else not _leaves(action)

    def closes(self, number: int) -> bool:
        """Whether step ``number`` is one the task ends on: a ``Finish`` step, or a step to read (``Read ...``)
        right before a step that finishes with the answer (``Finish and answer with ...``). A step to read
        and keep for later (``Read the balance ... and remember it``, then more steps) does not close."""
        if not 1 <= number <= len(self.steps):
            return False
        if _finishes(self.steps[number - 1].text):
            return True
        return (self.steps[number - 1].text.lstrip().lower().startswith("read ") and number < len(self.steps)
                and _answers(self.steps[number].text))

    def answers(self, number: int) -> bool:
        """Whether the task closed at step ``number`` (:meth:`closes`) ends with an answer the procedure asks
        for (that step, or the one after a step to read, says ``Finish and answer``)."""
        return self.closes(number) and any(_answers(s.text) for s in self.steps[number - 1:number + 1])

    def depart(self, reason: str) -> SopProgress:
        """Record that the screen disagrees with the procedure and the run left it, and why."""
        return replace(self, departed=reason)

    def locate(self, screen_title: str) -> int | None:
        """The step a screen titled ``screen_title`` (case-insensitive) belongs to: the first step from
        the current one on that expects it; else, when the run is back on a screen it had left (a back
        press, a wrong tap undone), the first of the latest steps before the current one that expect
        it; None when no step names that screen, and None past the last step that acts (its screens then
        show the result: the list after a Save is not the list of step 2 again)."""
        title = screen_title.strip().casefold()
        if not title:
            return None
        on = [step.screen is not None and step.screen.strip().casefold() == title for step in self.steps]
        ahead = next((i for i in range(self.current - 1, len(on)) if on[i]), None)
        if ahead is not None:
            return ahead + 1
        if self.done or (self.current == len(self.steps) and _finishes(self.steps[-1].text)
                         and not _answers(self.steps[-1].text)):
            return None  # every step is done: a screen of an early step does not start the procedure again
        back = next((i for i in range(self.current - 2, self.floor - 2, -1) if on[i]), None)
        if back is None:
            return None
        while back > self.floor - 1 and on[back - 1]:
            back -= 1
        return back + 1

    def render(self, *, screens: bool = True) -> str:
        """The filled procedure with the current step marked ``<- now`` (prompt text)."""
        return render_steps(self.sop.description, self.steps, current=None if self.done else self.current,
                            screens=screens)

    def record(self) -> dict[str, Any]:
        """What a trajectory step stores: which SOP (name, version) and step the action served."""
        return {"sop": self.sop.name, "version": self.sop.version, "step": None if self.done else self.current,
                "departed": self.departed}


def _finishes(text: str) -> bool:
    way = read_instruction(text)
    return way is not None and (way.form == "finish" or way.form.startswith("answer"))


def _answers(text: str) -> bool:
    way = read_instruction(text)
    return way is not None and (way.form.startswith("answer") or text.lstrip().lower().startswith(
        "finish and answer"))


def _leaves(action: Action) -> bool:
    """Whether ``action`` goes back or home: leaving a screen, not doing anything on it."""
    return isinstance(action, Key) and action.key in ("back", "home")


def _does(way: Instruction, action: Action, before: Observation | None) -> bool:
    """Whether ``action`` is what one way of doing a step says (:meth:`SopProgress.done_by`)."""
    if way.form in ("type", "replace", "type_focused", "scroll_type"):
        return isinstance(action, Type)
    if way.form == "open":
        return isinstance(action, OpenApp)
    if way.form in ("tap", "scroll"):
        if not isinstance(action, (Tap, LongPress, Click, DoubleClick, RightClick)):
            return False
        named = {e.index for e in find(Screen.from_observation(before), way.get("handle"), want="tap")} \
            if before is not None else set()
        return not named or action.target in named
    if way.form == "hotkey":
        return isinstance(action, Hotkey) and "+".join(action.keys) == way.get("keys").lower()
    if way.form == "key":
        return not isinstance(action, Key) or action.key == way.get("key").lower()
    return not _leaves(action)
