"""SOPs learned from demonstrations: screens read back from trajectories, drafting (steps, parameters,
merging, sensitive steps), the SOP checker that follows an SOP without a model, and the whole path: a
person's demonstration recorded over adb, learned, linted, and followed on a held-out variant."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgepilot.actions import Finish, OpenApp, Swipe, Tap, Type
from edgepilot.agent.learn import demo_from_trajectory, demos_from, policy_classifier
from edgepilot.agent.records import RunMeta, RunRecord, StepRecord
from edgepilot.agent.trajectory import Trajectory, read_trajectory
from edgepilot.bench.episode import run_episode
from edgepilot.bench.sop import follower_factory, learn_eval
from edgepilot.bench.tasks import agent_factory
from edgepilot.cli.record import record
from edgepilot.cli.sop import sop
from edgepilot.devices import open_device
from edgepilot.errors import SopError
from edgepilot.policy import DEFAULT_POLICY
from edgepilot.sim.tasks.suite import load_templates
from edgepilot.sop import load_library, load_sop, parse_sop
from edgepilot.sop.follow import SopFollower, read_instruction
from edgepilot.sop.learn import Demo, learn_sop
from edgepilot.sop.screen import Screen, find

SEND = load_templates()["messages_send_new"]
DEMO_SCRIPT = """\
# a person sends a text, one command at a time
open Messages
tap "Start chat"
type "To: type a name or number" {name}
type "Text message" {body}
tap Send
done
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """No test reads the user's SOP folder, policy or trajectories."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("EDGEPILOT_SOPS", str(home / "user-sops"))
    monkeypatch.setenv("EDGEPILOT_POLICY", str(DEFAULT_POLICY))
    monkeypatch.setenv("EDGEPILOT_HOME", str(home))
    monkeypatch.chdir(home)


@pytest.fixture(scope="module")
def local():
    """A virtual phone without a socket, for the oracle's demonstrations and the checker's runs."""
    with open_device("virtual-local") as opened:
        yield opened


def oracle_demo(opened, template_id: str, seed: int, root: Path) -> Demo:
    """The oracle's run of one task instance, written as a trajectory and read back as a demonstration."""
    instance = load_templates()[template_id].instance(seed)
    result = run_episode(opened.device, opened.phone, instance, agent_factory("oracle", opened.phone),
                         save_to=root)
    assert result.success, result.reason
    return demo_from_trajectory(read_trajectory(result.trajectory))


def follow(opened, learned_sop, template_id: str, seed: int):
    instance = load_templates()[template_id].instance(seed)
    return run_episode(opened.device, opened.phone, instance, follower_factory(learned_sop, load_library().sops))


# ---------------------------------------------------------------- screens


def test_a_screen_read_back_from_its_text_matches_the_live_observation(local):
    local.phone.start_app("com.android.settings")
    local.phone.changed()
    obs = local.device.observe()
    live, stored = Screen.from_observation(obs), Screen.from_text(obs.to_text())
    assert stored.package == live.package == "com.android.settings"
    assert stored.title == live.title == "Settings"
    assert [(e.index, e.cls, e.lines, e.rid, e.flags) for e in stored.elements] == \
        [(e.index, e.cls, e.lines, e.rid, e.flags) for e in live.elements]
    row = find(stored, "Network & internet", want="tap")[0]
    assert row.clickable and row.rid == "network" and row.lines[0] == "Network & internet"


def test_screen_text_keeps_flags_and_marks_cut_lines():
    screen = Screen.from_text('App: com.example.bank (secure screen)\n'
                              '[0] TextView "Accounts" id=toolbar_title\n'
                              '[1] EditText "•••" id=pin (editable, password, clickable)\n'
                              '[2] Switch "ON" id=wifi_switch (on, clickable)\n'
                              '[3] LinearLayout "BankAlert · Your code is 48291. Do…" id=conversation (clickable)\n'
                              '... 4 more elements not shown')
    assert screen.secure and screen.title == "Accounts"
    pin, switch, row = screen.elements[1:]
    assert pin.password and pin.editable and pin.labels == ()
    assert switch.checked and switch.state_text
    assert row.truncated and row.labels == ("BankAlert",)
    assert [e.index for e in find(screen, "To")] == []
    assert find(screen, "pin")[0] is pin  # by resource id


# ---------------------------------------------------------------- drafting


def test_an_oracle_demonstration_becomes_readable_steps_with_parameters(local, tmp_path):
    learned = learn_sop([oracle_demo(local, "contacts_delete", 0, tmp_path)], classify=policy_classifier())
    s = learned.sop
    assert parse_sop(learned.text) == s.model_copy(update={"path": "<sop>"})
    assert s.name == "learned-contacts-don-t-need-s" and s.apps == ("Contacts", "com.android.contacts")
    assert list(s.params) == ["contact"] and s.params["contact"].example == "Elena Fischer"
    assert s.phrasings == ("I don't need {contact}'s contact any more, delete it",)
    assert [step.render() for step in s.steps] == [
        "1. Open the Contacts app.",
        '2. Tap "{contact}". (screen: Contacts)',
        '3. Tap "Delete". (screen: {contact}) [sensitive]',
        '4. Tap "Delete". (screen: Delete contact?) [sensitive]',
        "5. Finish: the task is done. (screen: Contacts)",
    ]
    assert [step.kind for step in s.sensitive_steps] == ["delete", "delete"]


def test_switches_answers_and_passwords(local, tmp_path):
    wifi = learn_sop([oracle_demo(local, "settings_wifi_toggle", 0, tmp_path)]).sop
    assert wifi.steps[3].text == 'Tap the switch next to "Use Wi-Fi" if it is not {state}.'
    assert wifi.params["state"].example == "off"
    lookup = learn_sop([oracle_demo(local, "contacts_lookup_phone", 0, tmp_path)]).sop
    assert lookup.steps[-1].text == 'Finish and answer with the text of "contact_phone".'
    code = learn_sop([oracle_demo(local, "messages_read_code", 0, tmp_path)]).sop
    assert code.steps[-1].text == 'Finish and answer with the number in the last "message_text".'
    join = learn_sop([oracle_demo(local, "settings_wifi_connect", 0, tmp_path)], classify=policy_classifier()).sop
    typed = next(step for step in join.steps if step.text.startswith("Type"))
    assert typed.text == 'Type "{password}" in the "password" field.' and typed.kind == "password"


def test_two_demonstrations_merge_into_one_sop_with_both_phrasings(local, tmp_path):
    demos = [oracle_demo(local, "clock_add_alarm_label", seed, tmp_path) for seed in (0, 2)]
    assert demos[0].goal != demos[1].goal
    learned = learn_sop(demos, name="alarm-with-label")
    s = learned.sop
    assert s.name == "alarm-with-label" and len(s.phrasings) == 2
    assert set(s.params) == {"time", "label"}
    assert [step.text for step in s.steps][2:4] == ['Type "{time}" in the "HH:MM" field.',
                                                    'Type "{label}" in the "Label" field.']
    assert "2 demonstrations" in s.description


def test_a_value_the_goal_does_not_give_stays_as_demonstrated_with_a_note(local, tmp_path):
    learned = learn_sop([oracle_demo(local, "bank_balance_to_note", 0, tmp_path)])
    assert any("every time" in note for note in learned.notes)


def test_only_successful_trajectories_are_learned_from(tmp_path):
    steps = [StepRecord(index=0, action={"type": "open_app", "app": "Settings"}, screen="App: x")]
    interrupted = RunRecord(status="interrupted", reason="stopped by the person (Ctrl-C)")
    trajectory = Trajectory(tmp_path, RunMeta(goal="Turn off Wi-Fi"), steps, interrupted)

    with pytest.raises(SopError, match="not a successful run .*Ctrl-C"):
        demos_from([trajectory])
    trajectory.result = RunRecord(status="finished", success=False, failed_checks=["settings.wifi equals False"])
    with pytest.raises(SopError, match="failed: settings.wifi"):
        demo_from_trajectory(trajectory)
    trajectory.meta = RunMeta()
    with pytest.raises(SopError, match="no goal"):
        demo_from_trajectory(trajectory)
    with pytest.raises(SopError, match="no demonstrations"):
        learn_sop([])


# ---------------------------------------------------------------- following


def test_step_forms_the_checker_reads():
    assert read_instruction("Open the Settings app.").parts == {"app": "Settings"}
    assert read_instruction('Tap "{name}" in the list (type in "Search contacts" if it is not shown).').form == "tap"
    near = read_instruction('Tap the switch next to "Use Wi-Fi" if it is not off.')
    assert near.form == "near" and near.parts["state"] == "off"
    assert read_instruction('Type "a "quoted" word" in the "Note" field.').parts["value"] == 'a "quoted" word'
    assert read_instruction('Finish and answer with the amount after "Checking".').form == "answer_after"
    assert read_instruction("Think about it.") is None


GOOD = """\
---
name: wifi-by-hand
description: Turn Wi-Fi on or off.
apps: [Settings]
phrasings:
  - Turn Wi-Fi {state}
  - Switch {state} Wi-Fi
params:
  state: {description: on or off, example: "off"}
---
1. Open the Settings app.
2. Tap "Network & internet". (screen: Settings)
3. Tap "Wi-Fi".
4. Tap the switch next to "Use Wi-Fi" if it is not {state}. (screen: Wi-Fi)
5. Finish.
"""


def wifi_screen(local, *, wifi: bool = True):
    """The phone reset, Wi-Fi on or off, and the Wi-Fi screen opened through the device."""
    local.phone.reset()
    local.phone.app("settings").state.wifi = wifi
    local.device.act(OpenApp(app="Settings"))
    for label in ("Network & internet", "Wi-Fi"):
        screen = Screen.from_observation(local.device.observe())
        local.device.act(Tap(target=find(screen, label, want="tap")[0].index))
    return local.device.observe()


def test_the_checker_follows_steps_and_says_which_step_it_cannot(local):
    local.phone.reset()
    follower = SopFollower(parse_sop(GOOD), "Switch off Wi-Fi")
    assert follower.params == {"state": "off"}
    assert follower.next_action(local.device.observe()) == OpenApp(app="Settings")
    local.device.act(OpenApp(app="Settings"))
    obs = local.device.observe()
    assert follower.next_action(obs) == Tap(target=find(Screen.from_observation(obs), "Network & internet")[0].index)
    ponder = SopFollower(parse_sop(GOOD.replace('3. Tap "Wi-Fi".', "3. Ponder.")), "Switch off Wi-Fi")
    ponder.pos = 2
    with pytest.raises(SopError, match="step 3 .*fit no form"):
        ponder.next_action(obs)
    vague = SopFollower(parse_sop(GOOD), "do it")
    vague.pos = 3
    with pytest.raises(SopError, match=r"does not say what \{state\} is"):
        vague.next_action(wifi_screen(local))


def test_every_bundled_sop_the_checker_reads_is_followed_to_its_tasks_checks(local):
    """Each suite template's bundled SOP (sop/eval_map.yaml), on two instances: where the checker reads every
    step (by its forms, or loosely) and the goal gives every parameter, following the procedure to the letter
    must pass the task's checks. This caught bank-transfer typing the amount before choosing the account (the
    keyboard then hid "From"), a quoted message losing its "!" (``"Happy birthday!"``), ``Open the app
    "Notes"`` read as an app called "the", and ``Swipe down from the status bar`` swiping mid-screen."""
    from edgepilot.bench.sop import load_eval_map
    from edgepilot.sop.follow import read_alternatives, read_loosely

    library = load_library()
    mapping, _ = load_eval_map()
    readable = {template: name for template, name in mapping.items()
                if name is not None and all(read_alternatives(s.text) or read_loosely(s.text)
                                            for s in library.get(name).steps)}
    failed, followed = [], set()
    for template, name in sorted(readable.items()):
        sop = library.get(name)
        for seed in (500, 501):
            goal = load_templates()[template].instance(seed).goal
            if set(sop.params) - set(SopFollower(sop, goal, library=library.sops).params):
                continue  # a value the goal does not give (``the most recent message``): the checker cannot know it
            result = follow(local, sop, template, seed)
            followed.add(template)
            if not result.success:
                failed.append(f"{template}#{seed} with {name}: {result.reason}")
    assert not failed, "\n".join(failed)
    assert len(followed) >= 20 and {"bank_transfer", "messages_send_new", "system_open_app",
                                     "system_clear_notifications", "settings_wifi_toggle"} <= followed


@pytest.mark.parametrize("step", [
    'Tap the switch next to "Use Wi-Fi" if it is not {state}.',
    'Tap the "Use Wi-Fi" switch if it is not already {state}.',  # the bundled SOPs' words
    'If "Use Wi-Fi" is on, tap it to turn Wi-Fi off.',
])
def test_a_switch_already_in_the_wanted_state_is_left_alone(local, step):
    sop = parse_sop(GOOD.replace('Tap the switch next to "Use Wi-Fi" if it is not {state}.', step))
    follower = SopFollower(sop, "Turn Wi-Fi off")
    follower.pos = 3
    assert follower.next_action(wifi_screen(local, wifi=False)) == Finish(status="success")
    assert follower.done == [4, 5]
    follower = SopFollower(sop, "Turn Wi-Fi off")
    follower.pos = 3
    obs = wifi_screen(local, wifi=True)
    action = follower.next_action(obs)
    assert isinstance(action, Tap) and obs.elements[action.target].resource_id.endswith("wifi_switch")


def test_the_checker_takes_a_steps_second_way_only_when_the_first_is_not_in_sight(local):
    local.phone.reset()
    local.device.act(OpenApp(app="Settings"))
    screen = Screen.from_observation(local.device.observe())
    local.device.act(Tap(target=find(screen, "Network & internet", want="tap")[0].index))
    obs = local.device.observe()
    screen = Screen.from_observation(obs)
    wifi, airplane = (find(screen, label, want="tap")[0].index for label in ("Wi-Fi", "Airplane mode"))
    for step, target in (('3. Tap "Nowhere to be seen", or tap "Wi-Fi".', wifi),
                         ('3. Tap "Airplane mode", or tap "Wi-Fi".', airplane)):
        follower = SopFollower(parse_sop(GOOD.replace('3. Tap "Wi-Fi".', step)), "Turn Wi-Fi off")
        follower.pos = 2
        assert follower.next_action(obs) == Tap(target=target)


def test_the_checker_scrolls_to_a_target_and_gives_up_after_both_ways(local):
    s = parse_sop(GOOD.replace('3. Tap "Wi-Fi".', '3. Tap "Nowhere to be seen".'))
    follower = SopFollower(s, "Turn Wi-Fi off", max_scrolls=2)
    follower.pos = 2
    local.phone.reset()
    local.device.act(OpenApp(app="Settings"))
    obs = local.device.observe()
    directions = []
    with pytest.raises(SopError, match="even after scrolling both ways"):
        for _ in range(6):
            action = follower.next_action(obs)
            assert isinstance(action, Swipe)
            directions.append(action.direction)
    assert directions == ["up", "down"]  # the screen did not move: it turned back at once, then gave up


# ---------------------------------------------------------------- the whole path


def test_a_recorded_demonstration_learns_an_sop_that_completes_a_held_out_variant(tmp_path):
    """The issue's "done when": a person's demonstration on the virtual phone (through its adb endpoint),
    an SOP drafted from it that passes lint, and that SOP, followed without the oracle or a model, doing
    another instance of the task with other values and another phrasing."""
    shown, variant = SEND.instance(0), SEND.instance(6)
    assert shown.params["name"] != variant.params["name"] and shown.params["body"] != variant.params["body"]
    assert variant.goal.startswith("Text ") and not shown.goal.startswith("Text ")
    script = DEMO_SCRIPT.format(name=shown.params["name"], body=shown.params["body"])
    recorded = CliRunner().invoke(record, ["--task", shown.id, "--device", "virtual", "--out", str(tmp_path)],
                                  input=script)
    assert recorded.exit_code == 0, recorded.output
    assert "adb on 127.0.0.1:" in recorded.output and "checks passed" in recorded.output
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    trajectory = read_trajectory(folder)
    assert trajectory.meta.agent == "human" and trajectory.meta.goal == shown.goal
    assert trajectory.result.success is True

    out = tmp_path / "learned.md"
    learned = CliRunner().invoke(sop, ["learn", str(folder), "--out", str(out), "--name", "text-someone"])
    assert learned.exit_code == 0, learned.output
    assert CliRunner().invoke(sop, ["lint", str(out)]).exit_code == 0
    s = load_sop(out)
    assert set(s.params) == {"recipient", "text_message"}
    assert [step.kind for step in s.sensitive_steps] == ["send_message"]

    with open_device("virtual") as opened:  # the held-out variant, over adb again
        result = run_episode(opened.device, opened.phone, variant, follower_factory(s, load_library().sops))
    assert result.agent == "sop-follower"
    assert result.success, (result.reason, result.failed_checks)
    typed = [step.action for step in result.steps if isinstance(step.action, Type)]
    assert [t.text for t in typed] == [variant.params["name"], variant.params["body"]]


def test_sop_check_runs_a_learned_sop_from_the_command_line(local, tmp_path):
    learned = learn_sop([oracle_demo(local, "clock_add_alarm", 0, tmp_path)])
    path = learned.write(tmp_path)
    instance = load_templates()["clock_add_alarm"].instance(3)
    result = CliRunner().invoke(sop, ["check", str(path), instance.goal, "--setup", instance.id,
                                      "--device", "virtual-local"])
    assert result.exit_code == 0, result.output
    assert "{time}=" in result.output and "checks passed" in result.output and "loosely" not in result.output
    bundled = CliRunner().invoke(sop, ["check", "clock-add-alarm", instance.goal, "--setup", instance.id,
                                       "--device", "virtual-local"])  # plain words: said, and still checked
    assert bundled.exit_code == 0, bundled.output
    assert "read loosely (their words fit no form): steps 2, 3" in bundled.output
    bad = CliRunner().invoke(sop, ["check", str(path), "Wake me up", "--device", "virtual-local"])
    assert bad.exit_code == 1 and "does not say what {time} is" in bad.output
    refused = CliRunner().invoke(sop, ["check", str(path), "Wake me up at 07:00", "--device", "emulator-5554"])
    assert refused.exit_code != 0


def test_learn_eval_reports_the_success_rate_on_held_out_variants():
    report = learn_eval(templates=("contacts_call", "settings_screen_timeout"), demos=1, variants=2,
                        device="virtual-local")
    assert report["learned"] == 2 and report["variants"] == 4
    assert report["success_rate"] == 1.0, report["rows"]
    assert all(v["held_out"] for row in report["rows"] for v in row["variants"])
