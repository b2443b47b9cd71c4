"""Small widgets shared by the screens: the step log and the progress spinner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.timer import Timer
from textual.widgets import ListItem, ListView, Static

from edgepilot.tui.steps import step_text


class StepItem(ListItem):
    """One step of the log; keeps the step's data for the screenshot and element views."""

    def __init__(self, step: Mapping[str, Any], position: int) -> None:
        super().__init__(Static(step_text(step, position), classes="step-text"))
        self.step = dict(step)


class StepList(ListView):
    """The steps of a run, one item each; follows the newest step unless you moved the cursor back."""

    DEFAULT_CSS = """
    StepList > StepItem { padding: 0 1 1 0; }
    """

    async def add_step(self, step: Mapping[str, Any]) -> StepItem:
        """Append a step; the cursor moves to it when it was on the newest step (or nowhere)."""
        following = self.index is None or self.index >= len(self) - 1
        item = StepItem(step, len(self))
        await self.append(item)
        if following:
            self.index = len(self) - 1
        return item

    def steps(self) -> list[dict[str, Any]]:
        return [child.step for child in self.children if isinstance(child, StepItem)]

    def current(self) -> dict[str, Any] | None:
        child = self.highlighted_child
        return child.step if isinstance(child, StepItem) else None


class Spinner(Static):
    """A one-line progress indicator: a turning braille wheel and what is being waited for; hidden when idle."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    DEFAULT_CSS = """
    Spinner { width: 1fr; height: 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._text = ""
        self._frame = 0
        self._timer: Timer | None = None
        self.display = False

    @property
    def text(self) -> str:
        return self._text if self.display else ""

    def on_mount(self) -> None:
        self._timer = self.set_interval(0.1, self._turn, pause=True)

    def spin(self, text: str) -> None:
        self._text = text
        self.display = True
        self._show()
        if self._timer is not None:
            self._timer.resume()

    def halt(self) -> None:
        self.display = False
        self._text = ""
        if self._timer is not None:
            self._timer.pause()

    def _turn(self) -> None:
        self._frame = (self._frame + 1) % len(self.FRAMES)
        self._show()

    def _show(self) -> None:
        line = Text(self.FRAMES[self._frame] + " ", style="bold cyan")
        line.append(self._text)
        self.update(line)
