"""``edgepilot record``: the command language, recording over the virtual phone's adb endpoint into an
ordinary trajectory, bad commands asked again, and what is kept when the recording is cut short."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgepilot.actions import Finish, Key, LongPress, OpenApp, Swipe, Tap, Type, Wait
from edgepilot.agent.record import Control, Recorder, parse_command
from edgepilot.agent.report import format_replay
from edgepilot.agent.trajectory import TrajectoryWriter, read_trajectory
from edgepilot.cli.record import record
from edgepilot.devices import open_device
from edgepilot.errors import ActionError, DeviceError


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EDGEPILOT_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def local():
    with open_device("virtual-local") as opened:
        yield opened


@pytest.fixture
def contacts(local):
    """The Contacts list, observed."""
    local.phone.reset()
    local.device.act(OpenApp(app="Contacts"))
    return local.device.observe()


def only_folder(root: Path) -> Path:
    (folder,) = [p for p in root.iterdir() if p.is_dir()]
    return folder


# ---------------------------------------------------------------- the command language


def test_commands_become_actions_on_the_screen(contacts):
    obs = contacts
    add = next(i for i, e in enumerate(obs.elements) if e.content_desc == "Add contact")
    assert parse_command(f"tap {add}", obs) == Tap(target=add)
    assert parse_command('tap "Add contact"', obs) == Tap(target=add)
    assert parse_command("tap Add contact", obs) == Tap(target=add)
    assert parse_command(f"long {add}", obs) == LongPress(target=add)
    assert parse_command("key back", obs) == Key(key="back") == parse_command("back", obs)
    assert parse_command("swipe up", obs) == Swipe(direction="up")
    assert parse_command("open Settings", obs) == OpenApp(app="Settings")
    assert parse_command("wait 2", obs) == Wait(seconds=2)
    assert parse_command("done", obs) == Finish(status="success")
    assert parse_command("done 555-0101", obs) == Finish(status="success", answer="555-0101")
    assert parse_command("  # a comment", obs) is None and parse_command("", obs) is None
    assert parse_command("help", obs) == Control("help") and parse_command("exit", obs) == Control("quit")


def test_typing_names_a_field_or_uses_the_focused_one(local, contacts):
    search = next(i for i, e in enumerate(contacts.elements) if e.editable)
    label = contacts.elements[search].label  # an empty field: its hint
    assert parse_command(f"type {search} Ann Lee", contacts) == Type(text="Ann Lee", target=search)
    assert parse_command(f'type "{label}" "  spaced  "', contacts) == Type(text="  spaced  ", target=search)
    assert parse_command(f"replace {search} Bo", contacts) == Type(text="Bo", target=search, clear=True)
    with pytest.raises(ActionError, match="no field has the focus"):
        parse_command("type hello", contacts)
    local.device.act(Tap(target=search))
    focused = local.device.observe()
    assert parse_command('type "42"', focused) == Type(text="42")


@pytest.mark.parametrize(("line", "message"), [
    ("tapp 3", "unknown command 'tapp'"),
    ("tap", "tap which element"),
    ("tap 999", "there is no element 999"),
    ('tap "No such thing"', "no element shows 'No such thing'"),
    ("key shout", "no key 'shout'"),
    ("swipe sideways", "swipe which way"),
    ("type 3", "type what"),
    ("replace hello", "replace which field"),
    ("wait soon", "wait how long"),
    ("open", "open which app"),
])
def test_bad_commands_say_what_would_work(contacts, line, message):
    with pytest.raises(ActionError, match=message):
        parse_command(line, contacts)


def test_a_label_shown_twice_needs_its_number(local):
    local.phone.reset()
    local.device.act(OpenApp(app="Settings"))
    for label in ("Network & internet", "Wi-Fi"):  # labels work as well as numbers
        local.device.act(parse_command(f'tap "{label}"', local.device.observe()))
    obs = local.device.observe()
    with pytest.raises(ActionError, match=r"elements show 'Secured' \(\d+, \d+"):
        parse_command('tap "Secured"', obs)  # the second line of several networks
    assert parse_command('tap "CoffeeShop"', obs) == Tap(target=next(
        i for i, e in enumerate(obs.elements) if e.text.startswith("CoffeeShop")))


# ---------------------------------------------------------------- recording


SCRIPT = """\
open Contacts
tap "Add contact"
frobnicate
type 99 nope
type "Name" {name}
type "Phone" {phone}
open NoSuchApp
tap Save
done
"""


def test_a_scripted_recording_over_adb_writes_an_ordinary_trajectory(tmp_path):
    from edgepilot.sim.tasks.suite import load_templates

    instance = load_templates()["contacts_add"].instance(1)
    script = tmp_path / "demo.txt"
    script.write_text(SCRIPT.format(**instance.params), encoding="utf-8")
    out = tmp_path / "runs"
    result = CliRunner().invoke(record, ["--task", instance.id, "--device", "virtual", "--script", str(script),
                                         "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "adb on 127.0.0.1:" in result.output
    assert "unknown command 'frobnicate'" in result.output and "there is no element 99" in result.output
    assert "the phone refused: no app called 'NoSuchApp'" in result.output
    assert "finished: the person finished, 6 steps; the task's checks passed" in result.output

    folder = only_folder(out)
    trajectory = read_trajectory(folder)
    assert trajectory.warnings == []
    assert trajectory.meta.agent == "human" and trajectory.meta.goal == instance.goal
    assert trajectory.meta.task == instance.id and trajectory.meta.recorder == "step-by-step"
    assert trajectory.result.status == "finished" and trajectory.result.success is True
    steps = trajectory.steps
    assert [s.action["type"] for s in steps] == ["open_app", "tap", "type", "type", "tap", "finish"]
    assert [s.thought for s in steps][:2] == ["open Contacts", 'tap "Add contact"']
    typed = steps[2]
    assert typed.action["text"] == instance.params["name"] and typed.target_bounds is not None
    assert "[" in typed.screen and typed.app == "com.android.contacts"
    assert typed.outcome.kind == "changed" and steps[-1].outcome.kind == "finished"
    assert all((folder / s.screenshot).is_file() for s in steps)
    assert (folder / "final.png").is_file()
    replay = format_replay(trajectory)
    assert "agent:   human" in replay and "open_app" in replay


def test_the_end_of_the_input_keeps_what_was_recorded(tmp_path):
    result = CliRunner().invoke(record, ["--goal", "Open the clock", "--device", "virtual-local", "--out",
                                         str(tmp_path)], input="open Clock\n")
    assert result.exit_code == 0, result.output
    assert "interrupted: the input ended before `done`, 1 steps" in result.output
    trajectory = read_trajectory(only_folder(tmp_path))
    assert trajectory.result.status == "interrupted" and len(trajectory.steps) == 1


def test_quit_and_a_goal_are_needed(tmp_path):
    result = CliRunner().invoke(record, ["--device", "virtual-local", "--out", str(tmp_path)], input="done\n")
    assert result.exit_code != 0 and "--goal" in str(result.exception)
    quit_ = CliRunner().invoke(record, ["--goal", "Nothing", "--device", "virtual-local", "--out", str(tmp_path)],
                               input="help\nscreen\nquit\n")
    assert "tap N | long N" in quit_.output and "stopped by the person (quit)" in quit_.output


def test_ctrl_c_keeps_the_steps_already_written(local, tmp_path):
    local.phone.reset()
    writer = TrajectoryWriter(tmp_path / "run", {"goal": "Open Notes", "agent": "human"})

    def lines():
        yield "open Notes"
        raise KeyboardInterrupt

    said: list[str] = []
    run = Recorder(local.device, writer, say=said.append).run("Open Notes", lines())
    assert run.status == "interrupted" and run.reason == "stopped by the person (Ctrl-C)"
    trajectory = read_trajectory(tmp_path / "run")
    assert len(trajectory.steps) == 1 and trajectory.result.status == "interrupted"
    assert any("1. open Notes" in line for line in said)


class Unplugged:
    """A phone that answers the first look and then goes away (the cable is pulled)."""

    def __init__(self, device) -> None:
        self.device, self.looks = device, 0

    @property
    def info(self):
        return self.device.info

    def observe(self):
        self.looks += 1
        if self.looks > 1:
            raise DeviceError("device virtual-1 stopped answering; check the cable")
        return self.device.observe()

    def act(self, action):
        return self.device.act(action)


def test_a_device_that_goes_away_ends_the_recording_with_the_reason(local, tmp_path):
    local.phone.reset()
    writer = TrajectoryWriter(tmp_path / "run", {"goal": "Open Notes", "agent": "human"})
    run = Recorder(Unplugged(local.device), writer, say=lambda _: None).run("Open Notes", iter(["open Notes\n"]))
    assert run.status == "error" and "stopped answering" in run.reason
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "error"
