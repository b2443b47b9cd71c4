"""A model call only where one is needed (``RoleAgent(calls="needed")``, the default): which roles a step skips,
why the trajectory says it did, and that the policy gate still sees every action.

The backend here is scripted: these tests are about the loop's bookkeeping, not about whether the model is good.
"""

from __future__ import annotations

import json

import pytest
from scripted import ScriptedBackend

from edgepilot.actions import Key, OpenApp, Tap, Type
from edgepilot.agent.agents import RoleAgent
from edgepilot.agent.loop import run_agent
from edgepilot.agent.roles import decider_schema_for, ground_open, ground_subgoal, pinned_action
from edgepilot.agent.trajectory import TrajectoryWriter, read_trajectory
from edgepilot.policy.gate import GateDecision
from edgepilot.sop import load_library, retrieve
from edgepilot.sop.follow import switch_step

FINISH = '{"type": "finish", "status": "success"}'
WORKED = '{"outcome": "worked", "note": "ok"}'


def _airplane(goal: str = "turn on airplane mode"):
    match = retrieve(goal, load_library())
    assert match is not None and match.sop.name == "settings-airplane-mode"
    return match


def _row(obs, label: str) -> int:
    return next(i for i, n in enumerate(obs.elements) if n.text.startswith(label) and n.clickable)


def _roles(backend: ScriptedBackend) -> list[str]:
    return [role for role, _ in backend.prompts]


def test_pinned_action_is_the_one_action_a_grounded_grammar_leaves(bank_login):
    device, obs, login, pin = bank_login
    schema = decider_schema_for(obs)
    assert pinned_action(schema) is None  # the whole action set: a choice
    assert pinned_action(ground_subgoal(schema, 'tap "Log in"', obs)) == Tap(target=login)
    assert pinned_action(ground_subgoal(schema, 'type "8538" into PIN', obs), obs) == Type(text="8538", target=pin)
    assert pinned_action(ground_subgoal(schema, "press back", obs)) == Key(key="back")
    assert pinned_action(ground_open(schema, "open Settings")) == OpenApp(app="Settings")
    assert ground_open(schema, "open {app}") is None  # a placeholder is not an app
    two = ground_subgoal(schema, 'tap "Log in"', obs)
    two["$defs"]["Tap"]["properties"]["target"] = {"enum": [login, pin]}
    assert pinned_action(two) is None  # two elements carry the label: the decider picks
    device.act(Type(text="12", target=pin))
    filled = device.observe()
    assert pinned_action(ground_subgoal(decider_schema_for(filled), 'type "8538" into PIN', filled), filled) is None


def test_switch_step_reads_the_switch_itself(served):
    phone, _, device = served
    device.act(OpenApp(app="Settings"))
    device.act(Tap(target=_row(device.observe(), "Network & internet")))
    device.act(Tap(target=_row(device.observe(), "Airplane mode")))
    obs = device.observe()
    toggle = obs.find(checkable=True)[0]
    assert switch_step('Tap the "Use airplane mode" switch if it is not already on.', obs) == Tap(target=toggle)
    assert switch_step('Tap the "Use airplane mode" switch if it is not already off.', obs) == "skip"
    assert switch_step('Tap "Use airplane mode".', obs) is None  # another form: not this helper's
    assert switch_step('Tap the "Bluetooth" switch if it is not already on.', obs) is None  # not in sight


def test_a_procedure_on_track_asks_no_planner_and_records_why(served, tmp_path):
    phone, _, device = served
    device.act(Key(key="home"))
    backend = ScriptedBackend(decider=[FINISH], reflector=['{"outcome": "wrong_screen", "note": "must not be asked"}'])
    agent = RoleAgent("turn on airplane mode", backend, sop=_airplane())
    writer = TrajectoryWriter(tmp_path / "run", {"goal": agent.goal})
    seen = []
    result = run_agent(device, agent, agent.goal, max_steps=10, writer=writer,
                       gate=lambda action, obs: seen.append(action) or GateDecision(True, "ok"))
    assert result.status == "finished", result.reason
    assert phone.snapshot()["settings"]["airplane_mode"] is True
    assert _roles(backend) == ["decider"]  # only the finish, which reads the screen, asked the model
    steps = read_trajectory(tmp_path / "run").steps
    assert len(steps) == len(seen) == 5  # the gate saw every action, the model-free ones too
    assert steps[0].without["decider"] and "planner" not in steps[0].without  # no planner at the start either way
    for step in steps[1:4]:
        assert step.without["planner"].startswith("the last action did its step")
        assert "decider" in step.without and step.calls == []
    assert "switch" in steps[3].without["decider"]
    for step in steps[:4]:  # each result was decided from the screens, the reflector never asked
        assert step.outcome.by == "screen" and step.without["reflector"] == step.outcome.note
    assert [s.plan["sop"]["step"] for s in steps] == [1, 2, 3, 4, 5]


def test_with_every_call_each_role_is_asked_as_before(served):
    phone, _, device = served
    device.act(Key(key="home"))
    settings = device.observe().find(text="Settings")[0]
    backend = ScriptedBackend(planner=[json.dumps({"progress": "", "subgoal": "next step", "memory": ""})],
                              decider=[json.dumps({"type": "tap", "target": settings}), FINISH], reflector=[WORKED])
    agent = RoleAgent("turn on airplane mode", backend, sop=_airplane(), calls="every")
    run_agent(device, agent, agent.goal, max_steps=2)
    assert _roles(backend) == ["decider", "reflector", "planner", "decider"]
    with pytest.raises(ValueError, match="calls"):
        RoleAgent("x", backend, calls="sometimes")


def test_a_refusal_or_a_doubt_brings_the_planner_back(served):
    phone, _, device = served
    device.act(Key(key="home"))
    plan = json.dumps({"progress": "", "subgoal": "next step", "memory": ""})
    backend = ScriptedBackend(planner=[plan], decider=[FINISH], reflector=[WORKED])
    agent = RoleAgent("turn on airplane mode", backend, sop=_airplane())
    refused = []

    def gate(action, obs):
        if not refused:  # the first action (opening Settings) is refused once
            refused.append(action)
            return GateDecision(False, "not now", verdict="block")
        return GateDecision(True, "ok")

    result = run_agent(device, agent, agent.goal, max_steps=8, gate=gate)
    assert refused == [OpenApp(app="Settings")]
    assert _roles(backend)[0] == "planner"  # after the refusal the planner weighs what to do
    assert result.status == "finished", result.reason


def test_a_screen_that_does_not_show_the_next_step_asks_the_reflector(served):
    phone, _, device = served
    device.act(Key(key="home"))
    backend = ScriptedBackend(decider=[FINISH], reflector=['{"outcome": "wrong_screen", "note": "not settings"}'])
    agent = RoleAgent("turn on airplane mode", backend, sop=_airplane())
    agent.sop = agent.sop.advance(2)  # step 2 (Tap "Network & internet") on the home screen: nothing to pin
    obs = device.observe()
    decision = agent.decide(obs)
    assert "decider" not in decision.without  # the label is not here: a choice, the model decides
    wrong = Tap(target=_row(obs, "Clock"))
    result = device.act(wrong)
    verdict = agent.reflect(obs, wrong, result, device.observe())
    assert verdict.by == "model" and verdict.kind == "wrong_screen"
    assert agent.on_track() is None  # off the procedure: the planner is asked next


def test_the_student_is_taught_every_role(phone):
    """Distillation's teacher plays every role, whatever the runtime skips: the student learns them all."""
    from edgepilot.distill.teacher import OracleTeacher
    from edgepilot.sim.tasks.suite import instances

    instance = instances("train", 1)[0]
    assert OracleTeacher().agent(instance, phone).calls == "every"
    assert RoleAgent("x", ScriptedBackend()).calls == "needed"  # the runtime's default


def test_typed_text_in_its_field_settles_the_step_without_the_reflector(served):
    phone, _, device = served
    device.act(OpenApp(app="Notes"))
    obs = device.observe()
    new = next((i for i, n in enumerate(obs.elements) if n.clickable and "new" in (n.text + n.content_desc).lower()),
               None)
    assert new is not None, obs.to_text()
    device.act(Tap(target=new))
    before = device.observe()
    field = next(i for i, n in enumerate(before.elements) if n.editable)
    agent = RoleAgent("write a note", ScriptedBackend(reflector=['{"outcome": "wrong_screen", "note": "asked"}']))
    typed = Type(text="Groceries", target=field)
    verdict = agent.reflect(before, typed, device.act(typed), device.observe())
    assert (verdict.kind, verdict.by, verdict.note) == ("worked", "screen", "the field shows the typed text")
    assert agent.history[-1].endswith("-> worked")  # the screens' reason stays out of what the model reads
    every = RoleAgent("write a note", ScriptedBackend(reflector=['{"outcome": "wrong_screen", "note": "asked"}']),
                      calls="every")
    again = Type(text=" list", target=field)
    assert every.reflect(before, again, device.act(again), device.observe()).by == "model"
    # typed after the field's old text ("Groceries list list"): the typed words are there, but so is more; a doubt
    more = Type(text=" list", target=field)
    shown = device.act(more)
    after = device.observe()
    assert any(" list" in n.text and n.text.strip() != "list" for n in after.elements if n.editable)
    assert agent.reflect(before, more, shown, after).by == "model"


def test_bench_calls_is_for_the_model_agent():
    from edgepilot.bench.registry import BenchOptions, select
    from edgepilot.errors import ConfigError

    options = BenchOptions(agents=("oracle",), calls="every")
    with pytest.raises(ConfigError, match="--calls"):
        select("tasks", options).prepare(options)
    assert select("tasks", BenchOptions(agents=("model",))).prepare(BenchOptions(agents=("model",))).calls == "needed"


def test_a_finish_along_a_memory_route_does_not_claim_a_check(served):
    """A route from the app memory has no procedure's checks: its finish is not a verified success."""
    from edgepilot.agent.session import memory_route
    from edgepilot.memory.store import shipped

    phone, _, device = served
    device.act(Key(key="home"))
    match = memory_route("turn on airplane mode", None, shipped("android"))[0]
    assert match is not None and match.sop.name == "memory-settings"
    agent = RoleAgent("turn on airplane mode", ScriptedBackend(decider=[FINISH], reflector=[WORKED]), sop=match)
    result = run_agent(device, agent, agent.goal, max_steps=12)
    assert result.status == "unverified" and "nothing checked the result" in result.reason, result.reason
