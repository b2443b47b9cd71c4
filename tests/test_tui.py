"""The terminal assistant, used as a person uses it: Textual's pilot presses the keys, on the real virtual phone.

The runs here are driven by the scripted model (tests/scripted.py), injected
through the app's ``backend_factory``: these tests are about the UI flow
(confirmations, stop, pause, history...), not about a model. One slow test
runs the real bundled model through the app; two run attached to a real
daemon process (with the daemon's own scripted test model). The SVG
snapshots fix what varies (terminal size, step times, the countdown's clock,
the device list, the policy, the SOP folder, $HOME) so they compare equal
from run to run.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from rich.text import Text
from scripted import ScriptedBackend
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select, Static

from edgepilot.agent.trajectory import read_trajectory
from edgepilot.config import Config
from edgepilot.devices import OpenDevice, open_device
from edgepilot.errors import ModelError
from edgepilot.policy import DEFAULT_POLICY
from edgepilot.policy.confirm import ConfirmRequest
from edgepilot.tui.app import EdgepilotApp
from edgepilot.tui.blocks import BlockImage, block_rows, crop_around, fit_cells
from edgepilot.tui.confirm import TuiConfirmer
from edgepilot.tui.devices import DeviceChoice
from edgepilot.tui.runner import LocalRunner
from edgepilot.tui.screens import ConfirmScreen, HistoryScreen, PolicyScreen, SopScreen, ValueScreen
from edgepilot.tui.widgets import StepItem, StepList

SIZE = (120, 40)
TASK = "turn on airplane mode"
CHOICES = [DeviceChoice("virtual", "virtual phone (new, built in)"),
           DeviceChoice("desktop", "this desktop", "no display ($DISPLAY is not set)")]
REFLECT = ['{"outcome": "worked", "note": "the screen changed as intended"}']
FINISH = '{"type": "finish", "status": "success"}'


@cache
def home_index(label: str) -> int:
    """The element index of a launcher icon on a fresh virtual phone's home screen."""
    from edgepilot.controllers.android import AndroidDevice
    from edgepilot.sim.local import LocalTransport
    from edgepilot.sim.phone import VirtualPhone

    obs = AndroidDevice(LocalTransport(VirtualPhone()), screenshot=False).observe()
    return obs.find(text=label)[0]


def tap(label: str) -> str:
    return json.dumps({"type": "tap", "target": home_index(label)})


class SlowBackend(ScriptedBackend):
    """The scripted model, taking ``delay`` seconds per answer and stoppable between 'tokens' like llama.cpp."""

    def __init__(self, delay: float, **answers: list[str]) -> None:
        super().__init__(**answers)
        self.delay = delay

    def complete(self, messages, *, should_stop=None, **kw):
        end = time.monotonic() + self.delay
        while time.monotonic() < end and not (should_stop and should_stop()):
            time.sleep(0.01)
        return super().complete(messages, should_stop=should_stop, **kw)


class Phones:
    """Opens the real virtual phone (over its adb endpoint) and keeps it, so a test can look at it afterwards."""

    def __init__(self) -> None:
        self.opened: list[OpenDevice] = []

    def __call__(self, spec: str):
        from contextlib import contextmanager

        @contextmanager
        def opening():
            with open_device(spec) as opened:
                self.opened.append(opened)
                yield opened

        return opening()

    @property
    def phone(self):
        return self.opened[-1].phone


class App(EdgepilotApp):
    """The app, recording its notifications and the screens it showed."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.notes: list[tuple[str, str]] = []
        self.pushed: list[str] = []

    def push_screen(self, screen: Any, *args: Any, **kw: Any) -> Any:
        self.pushed.append(type(screen).__name__)
        return super().push_screen(screen, *args, **kw)

    def notify(self, message: str, *, title: str = "", severity: str = "information", **kw: Any) -> None:
        self.notes.append((severity, message))
        super().notify(message, title=title, severity=severity, **kw)  # type: ignore[arg-type]


def make_app(tmp_path: Path, backend: Callable[[], Any] | None = None, *, timeout: float = 30.0,
             max_steps: int | None = None, phones: Phones | None = None, policy: Path | None = DEFAULT_POLICY,
             clock: Callable[[], float] = time.monotonic, runner_class: type[LocalRunner] = LocalRunner,
             **kw: Any) -> App:
    config = Config(trajectories=tmp_path / "runs", confirm_timeout=timeout, max_steps=max_steps or 20,
                    calls="every")  # the scripted models answer every role in turn: these tests are about the TUI
    runner = runner_class(config, policy_file=policy, backend_factory=backend, opener=phones)
    return App(runner, config=config, policy_file=policy, device_lister=lambda: list(CHOICES), clock=clock, **kw)


def drive(app: EdgepilotApp, scenario: Callable[[Pilot], Awaitable[None]]) -> None:
    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.model_state in ("ready", "failed"), what="the model")
            await scenario(pilot)

    asyncio.run(go())


async def until(pilot: Pilot, check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or check}")
        await pilot.pause(0.05)


async def start(pilot: Pilot, task: str = TASK) -> None:
    app = pilot.app
    app.query_one("#task", Input).value = task
    app.query_one("#task", Input).focus()
    await pilot.press("enter")
    await until(pilot, lambda: app.state != "idle", what="the run to start")


def finished(app: EdgepilotApp) -> Callable[[], bool]:
    return lambda: app.state == "finished"


def shown(app: EdgepilotApp, selector: str) -> str:
    """The plain text a Static shows, on the screen in front, else on the main screen."""
    found = app.screen.query(selector)
    widget = found.first(Static) if found else app.main_screen.query_one(selector, Static)
    content = widget.render()
    return content.plain if isinstance(content, Text) else str(content)


def steps_of(app: EdgepilotApp) -> list[dict[str, Any]]:
    return app.main_screen.query_one("#steps", StepList).steps()


def trajectory(app: EdgepilotApp):
    assert app.trajectory is not None
    return read_trajectory(app.trajectory)


# ---------------------------------------------------------------- flows


def test_a_task_runs_on_the_virtual_phone_and_shows_its_steps(tmp_path):
    phones = Phones()
    backend = lambda: ScriptedBackend(decider=[tap("Settings"), FINISH], reflector=REFLECT,  # noqa: E731
                                      planner=[json.dumps({"progress": "Settings is open", "subgoal": "finish",
                                                           "memory": ""})])
    app = make_app(tmp_path, backend, phones=phones)

    async def scenario(pilot: Pilot) -> None:
        assert shown(app, "#model-status").startswith("model: scripted ready")
        await start(pilot)
        await until(pilot, finished(app), what="the run to finish")
        steps = steps_of(app)
        assert [s["summary"] for s in steps] == ['tap [3] "Settings"', "finish (success)"]
        assert steps[1]["thought"] == "finish"
        assert ("FINISHED: the agent finished, and the result was checked against the goal · 2 steps"
                in shown(app, "#run-status"))
        text = " ".join(str(item.query_one(Static).render()) for item in app.query(StepItem))
        assert "worked — the screen changed as intended" in text and "thought: finish" in text
        # the last step is selected: its elements and its screen (the Settings page) are shown
        assert shown(app, "#elements").startswith("App: com.android.settings")
        assert app.query_one("#screen", BlockImage).image is not None
        app.query_one("#steps").focus()
        await pilot.press("up")  # the cursor is on the log: the first step's screen, the home screen
        await until(pilot, lambda: shown(app, "#elements").startswith("App: com.android.launcher3"),
                    what="the first step's elements")
        assert app.query_one("#run", Button).disabled is False and app.query_one("#stop", Button).disabled

    drive(app, scenario)
    assert phones.phone.foreground == "com.android.settings"
    traj = trajectory(app)
    assert traj.result.status == "finished" and len(traj.steps) == 2


def test_an_event_of_the_run_that_does_not_read_is_passed_over(tmp_path):
    """A daemon of another version (or a bug) sends an event this TUI cannot read: nothing breaks, nothing shows."""
    app = make_app(tmp_path, lambda: ScriptedBackend(), phones=Phones())

    async def scenario(pilot: Pilot) -> None:
        app.run_id = "r1"
        await app.handle_event({"event": "step", "run": "r1", "index": "not a number", "gate": "x"})
        await app.handle_event({"event": "teleported", "run": "r1"})
        await app.handle_event({"event": "finished", "run": "another run", "status": "error", "reason": "theirs"})
        assert steps_of(app) == [] and app.state == "idle" and app.result is None
        await app.handle_event({"event": "finished", "run": "r1", "status": "stuck", "reason": "went round"})
        assert app.state == "finished" and app.result["status"] == "stuck"

    drive(app, scenario)


@pytest.mark.parametrize(("keys", "answer"), [(["y"], "yes"), (["n"], "no"), (["escape"], "no"), (["a"], "always"),
                                              (["tab", "enter"], "always"), (["enter"], "no")])
def test_a_confirmation_is_answered_from_the_keyboard(tmp_path, keys, answer):
    """y approves, n / Escape refuse, a approves for the rest of the task; Enter on the default button refuses."""
    phones = Phones()
    app = make_app(tmp_path, lambda: ScriptedBackend(decider=[tap("Bank"), FINISH], reflector=REFLECT), phones=phones)

    async def scenario(pilot: Pilot) -> None:
        await start(pilot)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ConfirmScreen)
        details = shown(app, "#confirm-details")
        assert 'tap [9] "Bank"' in details and "com.android.launcher3" in details and "rule  default" in details
        crop = modal.query_one("#confirm-crop", BlockImage).image
        assert crop is not None and crop.width < 1080  # a crop around the icon, not the whole screen
        assert app.main_screen.query_one("#run-status", Static).display
        assert "waiting for your answer" in shown(app, "#run-status")
        await pilot.press(*keys)
        await until(pilot, finished(app), what="the run to finish")
        assert not isinstance(app.screen, ConfirmScreen)
        first = steps_of(app)[0]["gate"]
        assert first["allowed"] is (answer != "no") and first.get("answer") == answer
        if answer == "no":
            assert "the user refused" in first["reason"]

    drive(app, scenario)
    gate = trajectory(app).steps[0].gate
    assert gate.asked is True and gate.answer == answer and gate.allowed is (answer != "no")
    in_front = phones.phone.foreground
    assert (in_front == "com.example.bank") is (answer != "no")


def test_the_confirmation_says_what_the_step_will_do_first_and_shows_hostile_text_inert(tmp_path):
    hostile = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202e"
    request = ConfirmRequest(task=f"tidy notes {hostile}", action=f'tap [4] "Delete{hostile}"',
                             target=f"Delete {hostile}", rule="delete-data", category="delete",
                             reason=f"deleting {hostile}", app="com.example.notes",
                             consequence=f'this deletes the note "Packing list{hostile}" (the task names "groceries")')
    app = make_app(tmp_path, lambda: ScriptedBackend(), phones=Phones())

    async def scenario(pilot: Pilot) -> None:
        app.run_id = "r1"
        await app.handle_event({"event": "confirm", "run": "r1", "id": "c1", "timeout": 30,
                                "request": request.to_json()})
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        consequence = app.screen.query_one("#confirm-consequence", Static)
        assert consequence.display
        assert shown(app, "#confirm-consequence") == ('this deletes the note "Packing list\\x1b[2J\\x1b]0;pwned'
                                                      '\\x07\\x9b31m\\u202e" (the task names "groceries")')
        details = shown(app, "#confirm-details")
        assert "Delete \\x1b[2J" in details
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in details.replace("\n", ""))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), what="the answer")
        await app.handle_event({"event": "confirm", "run": "r1", "id": "c2", "timeout": 30,
                                "request": {**request.to_json(), "consequence": ""}})
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the second confirmation")
        assert not app.screen.query_one("#confirm-consequence", Static).display  # as before there was one

    drive(app, scenario)


def test_the_approve_button_approves(tmp_path):
    app = make_app(tmp_path, lambda: ScriptedBackend(decider=[tap("Bank"), FINISH], reflector=REFLECT))

    async def scenario(pilot: Pilot) -> None:
        await start(pilot)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.click("#yes")
        await until(pilot, finished(app))

    drive(app, scenario)
    assert trajectory(app).steps[0].gate.answer == "yes"


def test_a_confirmation_nobody_answers_is_a_refusal(tmp_path):
    app = make_app(tmp_path, lambda: ScriptedBackend(decider=[tap("Bank"), FINISH], reflector=REFLECT), timeout=1.0)

    async def scenario(pilot: Pilot) -> None:
        await start(pilot)
        await until(pilot, finished(app))
        assert "ConfirmScreen" in app.pushed and not isinstance(app.screen, ConfirmScreen)

    drive(app, scenario)
    gate = trajectory(app).steps[0].gate
    assert gate.allowed is False and gate.answer == "no"
    assert ("warning", "no answer in time: the step was refused") in app.notes


@pytest.mark.parametrize("give", [True, False])
def test_a_value_the_goal_leaves_out_is_asked_in_a_box(tmp_path, give):
    """"check my savings balance" leaves out the PIN: the TUI asks for it (typed hidden); given, the run starts on
    the procedure with it; cancelled, the run ends saying what is missing, and nothing was done."""
    phones = Phones()
    app = make_app(tmp_path, lambda: ScriptedBackend(decider=[FINISH], reflector=REFLECT), phones=phones,
                   max_steps=1)

    async def scenario(pilot: Pilot) -> None:
        await start(pilot, "check my savings balance")
        await until(pilot, lambda: isinstance(app.screen, ValueScreen), what="the box asking for the PIN")
        box = app.screen.query_one("#value", Input)
        assert box.password and "PIN" in shown(app, "#value-title")
        if give:
            await pilot.press(*"2468", "enter")
        else:
            await pilot.press("escape")
        await until(pilot, finished(app), what="the run to end")
        assert not isinstance(app.screen, ValueScreen)

    drive(app, scenario)
    if give:
        traj = trajectory(app)
        assert traj.meta.sop == "bank-check-balance" and len(traj.steps) == 1
        assert "2468" not in traj.meta.model_dump_json()  # the PIN is typed where the procedure says, not recorded
    else:
        assert app.result["status"] == "needs_input" and "PIN" in app.result["reason"]
        assert app.trajectory is None


def test_stop_ends_a_run_and_nothing_is_done_after_it(tmp_path):
    backend = lambda: SlowBackend(0.15, decider=['{"type": "swipe", "direction": "up"}'], reflector=REFLECT)  # noqa: E731
    app = make_app(tmp_path, backend)

    async def scenario(pilot: Pilot) -> None:
        await start(pilot)
        await until(pilot, lambda: len(steps_of(app)) >= 1, what="a first step")
        assert app.state == "running" and app.query_one("#progress").display  # the model works: the spinner turns
        await pilot.press("ctrl+s")
        await until(pilot, finished(app), timeout=5, what="the stop")
        assert app.result is not None and app.result["status"] == "stopped"
        assert "STOPPED: stopped by the user" in shown(app, "#run-status")
        assert not app.query_one("#progress").display
        await pilot.pause(0.3)
        traj = trajectory(app)
        assert traj.result.status == "stopped" and len(traj.steps) < 20
        assert len(traj.steps) == len(steps_of(app))  # every step written is shown, none after the stop

    drive(app, scenario)


def test_stop_during_a_confirmation_refuses_it_and_ends_the_run(tmp_path):
    phones = Phones()
    app = make_app(tmp_path, lambda: ScriptedBackend(decider=[tap("Bank"), FINISH]), phones=phones)

    async def scenario(pilot: Pilot) -> None:
        await start(pilot)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("ctrl+s")
        await until(pilot, finished(app), timeout=5)
        assert not isinstance(app.screen, ConfirmScreen)

    drive(app, scenario)
    assert app.result is not None and app.result["status"] == "stopped"
    assert phones.phone.foreground == "com.android.launcher3"  # the bank was never opened


def test_pause_holds_the_run_and_resume_lets_it_go_on(tmp_path):
    backend = lambda: SlowBackend(0.1, decider=['{"type": "swipe", "direction": "up"}'], reflector=REFLECT)  # noqa: E731
    app = make_app(tmp_path, backend, max_steps=4)

    async def scenario(pilot: Pilot) -> None:
        await start(pilot)
        await until(pilot, lambda: len(steps_of(app)) >= 1, what="a first step")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: app.state == "paused", what="the pause")
        assert app.query_one("#resume", Button).disabled is False and app.query_one("#pause", Button).disabled
        held = len(steps_of(app))
        await pilot.pause(0.8)
        written = len((app.trajectory / "steps.jsonl").read_text().splitlines())
        assert written <= held + 1  # the step in flight may end; no new one starts while paused
        assert "paused after" in shown(app, "#run-status")
        await pilot.click("#resume")
        await until(pilot, finished(app), what="the run to go on and finish")
        assert app.result is not None and app.result["status"] == "budget" and len(steps_of(app)) == 4

    drive(app, scenario)


def test_history_lists_past_runs_and_opens_one(tmp_path):
    write_trajectories(tmp_path / "runs")
    app = make_app(tmp_path, lambda: ScriptedBackend())

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("f2")
        assert isinstance(app.screen, HistoryScreen)
        await until(pilot, lambda: len(app.screen.query_one("#runs")) == 2, what="the runs")
        await pilot.press("enter")  # the newest
        await until(pilot, lambda: len(app.screen.query_one("#run-steps", StepList)) == 2, what="its steps")
        head = shown(app, "#run-head")
        assert head.startswith("open the bank") and "FINISHED" in head
        steps = app.screen.query_one("#run-steps", StepList).steps()
        assert steps[0]["thought"] == "the bank is on the home screen"
        items = " ".join(str(i.query_one(Static).render()) for i in app.screen.query(StepItem))
        assert 'tap [9] "Bank"' in items and "asked:   default → yes" in items
        assert app.screen.query_one("#run-screen", BlockImage).image is not None
        await pilot.press("escape")
        assert not isinstance(app.screen, HistoryScreen)

    drive(app, scenario)


def test_sop_library_and_the_effective_policy_can_be_read(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPILOT_SOPS", str(tmp_path / "no-user-sops"))
    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path, lambda: ScriptedBackend())

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("f3")
        assert isinstance(app.screen, SopScreen)
        listed = app.screen.query_one("#sop-list")
        names = [listed.get_option_at_index(i).id for i in range(listed.option_count)]
        assert "settings-airplane-mode" in names
        listed.highlighted = names.index("settings-airplane-mode")
        await pilot.pause()
        detail = shown(app, "#sop-detail")
        assert detail.startswith("settings-airplane-mode") and "Procedure:" in detail
        await pilot.press("escape")
        app.query_one("#task", Input).value = 'Text Alice Morgan: "running late"'
        await pilot.press("f4")
        assert isinstance(app.screen, PolicyScreen)
        text = shown(app, "#policy-text")
        assert text.startswith("policy: bundled default")
        assert "apps the task needs (from its words): messages" in text
        assert "task-apps: allow" in text and "(task)" in text and "no rule matches: ask_user" in text
        await pilot.press("escape")

    drive(app, scenario)


# ---------------------------------------------------------------- errors are messages, not crashes


def test_a_broken_policy_is_reported_and_no_run_starts(tmp_path):
    broken = tmp_path / "policy.yaml"
    broken.write_text("version: 1\nrules:\n  - id: x\n    effect: allow\n    when: {target.txt: a}\n")
    app = make_app(tmp_path, lambda: ScriptedBackend(decider=[FINISH]), policy=broken)

    async def scenario(pilot: Pilot) -> None:
        assert "BROKEN" in shown(app, "#policy-status")
        assert any(sev == "error" and "the policy does not load" in msg for sev, msg in app.notes)
        await start(pilot)
        await until(pilot, finished(app))
        assert app.result is not None and app.result["status"] == "error"
        assert app.result["reason"].startswith("policy: ") and "target.txt" in app.result["reason"]
        await pilot.press("f4")
        assert "the policy does not load" in shown(app, "#policy-text")

    drive(app, scenario)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_model_that_does_not_load_is_reported(tmp_path):
    def fails():
        raise ModelError("model file /nowhere.gguf does not exist")

    app = make_app(tmp_path, fails)

    async def scenario(pilot: Pilot) -> None:
        assert app.model_state == "failed" and "not ready" in shown(app, "#model-status")
        assert ("error", "the model did not load: model file /nowhere.gguf does not exist") in app.notes
        await start(pilot)
        await until(pilot, finished(app))
        assert app.result is not None and app.result["status"] == "error"
        assert any(sev == "error" and "/nowhere.gguf" in msg for sev, msg in app.notes[1:])
        assert app.query_one("#run", Button).disabled is False  # ready for another try

    drive(app, scenario)


def test_an_unreachable_device_and_an_unavailable_desktop_are_reported(tmp_path):
    app = make_app(tmp_path, lambda: ScriptedBackend(decider=[FINISH]), device="nosuch@127.0.0.1:1")

    async def scenario(pilot: Pilot) -> None:
        select = app.query_one("#device", Select)
        await until(pilot, lambda: "desktop" in [c.spec for c in app.device_choices], what="the device list")
        assert select.value == app.device == "nosuch@127.0.0.1:1"
        await start(pilot)
        await until(pilot, finished(app))
        assert app.result is not None and app.result["reason"].startswith("device 'nosuch@127.0.0.1:1' cannot be")
        select.focus()
        await pilot.press("enter", "down", "down", "enter")  # open the picker, go to "this desktop", pick it
        await pilot.pause()
        assert select.value == app.device == "nosuch@127.0.0.1:1"  # not taken
        assert ("warning", "this desktop cannot be used: no display ($DISPLAY is not set)") in app.notes

    drive(app, scenario)


# ---------------------------------------------------------------- pieces


def test_half_blocks_keep_the_aspect_and_the_colours():
    img = Image.new("RGB", (100, 200), (255, 0, 0))
    img.paste((0, 0, 255), (0, 100, 100, 200))  # bottom half blue
    assert fit_cells(100, 200, 40, 40) == (40, 40)
    assert fit_cells(1080, 2400, 30, 100) == (30, 33)
    rows = block_rows(img, 10, 10)
    assert len(rows) == 10 and all(len(r) == 1 for r in rows)  # one run of identical cells per row
    top, bottom = rows[0][0], rows[-1][0]
    assert top.text == "▀" * 10 and top.style.color.triplet == (255, 0, 0)
    assert bottom.style.bgcolor.triplet == (0, 0, 255)


def test_the_crop_is_around_the_target_and_outlines_it():
    img = Image.new("RGB", (1080, 2400), (255, 255, 255))
    crop = crop_around(img, (100, 1000, 300, 1100))
    assert crop.size == (420, 360)  # 0.6 of the box's width each side, at least 360 px tall; clamped at the left
    assert crop.getpixel((crop.width // 2, crop.height // 2)) == (255, 255, 255)
    assert (255, 40, 40) in {crop.getpixel((x, crop.height // 2)) for x in range(crop.width)}
    assert crop_around(img, None).size == img.size and crop_around(img, (5000, 5000, 6000, 6000)).size == img.size


def test_the_confirmer_waits_for_the_answer_by_id_and_refuses_on_timeout():
    events: list[dict[str, Any]] = []
    confirmer = TuiConfirmer("run1", events.append)
    request = ConfirmRequest(task="t", action="tap [1]", target="Send", rule="send-message", category="send",
                             reason="sending", app="com.example", screenshot_png=b"\x89PNG", target_bounds=(1, 2, 3, 4))
    answers: list[str] = []
    worker = threading.Thread(target=lambda: answers.append(confirmer.ask(request, 5).answer))
    worker.start()
    for _ in range(200):
        if events:
            break
        time.sleep(0.01)
    asked = events[0]
    assert asked["event"] == "confirm" and asked["timeout"] == 5 and asked["request"]["target_bounds"] == [1, 2, 3, 4]
    assert ConfirmRequest.from_json(asked["request"]).screenshot_png == b"\x89PNG"
    assert confirmer.answer("wrong-id", "yes") is False
    with pytest.raises(ValueError):
        confirmer.answer(asked["id"], "maybe")
    assert confirmer.answer(asked["id"], "always") is True
    worker.join(5)
    assert answers == ["always"] and events[-1] == {"event": "confirmed", "run": "run1", "id": asked["id"],
                                                    "answer": "always"}
    result = confirmer.ask(request, 0.05)
    assert result.answer == "no" and "no answer within" in result.note
    confirmer.close("stopped")
    assert confirmer.ask(request, 5).answer == "no"  # a stopped run asks nobody


# ---------------------------------------------------------------- the real model


@pytest.mark.slow
def test_the_bundled_model_runs_a_couple_of_steps_through_the_tui(tmp_path):
    """The real path: open_model(None, Config()) loaded in the background, two steps on the virtual phone
    (about 12 s on an idle machine: docs/bench.md measures some 6 s per step)."""
    import os

    if not os.environ.get("CI"):  # in CI a missing llama-cpp-python is a failure, never a skip
        pytest.importorskip("llama_cpp", reason="`make install-llm` installs llama-cpp-python")
    config = Config(trajectories=tmp_path / "runs", confirm_timeout=2, max_steps=2, calls="every")  # model each step
    app = App(config=config, policy_file=DEFAULT_POLICY, device_lister=lambda: list(CHOICES))
    shown_steps: list[int] = []

    async def scenario(pilot: Pilot) -> None:
        assert app.model_state == "ready", app.notes
        await start(pilot)

        def done() -> bool:
            if isinstance(app.screen, ConfirmScreen):
                app.screen.dismiss("no")
            return app.state == "finished"

        # about 5 model calls of some 700 prompt tokens: seconds on an idle machine, minutes on a crowded one
        await until(pilot, done, timeout=240, what="the model's run")
        shown_steps.append(len(steps_of(app)))

    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.model_state in ("ready", "failed"), timeout=60, what="the model")
            await scenario(pilot)

    asyncio.run(go())
    assert app.result is not None and app.result["status"] in ("budget", "finished", "gave_up", "stuck"), app.result
    traj = trajectory(app)
    assert traj.meta.model == "smollm2-135m-agent" and 1 <= len(traj.steps) <= 2
    assert all(c.role in ("planner", "decider", "reflector") for s in traj.steps for c in s.calls)
    for step in traj.steps:
        decider = [c for c in step.calls if c.role == "decider"]
        assert decider and decider[0].constrained and decider[0].error is None
        assert step.action is not None  # the grammar makes every answer an action
    assert shown_steps == [len(traj.steps)]


# ---------------------------------------------------------------- snapshots


class FixedTimes(LocalRunner):
    """A local runner whose events carry fixed times, so a snapshot does not depend on the machine's speed."""

    def _emit(self, event: dict[str, Any]) -> None:
        if event.get("event") == "step":
            event = {**event, "ms": {"total": 1500.0 + 100 * event.get("index", 0)}}
        if event.get("event") == "finished":
            event = {**event, "seconds": 4.2}
        super()._emit(event)


def still(app: EdgepilotApp) -> None:
    """No blinking cursor in a snapshot."""
    for box in app.screen.query(Input):
        box.cursor_blink = False


SNAP_POLICY = """\
version: 1
default: ask_user
rules:
  - id: open-bank
    priority: 10
    effect: forbid
    actions: [tap, long_press]
    when: {target.label: {regex: '(?i)^bank$'}}
    fallback: ask_user
    category: money
    reason: the bank holds your money
  - id: moves
    priority: 90
    effect: allow
    actions: [key, swipe, wait, finish]
    reason: moving around and finishing change nothing
"""
SNAP_SOP = """\
---
name: {name}
description: {description}
apps: [Settings, com.android.settings]
phrasings:
  - {phrasing}
params:
  state: {{description: "on or off", example: "on"}}
---
1. Open the Settings app.
2. Tap "Network & internet". (screen: Settings)
3. Tap the switch if it is not already {{state}}. (screen: Network & internet) [sensitive]
4. Finish when the switch shows {{state}}. (screen: Network & internet)
"""


def fixed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: Callable[[], Any] | None = None) -> App:
    """The app with what a snapshot shows held still: step times, the clock, the policy, the SOP library, and
    a home folder (paths show as ~/...)."""
    from edgepilot.sop import Folder, load_library

    monkeypatch.setenv("HOME", str(tmp_path))

    policy = tmp_path / "snap-policy.yaml"
    policy.write_text(SNAP_POLICY)
    sops = tmp_path / "sops"
    sops.mkdir()
    for name, description, phrasing in (("wifi-switch", "Turn Wi-Fi on or off.", "Turn Wi-Fi {state}"),
                                        ("airplane-switch", "Turn airplane mode on or off.",
                                         "Turn airplane mode {state}")):
        (sops / f"{name}.md").write_text(SNAP_SOP.format(name=name, description=description, phrasing=phrasing))
    return make_app(tmp_path, backend or (lambda: ScriptedBackend()), clock=lambda: 0.0, runner_class=FixedTimes,
                    policy=policy, sop_library=lambda: load_library([Folder("project", sops)]))


async def ready(pilot: Pilot) -> None:
    await until(pilot, lambda: pilot.app.model_state == "ready", what="the model")
    await until(pilot, lambda: len(pilot.app.device_choices) == len(CHOICES), what="the device list")
    still(pilot.app)


def test_snapshot_main_idle(tmp_path, monkeypatch, snap_compare):
    assert snap_compare(fixed(tmp_path, monkeypatch), terminal_size=SIZE, run_before=ready)


def test_snapshot_main_after_a_run(tmp_path, monkeypatch, snap_compare):
    backend = lambda: ScriptedBackend(decider=[tap("Settings"), FINISH], reflector=REFLECT,  # noqa: E731
                                      planner=[json.dumps({"progress": "in Settings", "subgoal": "finish",
                                                           "memory": ""})])

    async def run(pilot: Pilot) -> None:
        await ready(pilot)
        await start(pilot)
        await until(pilot, finished(pilot.app))
        still(pilot.app)

    assert snap_compare(fixed(tmp_path, monkeypatch, backend), terminal_size=SIZE, run_before=run)


def test_snapshot_confirmation(tmp_path, monkeypatch, snap_compare):
    async def run(pilot: Pilot) -> None:
        await ready(pilot)
        await start(pilot)
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), what="the confirmation")

    app = fixed(tmp_path, monkeypatch, lambda: ScriptedBackend(decider=[tap("Bank"), FINISH]))
    assert snap_compare(app, terminal_size=SIZE, run_before=run)


def test_snapshot_history(tmp_path, monkeypatch, snap_compare):
    write_trajectories(tmp_path / "runs")

    async def run(pilot: Pilot) -> None:
        await ready(pilot)
        await pilot.press("f2")
        await until(pilot, lambda: len(pilot.app.screen.query_one("#runs")) == 2)
        await pilot.press("enter")
        await until(pilot, lambda: len(pilot.app.screen.query_one("#run-steps", StepList)) == 2)

    assert snap_compare(fixed(tmp_path, monkeypatch), terminal_size=SIZE, run_before=run)


def test_snapshot_sops(tmp_path, monkeypatch, snap_compare):
    async def run(pilot: Pilot) -> None:
        await ready(pilot)
        await pilot.press("f3")

    assert snap_compare(fixed(tmp_path, monkeypatch), terminal_size=SIZE, run_before=run)


def test_snapshot_policy(tmp_path, monkeypatch, snap_compare):
    async def run(pilot: Pilot) -> None:
        await ready(pilot)
        pilot.app.query_one("#task", Input).value = "wait a moment, then finish"
        await pilot.press("f4")

    assert snap_compare(fixed(tmp_path, monkeypatch), terminal_size=SIZE, run_before=run)


# ---------------------------------------------------------------- fixtures


def write_trajectories(root: Path) -> None:
    """Two past runs with fixed times and real screenshots of the virtual phone."""
    from edgepilot.controllers.android import AndroidDevice
    from edgepilot.sim.local import LocalTransport
    from edgepilot.sim.phone import VirtualPhone

    device = AndroidDevice(LocalTransport(VirtualPhone()), screenshot=True)
    home = device.observe()
    bank = home.find(text="Bank")[0]
    b = home.elements[bank].bounds
    older = root / "20250101-090000-turn-on-wi-fi"
    older.mkdir(parents=True)
    (older / "meta.json").write_text(json.dumps({"format": 1, "started": "2025-01-01T09:00:00", "goal": "turn on Wi-Fi",
                                                 "model": "smollm2-135m", "device": "virtual phone"}))
    (older / "steps.jsonl").write_text("")
    newer = root / "20250102-100000-open-the-bank"
    newer.mkdir()
    (newer / "meta.json").write_text(json.dumps({"format": 1, "started": "2025-01-02T10:00:00", "goal": "open the bank",
                                                 "model": "smollm2-135m", "device": "virtual phone", "sop": None}))
    (newer / "step-000.png").write_bytes(home.screenshot_png or b"")
    steps = [
        {"index": 0, "app": home.package, "screen": home.to_text(), "screenshot": "step-000.png",
         "thought": "the bank is on the home screen", "action": {"type": "tap", "target": bank},
         "target_bounds": [b.left, b.top, b.right, b.bottom],
         "gate": {"allowed": True, "reason": "approved by the user", "verdict": "ask_user", "rule": "default",
                  "asked": True, "answer": "yes"},
         "result": {"ok": True, "message": "tapped"}, "outcome": {"kind": "worked", "note": "the bank opened",
                                                                 "by": "model"},
         "ms": {"total": 2100.0}, "error": None},
        {"index": 1, "app": "com.example.bank", "screen": "App: com.example.bank (secure screen)",
         "thought": "done", "action": {"type": "finish", "status": "success"}, "gate": {"allowed": True, "reason": ""},
         "outcome": {"kind": "finished", "note": "", "by": "check"}, "ms": {"total": 900.0}, "error": None},
    ]
    (newer / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    (newer / "result.json").write_text(json.dumps({"status": "finished", "reason": "the agent finished",
                                                   "answer": None, "steps": 2, "seconds": 3.0}))


def test_the_device_picker_offers_the_virtual_phone_adb_devices_and_this_desktop(monkeypatch):
    import edgepilot.devices as devices
    from edgepilot.tui.devices import device_choices

    rows = [{"serial": "emulator-5554", "state": "device", "kind": "adb", "address": "127.0.0.1:5037"},
            {"serial": "R58M", "state": "unauthorized", "kind": "adb", "address": "127.0.0.1:5037"},
            {"serial": "desktop::5", "state": "device", "kind": "desktop", "address": ":5"}]
    monkeypatch.setattr(devices, "list_devices", lambda port=5037: rows)
    choices = device_choices()
    assert [(c.spec, c.available) for c in choices] == [("virtual", True), ("emulator-5554", True), ("R58M", False),
                                                        ("desktop::5", True)]
    assert "allow USB debugging" in choices[2].reason and choices[3].label == "this desktop (:5)"
    monkeypatch.setattr(devices, "list_devices", lambda port=5037: rows[:1])
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    last = device_choices()[-1]
    assert last.spec == "desktop" and not last.available and "no display" in last.reason



# ---------------------------------------------------------------- attached to the daemon


WAITS = [json.dumps({"type": "wait", "seconds": round(0.2 + i / 100, 2)}) for i in range(40)]  # no two alike
LONG_TASK = "wait for the phone, again and again"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Any:
    """A real daemon process (``edgepilot daemon start --foreground``) with a scripted model and its own folders."""
    import os
    import subprocess
    import sys

    from edgepilot.daemon.client import DaemonClient, DaemonError

    root = tmp_path_factory.mktemp("daemon")
    script = root / "script.json"
    script.write_text(json.dumps({"delay": 0.05, "answers": {"decider": [tap("Bank"), FINISH], "reflector": REFLECT},
                                  "tasks": {LONG_TASK: {"decider": WAITS}}}))
    (root / "config.toml").write_text('confirm_timeout = 30\ncalls = "every"\n')  # scripted: every role answers
    env = {**os.environ, "EDGEPILOT_HOME": str(root / "home"), "EDGEPILOT_RUNTIME_DIR": str(root / "run"),
           "EDGEPILOT_CONFIG": str(root / "config.toml"), "EDGEPILOT_AUDIT": str(root / "audit.jsonl")}
    env.pop("DISPLAY", None)
    log = root / "daemon.log"
    proc = subprocess.Popen([sys.executable, "-m", "edgepilot", "daemon", "start", "--foreground",
                             "--scripted-model", str(script), "--device", "virtual", "--no-hotkeys", "--no-notify"],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    sock = root / "run" / "daemon.sock"

    def connect() -> DaemonClient:
        return DaemonClient.connect(sock, token=(root / "home" / "daemon.token").read_text().strip())

    deadline = time.monotonic() + 60
    while True:
        try:
            connect().close()
            break
        except (DaemonError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the daemon did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
    try:
        yield connect
    finally:
        try:
            with connect() as client:
                client.shutdown()
            proc.wait(30)
        except (DaemonError, OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(10)


def test_attached_to_the_daemon_a_run_is_watched_and_confirmed_like_a_local_one(tmp_path, daemon):
    from edgepilot.tui.attached import AttachedRunner

    app = App(AttachedRunner(daemon), config=Config(trajectories=tmp_path / "runs"),
              device_lister=lambda: list(CHOICES), mode="attached to the daemon")

    async def scenario(pilot: Pilot) -> None:
        assert app.model_state == "ready", app.notes
        assert shown(app, "#model-status") == "model: scripted (in the daemon) ready · attached to the daemon"
        await start(pilot)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the daemon's confirmation")
        await pilot.pause()
        assert 'tap [9] "Bank"' in shown(app, "#confirm-details")
        crop = app.screen.query_one("#confirm-crop", BlockImage)
        assert crop.image is not None, crop.message  # the screenshot came along
        await pilot.press("y")
        await until(pilot, finished(app), what="the daemon's run to finish")
        assert app.result is not None and app.result["status"] == "finished", app.result
        steps = steps_of(app)
        assert [s["summary"] for s in steps] == ['tap [9] "Bank"', "finish (success)"]
        assert steps[0]["gate"]["answer"] == "yes"
        assert app.query_one("#screen", BlockImage).image is not None
        assert app.trajectory is not None and (app.trajectory / "steps.jsonl").is_file()

    drive(app, scenario)


def test_attached_pause_resume_and_stop_reach_the_daemons_run(tmp_path, daemon):
    from edgepilot.tui.attached import AttachedRunner

    app = App(AttachedRunner(daemon), config=Config(trajectories=tmp_path / "runs"),
              device_lister=lambda: list(CHOICES), mode="attached to the daemon")

    async def scenario(pilot: Pilot) -> None:
        await start(pilot, LONG_TASK)
        await until(pilot, lambda: len(steps_of(app)) >= 1, what="a first step in the daemon")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: app.state == "paused", what="the daemon's paused event")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: app.state == "running", what="the daemon's resumed event")
        await pilot.press("ctrl+s")
        await until(pilot, finished(app), what="the daemon's stop")
        assert app.result is not None and app.result["status"] == "stopped", app.result
        assert len(steps_of(app)) < 20

    drive(app, scenario)
