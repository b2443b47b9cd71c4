"""Demonstrations to learn an SOP from: a task done right, step by step (read from trajectories by
:func:`edgepilot.agent.learn.demo_from_trajectory`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgepilot.actions import Action
from edgepilot.sop.screen import Screen, ScreenElement

OK_OUTCOMES = frozenset({"worked", "changed", "wrong_screen", "finished", None})
"""Outcomes of steps that did something; a step that changed nothing, failed or was refused is left out."""


@dataclass(frozen=True)
class DemoStep:
    """One action of a demonstration and the screen it was taken on.

    Attributes:
        index: the step's index in its trajectory.
        action: what was done.
        screen: the screen the action was decided on.
        target: the element an indexed action aimed at (None for point targets and untargeted actions).
        after: the screen of the next step, when there is one.
    """

    index: int
    action: Action
    screen: Screen
    target: ScreenElement | None = None
    after: Screen | None = None


Classifier = Callable[[DemoStep], "str | None"]
"""Tells whether a demonstrated action needs the user's confirmation: a kind of
:data:`~edgepilot.sop.format.SENSITIVE_KINDS`, or None."""


@dataclass(frozen=True)
class Demo:
    """A successful demonstration of a task: its goal sentence and its steps."""

    goal: str
    steps: tuple[DemoStep, ...]
    source: str = ""
