"""``edgepilot tui``: the terminal assistant.

Type a task, pick a device, watch the steps (thought, action, outcome, time)
with the screen drawn in the terminal and the elements the model saw; answer
confirmations in a modal; pause, resume or stop; look at past runs, the SOPs
and the policy. Runs come from a :class:`~edgepilot.tui.runner.Runner` (in this
process, or the daemon's) as the JSON events of :mod:`edgepilot.agent.events`.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Input, ListView, Select, Static

from edgepilot.agent.records import (
    ConfirmedEvent,
    ConfirmEvent,
    FinishedEvent,
    InputEvent,
    PausedEvent,
    QueuedEvent,
    ResumedEvent,
    StartedEvent,
    StepEvent,
    parse_event,
)
from edgepilot.config import Config
from edgepilot.errors import EdgepilotError
from edgepilot.policy import load_policy, policy_path
from edgepilot.policy.confirm import ConfirmRequest
from edgepilot.safetext import for_terminal
from edgepilot.tui.blocks import BlockImage
from edgepilot.tui.devices import VIRTUAL, DeviceChoice
from edgepilot.tui.devices import device_choices as list_device_choices
from edgepilot.tui.history import trajectories_root
from edgepilot.tui.runner import BackendFactory, LocalRunner, RunEvent, Runner
from edgepilot.tui.screens import (
    ConfirmScreen,
    HistoryScreen,
    PolicyScreen,
    SopScreen,
    ValueScreen,
    elements_view,
    read_png,
    screenshot_path,
)
from edgepilot.tui.steps import clean, result_text
from edgepilot.tui.views import policy_label
from edgepilot.tui.widgets import Spinner, StepItem, StepList

DeviceLister = Callable[[], list[DeviceChoice]]


class RunnerEvent(Message):
    """An event of the runner, carried into the app's thread."""

    def __init__(self, event: RunEvent) -> None:
        super().__init__()
        self.event = event


class WarmedUp(Message):
    """The runner is ready (``label``: what runs tasks) or is not (``error``)."""

    def __init__(self, label: str | None, error: str | None) -> None:
        super().__init__()
        self.label = label
        self.error = error


class DevicesFound(Message):
    def __init__(self, choices: list[DeviceChoice]) -> None:
        super().__init__()
        self.choices = choices


class EdgepilotApp(App[None]):
    """The terminal assistant.

    Args:
        runner: where runs come from (default: a :class:`LocalRunner` built from the arguments below).
        config: the user's settings (default: none set).
        model: model spec for the local runner (None: the configured one).
        policy_file: policy file (None: the one in force).
        device: the device picked at start (a spec of ``open_device``).
        backend_factory: makes the local runner's model instead of ``open_model`` (tests inject a scripted model).
        device_lister: lists the picker's devices (default: virtual phone, ``adb devices``, this desktop).
        clock: the confirmation countdown's clock (tests fix it).
        warm_up: get the runner ready (load the model) in the background at start, not at the first run.
        mode: shown in the status line, e.g. ``attached to the daemon``.
        sop_library: loads the SOP library the SOP view shows (default: ``load_library()``, what runs use).
    """

    TITLE = "edgepilot"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("ctrl+p", "toggle_pause", "pause/resume", priority=True),
        Binding("ctrl+s", "stop", "stop", priority=True),
        Binding("f2", "history", "history"),
        Binding("f3", "sops", "SOPs"),
        Binding("f4", "policy", "policy"),
        Binding("f5", "refresh_devices", "devices"),
        Binding("ctrl+q", "quit", "quit", priority=True),
    ]
    CSS = """
    #task-row { height: 3; }
    #task { width: 1fr; }
    #run { width: 12; }
    #info-row { height: 3; }
    #device { width: 52; }
    #model-status, #policy-status { width: 1fr; height: 3; padding: 1 1 0 1; }
    #body { height: 1fr; }
    #log-pane { width: 1fr; border: round $primary; }
    #run-head { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    #steps { height: 1fr; }
    #screen { width: 32; border: round $primary; }
    #elements-pane { width: 40; border: round $primary; }
    #controls-row { height: 3; }
    #controls-row Button { margin-right: 1; min-width: 10; }
    #run-status { width: 1fr; height: 3; padding: 1 1 0 1; }
    #progress { padding: 1 1 0 1; height: 3; }
    """

    def __init__(self, runner: Runner | None = None, *, config: Config | None = None, model: str | None = None,
                 policy_file: Path | None = None, device: str = VIRTUAL,
                 backend_factory: BackendFactory | None = None, device_lister: DeviceLister | None = None,
                 clock: Callable[[], float] = time.monotonic, warm_up: bool = True, mode: str = "",
                 sop_library: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self.config = config or Config()
        self.policy_file = policy_file
        self.runner: Runner = runner or LocalRunner(self.config, model=model, policy_file=policy_file,
                                                    backend_factory=backend_factory)
        self.clock = clock
        self.mode = mode
        self._lister = device_lister or list_device_choices
        self._choices: dict[str, DeviceChoice] = {}
        self._device = device
        self._warm = warm_up
        self._sop_library = sop_library
        self.run_id: str | None = None
        self.state = "idle"  # idle | starting | running | paused | waiting (for an answer) | finished
        self.model_state = "cold"  # cold | loading | ready | failed
        self.model_label = ""
        self.trajectory: Path | None = None
        self.result: dict[str, Any] | None = None
        self.confirms: dict[str, ConfirmScreen] = {}
        self.answered: set[str] = set()
        self._main: Screen[Any] | None = None
        self._shown: StepItem | None = None  # the step whose screen and elements are shown

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="task-row"):
            yield Input(placeholder="What should the agent do? e.g. turn on airplane mode  (Enter runs it)", id="task")
            yield Button("Run", id="run", variant="primary")
        with Horizontal(id="info-row"):
            yield Select[str](self._options(self._with_device(self._initial_choices())), value=self._device,
                              allow_blank=False, id="device")
            yield Static("", id="model-status")
            yield Static("", id="policy-status")
        with Horizontal(id="body"):
            with Vertical(id="log-pane"):
                yield Static("", id="run-head")
                yield StepList(id="steps")
            yield BlockImage(id="screen", empty="no screen yet")
            with VerticalScroll(id="elements-pane"):
                yield Static(elements_view(None), id="elements")
        with Horizontal(id="controls-row"):
            yield Button("Pause", id="pause")
            yield Button("Resume", id="resume")
            yield Button("Stop", id="stop", variant="error")
            yield Spinner(id="progress")
            yield Static("", id="run-status")
        yield Footer()

    @property
    def main_screen(self) -> Screen[Any]:
        """The screen with the task box and the log (``query_one`` on the app looks at the screen in front)."""
        return self._main if self._main is not None else self.screen

    def on_mount(self) -> None:
        self._main = self.screen
        self.main_screen.query_one("#log-pane").border_title = "steps"
        self.main_screen.query_one("#screen").border_title = "screen"
        self.main_screen.query_one("#elements-pane").border_title = "elements"
        self.runner.listen(lambda event: self.post_message(RunnerEvent(event)))
        self._set_choices(self._initial_choices())
        self._check_policy()
        self._show_model()
        self._show_state()
        self.main_screen.query_one("#task", Input).focus()
        if self._warm:
            self.warm_up()
        self.list_devices()

    def on_unmount(self) -> None:
        self.runner.close()

    # ------------------------------------------------------------ devices

    def _initial_choices(self) -> list[DeviceChoice]:
        return [DeviceChoice(VIRTUAL, "virtual phone (new, built in)")]

    @property
    def device_choices(self) -> list[DeviceChoice]:
        """What the device picker offers now."""
        return list(self._choices.values())

    @property
    def device(self) -> str:
        """The device spec the next run uses."""
        return self._device

    def _with_device(self, choices: list[DeviceChoice]) -> list[DeviceChoice]:
        """The choices, plus the device picked at start when the list does not have it (a SERIAL@HOST:PORT)."""
        if self._device and self._device not in {c.spec for c in choices}:
            choices = [*choices, DeviceChoice(self._device, f"{self._device} (from --device)")]
        return choices

    def _set_choices(self, choices: list[DeviceChoice]) -> None:
        choices = self._with_device(choices)
        self._choices = {c.spec: c for c in choices}
        select = self.main_screen.query_one("#device", Select)
        with select.prevent(Select.Changed):
            select.set_options(self._options(choices))
            if self._device in self._choices:
                select.value = self._device

    @staticmethod
    def _options(choices: list[DeviceChoice]) -> list[tuple[Text, str]]:
        options = []
        for c in choices:
            label = Text(clean(c.label, 120))  # an adb serial is whatever the device says
            if not c.available:
                label = Text.assemble((clean(c.label, 120), "dim"), (f" — {clean(c.reason, 200)}", "dim italic"))
            options.append((label, c.spec))
        return options

    @work(thread=True, exclusive=True, group="devices")
    def list_devices(self) -> None:
        self.post_message(DevicesFound(self._lister()))

    def on_devices_found(self, message: DevicesFound) -> None:
        self._set_choices(message.choices)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "device" or not isinstance(event.value, str) or event.value == self._device:
            return
        choice = self._choices.get(event.value)
        if choice is not None and not choice.available:
            self.tell(f"{choice.label} cannot be used: {choice.reason}", title="device", severity="warning")
            with event.select.prevent(Select.Changed):
                event.select.value = self._device
            return
        self._device = event.value

    def action_refresh_devices(self) -> None:
        self.list_devices()

    # ------------------------------------------------------------ model and policy

    @work(thread=True, exclusive=True, group="warm-up")
    def warm_up(self) -> None:
        self.post_message(WarmedUp(None, None))  # loading
        try:
            label = self.runner.warm_up()
        except EdgepilotError as exc:
            self.post_message(WarmedUp(None, str(exc)))
            return
        except Exception as exc:  # e.g. llama.cpp missing: say so, do not crash
            self.post_message(WarmedUp(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(WarmedUp(label, None))

    def on_warmed_up(self, message: WarmedUp) -> None:
        if message.error is not None:
            self.model_state, self.model_label = "failed", message.error
            self.tell(message.error, title="not ready", severity="error", timeout=15)
        elif message.label is None:
            self.model_state, self.model_label = "loading", ""
        else:
            self.model_state, self.model_label = "ready", message.label
        self._show_model()
        self._show_state()

    def _show_model(self) -> None:
        label = clean(self.model_label, 60)
        text = {"cold": Text("model: loads with the first run", style="dim"),
                "loading": Text("model: loading…", style="cyan"),
                "ready": Text.assemble(("model: ", "dim"), (label, "bold"), (" ready", "green")),
                "failed": Text("model: not ready (Run tries again)", style="red")}[self.model_state]
        if self.mode:
            text = Text.assemble(text, (f" · {self.mode}", "dim"))
        self.main_screen.query_one("#model-status", Static).update(text)

    def _check_policy(self) -> None:
        status = self.main_screen.query_one("#policy-status", Static)
        try:
            path = policy_path(self.policy_file, self.config.policy)
            load_policy(path)
        except EdgepilotError as exc:
            status.update(Text("policy: BROKEN (F4)", style="bold red"))
            self.tell(f"the policy does not load, so no run can start: {exc}", title="policy", severity="error",
                      timeout=20)
            return
        status.update(Text.assemble(("policy: ", "dim"), (policy_label(path), "")))

    # ------------------------------------------------------------ runs

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "task":
            await self.action_run()

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "run":
            await self.action_run()
            return
        actions = {"pause": self.action_pause, "resume": self.action_resume, "stop": self.action_stop}
        if event.button.id in actions:
            actions[event.button.id]()

    async def action_run(self) -> None:
        task = self.main_screen.query_one("#task", Input).value.strip()
        if self.state in ("starting", "running", "paused", "waiting"):
            self.notify("a run is going; stop it first (ctrl+s)", severity="warning")
            return
        if not task:
            self.notify("type a task first, e.g. turn on airplane mode", severity="warning")
            return
        choice = self._choices.get(self._device)
        if choice is not None and not choice.available:
            self.tell(f"{choice.label} cannot be used: {choice.reason}", title="device", severity="warning")
            return
        try:
            run_id = self.runner.start(task, self._device)
        except EdgepilotError as exc:
            self.tell(str(exc), title="run", severity="error")
            return
        self.run_id, self.trajectory, self.result = run_id, None, None
        self.answered.clear()
        self._shown = None
        await self.main_screen.query_one("#steps", StepList).clear()
        self.main_screen.query_one("#screen", BlockImage).show_image(None, "no screen yet")
        self.main_screen.query_one("#elements", Static).update(elements_view(None))
        self.main_screen.query_one("#run-head", Static).update(Text(clean(task, 200), style="bold"))
        self.state = "starting"
        self._show_state()

    def _ask_runner(self, what: str, call: Callable[[], object]) -> None:
        """Pause, resume, stop or answer; a runner that refuses (the daemon went away) is a message, not a crash."""
        try:
            call()
        except EdgepilotError as exc:
            self.tell(f"could not {what}: {exc}", title="run", severity="error")

    def action_pause(self) -> None:
        if self.state in ("starting", "running", "waiting"):
            self._ask_runner("pause", self.runner.pause)

    def action_resume(self) -> None:
        if self.state == "paused":
            self._ask_runner("resume", self.runner.resume)

    def action_toggle_pause(self) -> None:
        if self.state == "paused":
            self.action_resume()
        else:
            self.action_pause()

    def action_stop(self) -> None:
        if self.state in ("starting", "running", "paused", "waiting"):
            self._ask_runner("stop", self.runner.stop)
            self.main_screen.query_one("#progress", Spinner).spin("stopping…")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if isinstance(self.screen, ModalScreen) and action in ("history", "sops", "policy", "refresh_devices",
                                                                "toggle_pause"):
            return False
        return True

    # ------------------------------------------------------------ events

    async def on_runner_event(self, message: RunnerEvent) -> None:
        await self.handle_event(message.event)

    async def handle_event(self, raw: RunEvent) -> None:
        """Show one runner event: a :data:`~edgepilot.agent.records.RunEvent` as JSON (:mod:`edgepilot.agent.events`).

        Events of other runs (a daemon serves several clients) are passed over, and so are events this version
        does not read (a daemon of another version): the log says which.
        """
        if raw.get("run") != self.run_id:
            return
        try:
            event = parse_event(raw)
        except ValueError as exc:
            self.log.warning(f"an event of the run that cannot be shown: {exc}")
            return
        await getattr(self, f"_on_{event.event}")(event, raw)

    async def _on_started(self, event: StartedEvent, raw: RunEvent) -> None:
        self.trajectory = Path(event.trajectory) if event.trajectory else None
        head = Text(clean(event.task, 200), style="bold")
        choice = self._choices.get(self._device)
        head.append(f"\non {choice.label if choice is not None else clean(event.device, 80)}", style="dim")
        head.append(f" · SOP {clean(event.sop, 60)}" if event.sop else " · no SOP", style="dim")
        self.main_screen.query_one("#run-head", Static).update(head)
        if self.state == "starting":
            self.state = "running"
        if self.model_state != "ready":
            self.warm_up()  # the run loaded it: ask again for its name (at once now)
        self._show_state()

    async def _on_step(self, event: StepEvent, raw: RunEvent) -> None:
        steps = self.main_screen.query_one("#steps", StepList)
        item = await steps.add_step(raw)  # the step list shows live steps and saved ones in one JSON shape
        if steps.highlighted_child is item:
            self._show_step(item)
        if self.state == "starting":
            self.state = "running"
        self._show_state()

    async def _on_confirm(self, event: ConfirmEvent, raw: RunEvent) -> None:
        confirm_id = event.id
        request = ConfirmRequest.from_json(event.request)
        screen = ConfirmScreen(confirm_id, request, event.timeout if event.timeout is not None else 60.0, self.clock)
        self.confirms[confirm_id] = screen
        self.state = "waiting"
        self._show_state()

        def answered(answer: str | None) -> None:
            self.confirms.pop(confirm_id, None)
            if answer is not None:
                self.answered.add(confirm_id)
                self._ask_runner("answer", lambda: self.runner.answer(confirm_id, answer))

        await self.push_screen(screen, answered)

    async def _on_input(self, event: InputEvent, raw: RunEvent) -> None:
        """A value the goal left out: asked in a box; the value (or a cancel) goes back to the run."""
        input_id = event.id
        screen = ValueScreen(input_id, event.name, event.description, event.secret,
                             event.timeout if event.timeout is not None else 60.0, self.clock)
        self.confirms[input_id] = screen  # taken away with the questions when the run ends

        def given(value: str | None) -> None:
            self.confirms.pop(input_id, None)
            self._ask_runner("give", lambda: self.runner.give(input_id, value))

        await self.push_screen(screen, given)

    async def _on_confirmed(self, event: ConfirmedEvent, raw: RunEvent) -> None:
        confirm_id = event.id
        screen = self.confirms.pop(confirm_id, None)
        if screen is not None and self.screen is screen:  # nothing is pushed over a modal (check_action)
            screen.dismiss(None)
        if event.answer == "no" and confirm_id not in self.answered:
            self.notify("no answer in time: the step was refused", title="confirmation", severity="warning")
        if self.state == "waiting":
            self.state = "running"
        self._show_state()

    async def _on_queued(self, event: QueuedEvent, raw: RunEvent) -> None:
        self.main_screen.query_one("#progress", Spinner).spin("queued: the daemon runs it after the tasks before it")

    async def _on_paused(self, event: PausedEvent, raw: RunEvent) -> None:
        self.state = "paused"
        self._show_state()

    async def _on_resumed(self, event: ResumedEvent, raw: RunEvent) -> None:
        self.state = "running"
        self._show_state()

    async def _on_finished(self, event: FinishedEvent, raw: RunEvent) -> None:
        for screen in list(self.confirms.values()):
            if self.screen is screen:
                screen.dismiss(None)
        self.confirms.clear()
        self.state, self.result = "finished", dict(raw)
        if event.status == "error":
            self.tell(event.reason, title="the run failed", severity="error", timeout=15)
        if self.trajectory is not None:
            final = self.trajectory / "final.png"
            if final.is_file():
                self.main_screen.query_one("#screen", BlockImage).show_png(read_png(final))
                self.main_screen.query_one("#screen").border_title = "screen · at the end"
        self._show_state()

    # ------------------------------------------------------------ what the user sees

    def tell(self, message: str, **kw: Any) -> None:
        """A notification that quotes untrusted text (an error, a run's reason, a device's name): shown as plain
        text, never read as markup, control and invisible characters escaped."""
        self.notify(for_terminal(message, limit=600), markup=False, **kw)

    def _show_state(self) -> None:
        state = self.state
        spinner = self.main_screen.query_one("#progress", Spinner)
        status = self.main_screen.query_one("#run-status", Static)
        steps = len(self.main_screen.query_one("#steps", StepList))
        running = state in ("starting", "running", "paused", "waiting")
        self.main_screen.query_one("#run", Button).disabled = running
        self.main_screen.query_one("#pause", Button).disabled = state not in ("starting", "running", "waiting")
        self.main_screen.query_one("#resume", Button).disabled = state != "paused"
        self.main_screen.query_one("#stop", Button).disabled = not running
        status.display = state in ("idle", "finished", "paused", "waiting")
        if state == "starting":
            spinner.spin("loading the model…" if self.model_state in ("loading", "cold", "failed")
                         else "opening the device…")
        elif state == "running":
            spinner.spin(f"step {steps + 1}: the model is working…")
        elif state == "waiting":
            spinner.halt()
            status.update(Text(f"step {steps + 1}: waiting for your answer", style="bold yellow"))
        elif state == "paused":
            spinner.halt()
            status.update(Text(f"paused after {steps} steps; ctrl+p or Resume goes on", style="bold yellow"))
        elif state == "finished":
            spinner.halt()
            status.update(result_text(self.result or {}))
        else:
            spinner.halt()
            hint = "type a task and press Enter" if self.model_state != "loading" else "the model is loading…"
            status.update(Text(hint, style="dim"))

    def on_list_view_highlighted(self, event: ListView.Highlighted) -> None:
        # shown already when it arrived, or stale (the log followed a newer step since): nothing to do
        if event.list_view.id == "steps" and isinstance(event.item, StepItem) and \
                event.item is event.list_view.highlighted_child and event.item is not self._shown:
            self._show_step(event.item)

    def _show_step(self, item: StepItem) -> None:
        """Show a step's elements and screenshot beside the log."""
        self._shown = item
        step = item.step
        self.main_screen.query_one("#elements", Static).update(elements_view(step))
        screen = self.main_screen.query_one("#screen", BlockImage)
        png = _event_png(step.get("screenshot_png"))  # the daemon sends it when asked
        if png is None and self.trajectory is not None:
            png = read_png(screenshot_path(self.trajectory, step))
        screen.show_png(png, message="no screenshot")
        number = step.get("index")
        screen.border_title = f"screen · step {number + 1}" if isinstance(number, int) else "screen"

    # ------------------------------------------------------------ other screens

    def _open(self, screen: Screen[Any]) -> None:
        """Show a view over the main screen, in place of another view already open."""
        if isinstance(self.screen, ModalScreen):
            return
        if self.screen is not self.main_screen:
            self.pop_screen()
        self.push_screen(screen)

    def action_history(self) -> None:
        self._open(HistoryScreen(trajectories_root(self.config)))

    def action_sops(self) -> None:
        self._open(SopScreen(self._sop_library))

    def action_policy(self) -> None:
        self._open(PolicyScreen(self.main_screen.query_one("#task", Input).value, self.config, self.policy_file))


def _event_png(value: object) -> bytes | None:
    """A base64 PNG carried in an event, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
