"""Values a procedure reads in one app and uses in another (sop/carry.py): the step forms, the value taken off a
real screen of the virtual phone (over adb), the later steps rewritten, and the agent keeping the value without a
model call where the screen shows one of its kind, with a grammar of the screen's values where it shows several.

The scripted backend is right here: these tests are about the bookkeeping. That the default model completes
two-app tasks is measured by `edgepilot bench` (README) and by tests/test_agent_model.py."""

import json

import pytest
from scripted import ScriptedBackend

from edgepilot.actions import OpenApp, Tap
from edgepilot.agent.agents import RoleAgent
from edgepilot.perception.types import Bounds, Observation, UINode
from edgepilot.sim.tasks.model import apply_setup
from edgepilot.sim.tasks.suite import load_templates
from edgepilot.sop import load_library
from edgepilot.sop.carry import keeps, kept_choices, uses, wanted_shapes, with_kept
from edgepilot.sop.follow import step_subgoals
from edgepilot.sop.progress import SopProgress
from edgepilot.sop.retrieve import Match


def _plan(subgoal: str) -> str:
    return json.dumps({"progress": "working", "subgoal": subgoal, "memory": ""})


@pytest.mark.parametrize(("step", "shapes"), [
    ('Read the balance shown under "Checking" and remember it.', ("amount",)),
    ("Read the code in the newest message (the last one) and remember it.", ("digits",)),
    ('Read the number above "Mobile" and remember it.', ("phone", "digits", "amount")),
    ('Read the time (HH:MM) in the "Note" field and remember it.', ("time",)),
    ('Read the text in the "Note" field and remember it.', ()),
    ('Read the line "Monday: ..." under "Opening hours" and remember it (scroll if needed).', ()),
])
def test_a_reading_step_that_keeps_its_value_and_the_shapes_it_names(step, shapes):
    assert keeps(step) and wanted_shapes(step) == shapes


@pytest.mark.parametrize("step", ['Read the value under "Android version".', "Finish and answer with the code only.",
                                  'Tap "Ann" and remember to be quick.'])
def test_other_steps_keep_nothing(step):
    assert not keeps(step)


@pytest.mark.parametrize(("step", "rewritten"), [
    ('Type the code you remembered in the "Note" field.', 'Type "482913" in the "Note" field.'),
    ('Type the balance you remembered, as shown (like $1,234.56), in the "Note" field.',
     'Type "482913" in the "Note" field.'),
    ('Type "Ann Lee: " followed by the number you remembered in the "Text message" field.',
     'Type "Ann Lee: 482913" in the "Text message" field.'),
    ("Type the time you remembered in the time field (24-hour HH:MM).",
     'Type "482913" in the time field (24-hour HH:MM).'),
])
def test_a_step_that_uses_the_value_says_it_quoted_and_grounds_like_any_typing_step(step, rewritten):
    assert uses(step)
    assert with_kept(step, "482913") == rewritten
    assert step_subgoals(rewritten)[0].startswith('type "')


def test_every_bundled_procedure_keeps_a_value_before_it_uses_one():
    for sop in load_library():
        kept = False
        for step in sop.steps:
            assert not uses(step.text) or kept, f"{sop.name} step {step.number} uses a value no step kept"
            kept = kept or keeps(step.text)


def _progress(name: str, **params: str) -> SopProgress:
    sop = load_library().get(name)
    return SopProgress.start(Match(sop, 1.0, params))


def test_keeping_rewrites_the_later_steps_and_the_read_screen_does_not_take_the_run_back():
    progress = _progress("notes-time-to-alarm", title="Flight").advance(3)
    kept = progress.keep(3, "07:45")
    assert kept.current == 4
    assert kept.steps[5].text == 'Type "07:45" in the time field (24-hour HH:MM).'
    assert kept.steps[2].text == progress.steps[2].text  # the reading step itself stays as written
    assert "07:45" in kept.render()
    assert progress.locate("Edit note") == 3 and kept.locate("Edit note") is None  # still on the note's screen


def _obs(*nodes: dict) -> Observation:
    return Observation(screen_width=1080, screen_height=2400,
                       nodes=tuple(UINode(bounds=Bounds(left=0, top=i * 100, right=1080, bottom=i * 100 + 90), **n)
                                   for i, n in enumerate(nodes)))


def test_a_value_read_in_a_field_is_the_fields_text_or_the_value_of_the_named_shape_in_it():
    obs = _obs(dict(text="Edit note", resource_id="x:id/toolbar_title"),
               dict(text="Flight", class_name="android.widget.EditText", hint="Title"),
               dict(text="Flight tomorrow. Alarm at 07:45", class_name="android.widget.EditText",
                    hint="Note"))
    every = ["Edit note", "Flight", "Flight tomorrow. Alarm at 07:45", "07:45"]
    assert kept_choices(obs, 'Read the text in the "Note" field and remember it.', every) == [
        "Flight tomorrow. Alarm at 07:45"]  # all of it: no value inside
    assert kept_choices(obs, 'Read the time (HH:MM) in the "Note" field and remember it.', every) == ["07:45"]
    code = "Read the code in the newest message (the last one) and remember it."
    assert kept_choices(obs, code, ["PostHub", "Your code is 305112", "305112", "09:41"]) == ["305112"]
    assert kept_choices(obs, code, ["PostHub", "hello"]) == []  # no code on this screen: nothing to keep here
    number = "Read the number the display shows and remember it."
    assert kept_choices(obs, number, ["galculator", "216"]) == ["216"]  # a plain number where no phone number shows
    assert kept_choices(obs, 'Read the number above "Mobile" and remember it.', ["555-0102", "2"]) == ["555-0102"]


def _on_note(served, instance: str):
    phone, _, device = served
    template, _, seed = instance.partition("#")
    task = load_templates()[template].instance(int(seed))
    apply_setup(phone, task)
    device.act(OpenApp(app="Notes"))
    title = task.params["title"] if "title" in task.params else task.params["note"]["title"]
    obs = device.observe()
    device.act(Tap(target=next(i for i, n in enumerate(obs.elements) if n.text.startswith(title))))
    return task, device


def test_the_agent_keeps_the_one_value_of_its_kind_without_asking_the_model_and_goes_on(served):
    task, device = _on_note(served, "note_time_to_alarm#0")
    backend = ScriptedBackend(planner=[_plan("next step")])  # the decider has no answers: a call would fail
    agent = RoleAgent(task.goal, backend, sop=Match(load_library().get("notes-time-to-alarm"), 1.0,
                                                    {"title": task.params["title"]}))
    agent.sop = agent.sop.advance(3)
    agent.history.append('tap "Flight" -> worked')
    decision = agent.decide(device.observe())
    assert decision.action == OpenApp(app="Clock") and [c.role for c in decision.calls] == ["planner"]
    assert agent.sop.current == 4 and agent.sop.steps[5].text.startswith(f'Type "{task.params["time"]}"')
    assert any(task.params["time"] in m for m in agent.memory)
    assert "kept" in decision.without["procedure"]


def test_where_the_screen_shows_several_values_the_decider_picks_one_of_them(served):
    phone, _, device = served
    task = load_templates()["messages_code_to_note"].instance(0)
    apply_setup(phone, task)
    sender, code = task.params["src"]["sender"], task.params["code"]
    with phone.lock:  # an older code from the same sender, above the newest one
        phone.app("messages").setup_incoming_message(contact=sender, text="Your old code 111222 has expired.")
        phone.app("messages").setup_incoming_message(contact=sender, text=task.params["src"]["text"])
        phone.changed()
    device.act(OpenApp(app="Messages"))
    obs = device.observe()
    device.act(Tap(target=next(i for i, n in enumerate(obs.elements) if n.text.startswith(sender))))
    answer = json.dumps({"type": "finish", "status": "success", "answer": code})
    backend = ScriptedBackend(planner=[_plan("next step")], decider=[answer])
    params = {"sender": sender, "title": task.params["title"]}
    agent = RoleAgent(task.goal, backend, sop=Match(load_library().get("messages-code-to-note"), 1.0, params))
    agent.sop = agent.sop.advance(3)
    agent.history.append("tap -> worked")
    decision = agent.decide(device.observe())
    grammar = next(s for role, s in backend.schemas if role == "decider")
    assert grammar["anyOf"] == [{"$ref": "#/$defs/Finish"}]
    assert {code, "111222"} <= set(grammar["$defs"]["Finish"]["properties"]["answer"]["enum"])
    assert decision.action == OpenApp(app="Notes")
    assert agent.sop.steps[6].text == f'Type "{code}" in the "Note" field.'


def test_on_the_screen_another_step_expects_nothing_is_kept(served):
    """The planner pointed at the reading step while the run is still on the list: the value is not read there."""
    phone, _, device = served
    task = load_templates()["note_time_to_alarm"].instance(0)
    apply_setup(phone, task)
    device.act(OpenApp(app="Notes"))  # the list, titled "Notes": step 2's screen, not the note's
    backend = ScriptedBackend(planner=[_plan("step 3")], decider=['{"type": "key", "key": "back"}'])
    agent = RoleAgent(task.goal, backend, sop=Match(load_library().get("notes-time-to-alarm"), 1.0,
                                                    {"title": task.params["title"]}))
    agent.sop = agent.sop.advance(3)
    obs = device.observe()
    assert any(task.params["time"] in n.text for n in obs.elements)  # the list's row shows the note's first line
    assert agent._keep(obs, {}, 3, []) is None and agent.sop.current == 3 and not agent.memory
    agent.history.append("tap -> worked")
    agent.decide(obs)  # the screen's title takes the procedure back to step 2: nothing kept either
    assert agent.sop.current == 2 and not agent.memory
    assert all(task.params["time"] not in step.text for step in agent.sop.steps)
