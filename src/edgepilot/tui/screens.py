"""The screens over the main one: the confirmation modal, the history of runs, the SOP library, the policy."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Button, Footer, Header, Input, ListItem, ListView, OptionList, Static
from textual.widgets.option_list import Option

from edgepilot.agent.trajectory import read_trajectory
from edgepilot.config import Config
from edgepilot.errors import EdgepilotError
from edgepilot.policy.confirm import ConfirmRequest
from edgepilot.safetext import for_terminal
from edgepilot.sop import load_library
from edgepilot.tui.blocks import BlockImage
from edgepilot.tui.history import RunSummary, list_runs
from edgepilot.tui.steps import STATUS_STYLES, clean, elements_text, result_text
from edgepilot.tui.views import policy_text, sop_text
from edgepilot.tui.widgets import StepItem, StepList

Clock = Callable[[], float]


# ---------------------------------------------------------------- confirmation


def request_text(request: ConfirmRequest) -> Text:
    """What the user decides on: the action, its target, the app, the rule and why, the task."""
    rows = [("wants to", request.action, "bold"), ("on", request.target or "(no element)", ""),
            ("app", (request.app or "unknown") + (f" (opens {request.opens})" if request.opens else ""), ""),
            ("rule", request.rule + (f" · {request.category}" if request.category else ""), "cyan"),
            ("why", request.reason or "no rule allows this", "yellow"), ("task", request.task, "italic")]
    out = Text()
    for n, (label, value, style) in enumerate(rows):
        out.append(f"{label:>9}  ", style="dim")
        out.append(clean(value, 240), style=style)
        if n < len(rows) - 1:
            out.append("\n")
    return out


def consequence_text(request: ConfirmRequest) -> Text:
    """What approving will do, in one sentence (empty when the policy did not say)."""
    return Text(clean(request.consequence, 300), style="bold") if request.consequence else Text()


class _Timed(ModalScreen[str | None]):
    """A question with a deadline: it counts down in the widget ``COUNTDOWN`` (:meth:`_countdown` says what)
    and is dismissed once, with None when the time runs out (the run then goes on without an answer)."""

    COUNTDOWN = "#countdown"

    def __init__(self, timeout: float, clock: Clock) -> None:
        super().__init__()
        self._clock = clock
        self._deadline = clock() + timeout
        self._answered = False

    def seconds_left(self) -> int:
        return max(0, math.ceil(self._deadline - self._clock()))

    def _countdown(self) -> str:
        return f"{self.seconds_left()} s to answer"

    def _tick(self) -> None:
        if self._answered:
            return
        if self.seconds_left() <= 0:
            self._close(None)
            return
        self.query_one(self.COUNTDOWN, Static).update(self._countdown())

    def _close(self, answer: str | None) -> None:
        """Dismiss once: a second tick, or a key pressed as time runs out, would pop the screen below (seen in
        CI: ``ScreenStackError`` from a tick after the timeout's dismissal). Not ``_closed``: Textual's message
        pump owns that name, and setting it stops the screen's messages."""
        if self._answered:
            return
        self._answered = True
        self.dismiss(answer)


class ConfirmScreen(_Timed):
    """Allow one sensitive step? ``y`` approve, ``n`` or Escape refuse, ``a`` always for this task.

    Dismissed with the answer, or with None when the time ran out (the run refuses on its own then).
    """

    AUTO_FOCUS = "#no"  # Enter on the default button refuses
    BINDINGS = [
        Binding("y", "answer('yes')", "approve"),
        Binding("n", "answer('no')", "refuse"),
        Binding("a", "answer('always')", "always for this task"),
        Binding("escape", "answer('no')", "refuse", show=False),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    #dialog { width: 100; height: auto; max-height: 90%; border: thick $warning; background: $surface;
              padding: 0 1; }
    #confirm-title { text-style: bold; color: $warning; padding-bottom: 1; }
    #confirm-consequence { padding-bottom: 1; }
    #confirm-body { height: 20; }
    #confirm-crop { width: 40; height: 20; }
    #confirm-details { width: 1fr; padding-left: 2; }
    #countdown { padding-top: 1; color: $text-muted; }
    #confirm-buttons { height: 3; align-horizontal: center; }
    #confirm-buttons Button { margin: 0 1; }
    """

    def __init__(self, confirm_id: str, request: ConfirmRequest, timeout: float, clock: Clock) -> None:
        super().__init__(timeout, clock)
        self.confirm_id = confirm_id
        self.request = request
        self.timeout = timeout
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("Allow this step?", id="confirm-title")
            consequence = Static(consequence_text(self.request), id="confirm-consequence")
            consequence.display = bool(self.request.consequence)
            yield consequence
            with Horizontal(id="confirm-body"):
                yield BlockImage(id="confirm-crop", empty="no screenshot")
                yield Static(request_text(self.request), id="confirm-details")
            yield Static(self._countdown(), id="countdown")
            with Horizontal(id="confirm-buttons"):
                yield Button("Approve (y)", id="yes", variant="success")
                yield Button("Refuse (n)", id="no", variant="error")
                yield Button("Always for this task (a)", id="always", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#confirm-crop", BlockImage).show_png(
            self.request.screenshot_png, box=self.request.target_bounds, crop=True,
            message="no screenshot (a secure screen, or none was taken)")
        self._timer = self.set_interval(0.5, self._tick)

    def _countdown(self) -> str:
        return f"{super()._countdown()}; no answer is a refusal.  y approve · n refuse · a always"

    def action_answer(self, answer: str) -> None:
        self._close(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id in ("yes", "no", "always"):
            self._close(event.button.id)


class ValueScreen(_Timed):
    """A value the goal left out (a PIN): typed, then Enter; Escape cancels (the run then says what is missing).
    A secret is shown as dots. Dismissed with the value, or None (cancelled, or the time ran out)."""

    BINDINGS = [Binding("escape", "cancel", "cancel", show=False)]
    COUNTDOWN = "#value-countdown"
    DEFAULT_CSS = """
    ValueScreen { align: center middle; }
    #value-dialog { width: 80; height: auto; border: thick $primary; background: $surface; padding: 0 1; }
    #value-title { text-style: bold; padding-bottom: 1; }
    #value-countdown { padding-top: 1; color: $text-muted; }
    """

    def __init__(self, input_id: str, name: str, description: str, secret: bool, timeout: float,
                 clock: Clock) -> None:
        super().__init__(timeout, clock)
        self.input_id = input_id
        self.value_name = name
        self.description = description
        self.secret = secret

    def compose(self) -> ComposeResult:
        with Vertical(id="value-dialog"):
            # Text, not markup: a description comes from an SOP, maybe drafted from an app's screen ("[USD]")
            yield Static(Text(f"The task needs {clean(self.description, 200) or clean(self.value_name, 60)}"),
                         id="value-title")
            yield Static(Text(f"The goal does not say it ({clean(self.value_name, 60)}). Type it and press Enter; "
                              "Escape leaves the task undone."))
            yield Input(password=self.secret, id="value")
            yield Static(self._countdown(), id="value-countdown")

    def on_mount(self) -> None:
        self.query_one("#value", Input).focus()
        self.set_interval(0.5, self._tick)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():  # Enter on an empty box asks again; Escape is the way to give up
            self._close(event.value)

    def action_cancel(self) -> None:
        self._close(None)


# ---------------------------------------------------------------- history


class RunItem(ListItem):
    def __init__(self, run: RunSummary) -> None:
        line = Text()
        line.append(f"{run.started or '?':16} ", style="dim")
        line.append(f"{clean(run.status, 10):10}", style=STATUS_STYLES.get(run.status, "dim"))
        line.append(f"{run.steps if run.steps is not None else '-':>3} ", style="dim")
        line.append(clean(run.goal, 120))
        super().__init__(Static(line))
        self.run = run


def screenshot_path(folder: Path, step: dict[str, Any]) -> Path | None:
    """The step's PNG in its trajectory folder (named in the step, or ``step-NNN.png``), if it is there."""
    name = step.get("screenshot")
    index = step.get("index")
    if not isinstance(name, str) and isinstance(index, int) and not isinstance(index, bool):
        name = f"step-{index:03d}.png"
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = folder / name
    return path if path.is_file() else None


def read_png(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


class HistoryScreen(Screen[None]):
    """Past runs from the trajectories folder; Enter opens one to go through its steps and screens."""

    BINDINGS = [Binding("escape", "app.pop_screen", "back")]
    DEFAULT_CSS = """
    #runs { width: 46; border: round $primary; }
    #run-view { width: 1fr; }
    #run-head { height: auto; max-height: 8; padding: 0 1; }
    #run-body { height: 1fr; }
    #run-steps { width: 1fr; border: round $primary; }
    #run-screen { width: 30; border: round $primary; }
    """

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.folder: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield ListView(id="runs")
            with Vertical(id="run-view"):
                yield Static("", id="run-head")
                with Horizontal(id="run-body"):
                    yield StepList(id="run-steps")
                    yield BlockImage(id="run-screen", empty="")
        yield Footer()

    async def on_mount(self) -> None:
        self.title = "edgepilot · history"
        runs = self.query_one("#runs", ListView)
        runs.border_title = "runs (Enter opens)"
        self.query_one("#run-steps", StepList).border_title = "steps"
        self.query_one("#run-screen", BlockImage).border_title = "screen"
        found = list_runs(self.root)
        if not found:
            self.query_one("#run-head", Static).update(Text(f"no runs yet in {self.root}", style="italic"))
            return
        await runs.extend(RunItem(run) for run in found)
        runs.index = 0
        self.query_one("#run-head", Static).update(Text(f"{len(found)} runs; pick one and press Enter",
                                                        style="italic"))
        runs.focus()

    async def on_list_view_selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, RunItem):
            event.stop()
            await self.open_run(event.item.run.folder)

    async def open_run(self, folder: Path) -> None:
        """Show one trajectory: its header, its steps, the screenshot of the step under the cursor."""

        head = self.query_one("#run-head", Static)
        steps = self.query_one("#run-steps", StepList)
        await steps.clear()
        try:
            traj = read_trajectory(folder)
        except EdgepilotError as exc:
            head.update(Text(for_terminal(exc), style="red"))
            return
        self.folder = folder
        meta = traj.meta.model_dump(mode="json")
        text = Text()
        text.append(clean(meta.get("goal") or folder.name, 200) + "\n", style="bold")
        text.append(f"{folder.name} · {clean(meta.get('device'), 80)} · model {clean(meta.get('model'), 40)}"
                    f" · SOP {clean(meta.get('sop'), 40) or 'none'}\n", style="dim")
        ended = traj.result
        text.append_text(result_text(ended.to_json()) if ended else Text("no result: running, or interrupted",
                                                                         style="yellow"))
        for warning in traj.warnings:
            text.append(f"\n{clean(warning, 200)}", style="yellow")
        head.update(text)
        for n, step in enumerate(traj.steps):  # the list shows steps in the shape the live run's events have
            await steps.append(StepItem(step.to_json(), n))
        if len(steps):
            steps.index = 0
            steps.focus()

    def on_list_view_highlighted(self, event: ListView.Highlighted) -> None:
        if event.list_view.id != "run-steps" or not isinstance(event.item, StepItem) or self.folder is None:
            return
        step = event.item.step
        bounds = step.get("target_bounds")
        box = bounds if isinstance(bounds, list) and len(bounds) == 4 else None
        image = self.query_one("#run-screen", BlockImage)
        image.show_png(read_png(screenshot_path(self.folder, step)), message="no screenshot")
        if box is not None and image.image is not None:
            from edgepilot.tui.blocks import mark_box

            image.show_image(mark_box(image.image, box))


# ---------------------------------------------------------------- SOPs


class SopScreen(Screen[None]):
    """The SOP library: every procedure, where it comes from, and its steps."""

    BINDINGS = [Binding("escape", "app.pop_screen", "back")]
    DEFAULT_CSS = """
    #sop-list { width: 40; border: round $primary; }
    #sop-scroll { width: 1fr; border: round $primary; padding: 0 1; }
    """

    def __init__(self, loader: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self.library: Any = None
        self._loader = loader

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield OptionList(id="sop-list")
            with VerticalScroll(id="sop-scroll"):
                yield Static("", id="sop-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "edgepilot · SOPs"
        options = self.query_one("#sop-list", OptionList)
        self.query_one("#sop-scroll").border_title = "procedure"
        try:
            self.library = (self._loader or load_library)()
        except EdgepilotError as exc:
            self.query_one("#sop-detail", Static).update(Text(f"the SOP library does not load: {for_terminal(exc)}",
                                                              style="red"))
            return
        entries = sorted(self.library.entries.values(), key=lambda e: e.sop.name)
        options.border_title = f"{len(entries)} SOPs"
        options.add_options(Option(Text.assemble((clean(e.sop.name, 60), ""), (f"  {e.origin}", "dim")),
                                   id=e.sop.name) for e in entries)
        if self.library.problems:
            options.border_subtitle = f"{len(self.library.problems)} files with problems"
        if entries:
            options.highlighted = 0
            options.focus()
        else:
            self.query_one("#sop-detail", Static).update(self._problems() or Text("no SOPs found", style="italic"))

    def _problems(self) -> Text:
        out = Text()
        for problem in self.library.problems:
            out.append("\n" + clean(str(problem), 300), style="red")
        for hidden, by in self.library.shadowed:
            out.append(f"\n{clean(hidden.sop.name, 60)} in {hidden.origin} is shadowed by the one in {by.origin}",
                       style="yellow")
        return out

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if self.library is None or event.option.id is None:
            return
        self.query_one("#sop-detail", Static).update(sop_text(self.library.entry(event.option.id))
                                                     + self._problems())
        self.query_one("#sop-scroll", VerticalScroll).scroll_home(animate=False)


# ---------------------------------------------------------------- policy


class PolicyScreen(Screen[None]):
    """The effective policy for the task in the task box: the rules in the order they are tried."""

    BINDINGS = [Binding("escape", "app.pop_screen", "back")]
    DEFAULT_CSS = """
    #policy-scroll { border: round $primary; padding: 0 1; }
    """

    def __init__(self, task: str, config: Config, policy_file: Path | None) -> None:
        super().__init__()
        self.task_text = task
        self.config = config
        self.policy_file = policy_file

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="policy-scroll"):
            yield Static("", id="policy-text")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "edgepilot · policy"
        scroll = self.query_one("#policy-scroll", VerticalScroll)
        scroll.border_title = "effective rules"
        try:
            text = policy_text(self.task_text, self.config, self.policy_file)
        except EdgepilotError as exc:
            text = Text(f"the policy does not load, so no run can start:\n{for_terminal(exc)}", style="red")
        self.query_one("#policy-text", Static).update(text)
        scroll.focus()


def elements_view(step: dict[str, Any] | None) -> Text:
    """The element list of a step, or a hint when there is none."""
    text = elements_text(step) if step else ""
    return Text(text) if text else Text("the elements the model saw appear here", style="dim italic")
