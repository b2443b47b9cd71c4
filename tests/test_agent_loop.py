"""The agent loop, its roles and its trajectory, driven by a scripted model on the real virtual phone over adb.

A scripted backend is right here: these tests are about the loop (order of
roles, stuck detection, the policy gate, what is written when), not about
whether a model is any good. tests/test_agent_model.py runs the real model.
"""

import json

import pytest
from scripted import ScriptedBackend

from edgepilot.actions import OpenApp, Swipe, Tap
from edgepilot.agent.agents import ReactAgent, RoleAgent
from edgepilot.agent.loop import run_agent
from edgepilot.agent.roles import PLANNER, REFLECTOR, parse_react, render
from edgepilot.agent.trajectory import TrajectoryWriter, read_trajectory
from edgepilot.errors import ConfigError
from edgepilot.models.base import Completion
from edgepilot.perception.signature import screen_key
from edgepilot.policy.gate import GateDecision


def _plan(subgoal: str, memory: str = "") -> str:
    return json.dumps({"progress": "working", "subgoal": subgoal, "memory": memory})


def _writer(tmp_path, goal="turn on airplane mode"):
    return TrajectoryWriter(tmp_path / "run", {"goal": goal, "agent": "model", "screen": [1080, 2400]})


def _airplane_backend(device) -> ScriptedBackend:
    """A scripted model that turns airplane mode on from the home screen in four steps."""
    settings = device.observe().find(text="Settings")[0]
    backend = ScriptedBackend(
        planner=[_plan("open Network & internet"), _plan("open Airplane mode"), _plan("switch it on"), _plan("done"),
                 _plan("done")],
        decider=[json.dumps({"type": "tap", "target": settings}), '{"type": "tap", "target": 3}',
                 "AIRPLANE", "TOGGLE", '{"type": "finish", "status": "success"}'],
        reflector=['{"outcome": "worked", "note": "ok"}'],
    )
    # the decider's answers for the airplane page depend on the indices there: fill them in as we go
    original = backend.complete

    def complete(messages, **kw):
        out = original(messages, **kw)
        if out.text in ("AIRPLANE", "TOGGLE"):
            obs = device.observe()
            if out.text == "AIRPLANE":
                index = next(i for i, n in enumerate(obs.elements) if n.text.startswith("Airplane mode"))
            else:
                index = obs.find(checkable=True)[0]
            out = out.model_copy(update={"text": json.dumps({"type": "tap", "target": index})})
        return out

    backend.complete = complete
    return backend


def test_roles_run_in_order_and_the_task_gets_done(served, tmp_path):
    phone, _, device = served
    settings = device.observe().find(text="Settings")[0]
    backend = _airplane_backend(device)
    agent = RoleAgent("turn on airplane mode", backend)
    result = run_agent(device, agent, agent.goal, max_steps=10, writer=_writer(tmp_path))
    # done, but with no procedure nothing checked it: a model's word alone is not a verified success (exit 7)
    assert result.status == "unverified" and "no procedure fits the goal" in result.reason, result.reason
    assert phone.snapshot()["settings"]["airplane_mode"] is True

    roles = [r for r, _ in backend.prompts]
    assert roles[:2] == ["decider", "reflector"]  # no planner before the first action
    assert roles[2:5] == ["planner", "decider", "reflector"]
    # every role starts with the same system prompt and the same task + screen: the cached prefix
    decider_msgs, reflector_msgs = backend.prompts[0][1], backend.prompts[1][1]
    assert reflector_msgs[: len(decider_msgs)] == decider_msgs
    assert [m.role for m in reflector_msgs] == ["system", "user", "assistant", "user"]
    planner_msgs = backend.prompts[2][1]
    assert planner_msgs[0] == decider_msgs[0]
    assert planner_msgs[1].content.startswith("Task: turn on airplane mode\n\nScreen:\nApp: com.android.settings")

    traj = read_trajectory(tmp_path / "run")
    assert traj.result.status == "unverified" and not traj.warnings
    assert len(traj.steps) == len(result.steps) == 5
    first = traj.steps[0]
    assert first.action == {"type": "tap", "target": settings}
    assert first.target_bounds and first.outcome.by == "model"
    assert [c.role for c in first.calls] == ["decider", "reflector"]
    assert first.calls[0].messages[0]["role"] == "system"
    assert (tmp_path / "run" / first.screenshot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert traj.steps[-1].outcome.kind == "finished"
    assert set(first.ms) >= {"perceive", "decider", "reflector", "act", "total"}


def test_steps_are_on_disk_before_the_run_ends(served, tmp_path):
    _, _, device = served
    seen = []

    def check(step):
        lines = (tmp_path / "run" / "steps.jsonl").read_text().splitlines()
        seen.append(len(lines))

    backend = ScriptedBackend(decider=['{"type": "swipe", "direction": "up"}'])
    run_agent(device, RoleAgent("scroll", backend), "scroll", max_steps=3, writer=_writer(tmp_path),
              on_step=check)
    assert seen == [1, 2, 3]


def test_the_same_failing_action_three_times_replans_then_stops(served):
    _, _, device = served
    status_bar = device.observe().find(content_desc="Status bar")[0]  # tapping it changes nothing
    backend = ScriptedBackend(decider=[json.dumps({"type": "tap", "target": status_bar})])
    agent = RoleAgent("do something", backend)
    result = run_agent(device, agent, agent.goal, max_steps=20)
    assert result.status == "stuck" and len(result.steps) == 6
    assert "on the same screen 3 times, again after a re-plan" in result.reason
    assert all(s.outcome.kind == "no_change" and s.outcome.by == "check" for s in result.steps)
    assert "reflector" not in [r for r, _ in backend.prompts]  # unchanged screen: no model call
    warned = [m for r, m in backend.prompts if r == "planner" and "Warning:" in m[-1].content]
    assert warned, "the re-plan must tell the planner what failed"


def test_going_back_and_forth_is_a_loop_and_the_looping_tap_is_banned_there(served):
    _, _, device = served
    home = device.observe()
    settings = home.find(text="Settings")[0]
    backend = ScriptedBackend(decider=[json.dumps({"type": "tap", "target": settings}),
                                       '{"type": "key", "key": "back"}'])
    # alternate: tap Settings on the home screen, back from Settings, ...
    answers = iter([json.dumps({"type": "tap", "target": settings}), '{"type": "key", "key": "back"}'] * 10)
    backend.answers["decider"] = [a for a in answers]
    agent = RoleAgent("open the clock", backend)
    result = run_agent(device, agent, agent.goal, max_steps=30)
    assert result.status == "stuck" and len(result.steps) == 10, [s.summary() for s in result.steps]
    assert agent.banned == {screen_key(home): {settings}}
    decider_schemas = [m for r, m in backend.prompts if r == "decider"]
    assert len(decider_schemas) == 10


def test_the_decider_grammar_only_offers_what_the_screen_allows(served):
    from edgepilot.agent.roles import DECIDER, decider_schema_for

    phone, _, device = served
    home = device.observe()
    schema = decider_schema_for(home)
    tappable = schema["$defs"]["Tap"]["properties"]["target"]["enum"]
    assert tappable == [i for i, n in enumerate(home.elements) if n.clickable or n.checkable or n.editable]
    assert "Point" not in schema["$defs"] and "target" not in schema["$defs"]["Type"]["properties"]
    assert 3 not in decider_schema_for(home, banned=[3])["$defs"]["Tap"]["properties"]["target"]["enum"]
    phone.start_app("com.google.android.apps.messaging")
    phone.changed()
    messages = device.observe()
    swipe = decider_schema_for(messages)["$defs"]["Swipe"]["properties"]["target"]["enum"]
    assert swipe == [i for i, n in enumerate(messages.elements) if n.scrollable] and swipe
    assert DECIDER.schema["$defs"]["Tap"]["properties"]["target"].get("anyOf")  # the role's own stays whole


def test_the_gate_refuses_before_acting_and_the_agent_is_told(served):
    phone, _, device = served
    settings = device.observe().find(text="Settings")[0]
    backend = ScriptedBackend(decider=[json.dumps({"type": "tap", "target": settings}),
                                       '{"type": "finish", "status": "failure"}'])
    asked = []

    def gate(action, obs):
        asked.append(action)
        if isinstance(action, Tap):
            return GateDecision(False, "settings are off limits")
        return GateDecision(True)

    result = run_agent(device, RoleAgent("open settings", backend), "open settings", max_steps=5, gate=gate)
    assert phone.snapshot()["system"]["foreground"] == "com.android.launcher3"  # the tap never happened
    assert result.steps[0].outcome.kind == "refused" and result.steps[0].result is None
    assert result.status == "gave_up"
    assert "was refused: settings are off limits" in backend.prompts[-1][1][-1].content


def test_a_bad_index_is_a_failed_step_not_a_crash(served):
    _, _, device = served
    backend = ScriptedBackend(decider=['{"type": "tap", "target": 999}', '{"type": "finish", "status": "success"}'])
    result = run_agent(device, RoleAgent("x", backend), "x", max_steps=5)
    assert result.steps[0].outcome.kind == "failed" and "999" in result.steps[0].result.message
    assert result.status == "unverified"  # it ran on to its finish; no procedure checked it


def test_a_device_that_disconnects_ends_the_run_with_the_steps_kept(served, tmp_path):
    _, server, device = served
    backend = ScriptedBackend(decider=['{"type": "swipe", "direction": "up"}'])
    agent = RoleAgent("scroll", backend)

    def pull_the_cable(step):
        if step.index == 1:
            server.stop()

    result = run_agent(device, agent, "scroll", max_steps=10, writer=_writer(tmp_path), on_step=pull_the_cable)
    assert result.status == "error" and result.reason.startswith("device:")
    traj = read_trajectory(tmp_path / "run")
    assert len(traj.steps) == 2 and traj.result.status == "error"


def test_the_baseline_counts_nonsense_as_failed_steps(served):
    _, _, device = served
    backend = ScriptedBackend(react=["I think I should tap.", 'Thought: open it\nAction: {"type": "tap", "target": 2',
                                     'Thought: done\nAction: {"type": "finish", "status": "success"} trailing'])
    result = run_agent(device, ReactAgent("x", backend), "x", max_steps=5)
    assert [s.action is None for s in result.steps] == [True, True, False]
    assert result.steps[0].outcome.kind == "invalid" and "no 'Action:'" in result.steps[0].error
    assert result.status == "unverified" and result.steps[2].decision.thought == "done"
    assert all(not c.constrained for s in result.steps for c in s.calls)


def test_parse_react_takes_the_first_valid_action():
    thought, action = parse_react('Thought: tap it.\nAction: {"type": "key", "key": "back"}\n')
    assert thought == "tap it." and action.type == "key"
    thought, action = parse_react('Thought: a\nAction: [2]\nThought: b\nAction: {"type": "tap", "target": 2}\n'
                                  'Action: {"type": "key", "key": "home"}')
    assert thought == "b" and action.type == "tap"
    with pytest.raises(Exception, match=r"no JSON object after 'Action:': ' \[2\]"):
        parse_react("Action: [2]\nAction: [3]")
    with pytest.raises(Exception, match="not a valid action"):
        parse_react('Action: {"type": "jump"}')


def test_constrained_role_answers_cut_off_are_recorded_not_raised(served):
    _, _, device = served
    backend = ScriptedBackend(decider=['{"type": "tap", "tar'])  # what max_tokens does to a long answer
    result = run_agent(device, RoleAgent("x", backend), "x", max_steps=1)
    assert result.steps[0].action is None and "does not parse" in result.steps[0].error


def test_prompts_render_strictly(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="placeholders without values"):
        render("planner", progress="", memory="", history="")
    with pytest.raises(ConfigError, match="values without placeholders"):
        render("context", goal="g", screen="s", extra="x")
    (tmp_path / "context.txt").write_text("Goal: $goal $scren\n")
    monkeypatch.setenv("EDGEPILOT_PROMPTS", str(tmp_path))
    with pytest.raises(ConfigError, match="scren"):
        render("context", goal="g", screen="s")


def test_role_schemas_bound_every_string():
    for role in (PLANNER, REFLECTOR):
        for name, prop in role.schema["properties"].items():
            assert prop.get("maxLength") or prop.get("enum"), (role.name, name)
        assert role.schema["required"] == list(role.schema["properties"])


def test_max_tokens_cover_the_longest_answer_each_schema_allows():
    from edgepilot.agent.roles import DECIDER, max_answer_chars

    for role in (PLANNER, DECIDER, REFLECTOR):
        assert role.max_tokens >= max_answer_chars(role.schema), role.name  # one token per char, worst case
    assert 100 < max_answer_chars(DECIDER.schema) < 300


def test_role_answers_with_raw_newlines_in_strings_still_parse():
    from edgepilot.agent.roles import RoleCall

    record = RoleCall("planner", [])
    plan = PLANNER.parse('{"progress": "a", "subgoal": "b", "memory": "1.0}\n\nYou"}', record)
    assert plan is not None and plan.memory == "1.0}\n\nYou" and record.error is None
    assert PLANNER.parse('[1, 2]', record) is None and "JSON object" in record.error


def test_the_retrieved_sop_is_in_every_prompt_and_each_step_records_where_it_stood(served, tmp_path):
    from edgepilot.sop import load_library, retrieve

    phone, _, device = served
    match = retrieve("turn on airplane mode", load_library())
    assert match is not None and match.sop.name == "settings-airplane-mode"
    backend = _airplane_backend(device)
    agent = RoleAgent("turn on airplane mode", backend, sop=match)
    result = run_agent(device, agent, agent.goal, max_steps=10, writer=_writer(tmp_path))
    assert result.status == "finished", result.reason
    for _, messages in backend.prompts:
        assert "Procedure (follow it unless the screen disagrees):" in messages[1].content
    assert "<- now" in backend.prompts[0][1][1].content
    steps = [s.plan["sop"] for s in read_trajectory(tmp_path / "run").steps]
    assert {s["sop"] for s in steps} == {"settings-airplane-mode"}
    numbers = [s["step"] for s in steps if s["step"] is not None]
    assert numbers == sorted(numbers) and numbers[0] == 1 and numbers[-1] > 2  # it moved along the procedure


def test_the_procedure_jumps_by_the_screens_title_not_by_a_list_row_near_the_top(served):
    from edgepilot.actions import Key
    from edgepilot.sop import load_library, retrieve

    _, _, device = served
    agent = RoleAgent("turn on airplane mode", ScriptedBackend(),
                      sop=retrieve("turn on airplane mode", load_library()))
    device.act(Key(key="home"))
    device.act(OpenApp(app="Settings"))
    agent.sop = agent.sop.advance()  # 2. Tap "Network & internet". (screen: Settings)
    obs = device.observe()
    [row] = [i for i, n in enumerate(obs.elements) if n.text.startswith("Network & internet")]
    assert obs.elements[row].bounds.bottom < obs.screen_height * 0.2  # a row where a title could be
    agent._follow_sop(obs)
    assert agent.sop.current == 2  # the row names where a tap leads; the run is still on Settings
    device.act(Tap(target=row))
    agent._follow_sop(device.observe())
    assert agent.sop.current == 3  # 3. Tap "Airplane mode". (screen: Network & internet)


def test_a_back_press_is_not_a_step_read_and_the_procedure_goes_back_with_the_screen(served):
    """At ``3. Read the value under "Android version"`` (screen: About phone) a back press works but reads
    nothing: the step stays, and on the Settings screen the procedure is back on ``2. ... tap "About
    phone"`` (seen in an episode of the distilled model, which was told to finish there instead)."""
    from edgepilot.actions import Key
    from edgepilot.sop import load_library
    from edgepilot.sop.retrieve import Match

    _, _, device = served
    agent = RoleAgent("Show me the about phone information", ScriptedBackend(),
                      sop=Match(load_library().get("settings-about-phone"), 1.0, {}))
    device.act(Key(key="home"))
    device.act(OpenApp(app="Settings"))
    agent._follow_sop(device.observe())
    assert agent.sop.current == 2
    obs = device.observe()
    [row] = [i for i, n in enumerate(obs.elements) if n.clickable and n.text.startswith("About phone")]
    agent.reflect(obs, Tap(target=row), device.act(Tap(target=row)), device.observe())
    assert agent.sop.current == 3
    before = device.observe()
    verdict = agent.reflect(before, Key(key="back"), device.act(Key(key="back")), after := device.observe())
    assert verdict.kind in ("worked", "changed") and agent.sop.current == 3  # the back press read nothing
    agent._follow_sop(after)
    assert agent.sop.current == 2 and agent.sop.step.text == 'Scroll down and tap "About phone".'


def test_a_sensitive_sop_step_is_confirmed_even_where_the_policy_allows(served):
    from edgepilot.policy import DEFAULT_POLICY, PolicyGate, engine_for_task, load_policy
    from edgepilot.policy.confirm import ConfirmResult
    from edgepilot.sop import load_library, retrieve

    _, _, device = served
    agent = RoleAgent("Text Alice Morgan: \"see you at 6\"", ScriptedBackend(),
                      sop=retrieve("Text Alice Morgan: \"see you at 6\"", load_library()))
    sensitive = next(s.number for s in agent.sop.steps if s.sensitive)
    agent.sop = agent.sop.advance(sensitive)
    asked = []

    class Yes:
        def ask(self, request, timeout):
            asked.append(request)
            return ConfirmResult("yes")

    gate = PolicyGate(engine_for_task(agent.goal, load_policy(DEFAULT_POLICY)), task=agent.goal, confirmer=Yes(),
                      sensitive_step=agent.sop_sensitive)
    device.act(OpenApp(app="Messages"))
    obs = device.observe()
    in_app = next(i for i, e in enumerate(obs.elements) if e.package == obs.package and e.clickable)
    decision = gate(Tap(target=in_app), obs)  # the status bar and the navigation buttons never ask
    assert decision.allowed and decision.asked and asked[0].rule == "sop-sensitive"
    assert asked[0].category == "send_message"


class _SlowBackend(ScriptedBackend):
    """A scripted model that takes ``delay`` seconds per answer (a stop arrives while it thinks)."""

    def __init__(self, delay: float, **answers) -> None:
        super().__init__(**answers)
        self.delay = delay

    def complete(self, messages, *, should_stop=None, **kw):
        import time

        end = time.monotonic() + self.delay
        while time.monotonic() < end:
            if should_stop is not None and should_stop():
                break
            time.sleep(0.005)
        return super().complete(messages, should_stop=should_stop, **kw)


def test_a_stop_while_the_model_thinks_ends_the_run_without_acting(served, tmp_path):
    import threading

    from edgepilot.agent.loop import RunControl

    phone, _, device = served
    settings = device.observe().find(text="Settings")[0]
    backend = _SlowBackend(0.5, decider=[json.dumps({"type": "tap", "target": settings})])
    control = RunControl()
    threading.Timer(0.2, control.stop, args=("safety stop",)).start()
    result = run_agent(device, RoleAgent("open settings", backend), "open settings", max_steps=5,
                       writer=_writer(tmp_path), control=control)
    assert result.status == "stopped" and result.reason == "safety stop"
    assert device.observe().package != "com.android.settings"  # the decided tap was never carried out
    traj = read_trajectory(tmp_path / "run")
    assert traj.result.status == "stopped"
    assert traj.steps[0].gate.allowed is False and traj.steps[0].result is None


def test_a_paused_run_waits_and_resumes(served):
    import threading
    import time

    from edgepilot.agent.loop import RunControl

    _, _, device = served
    backend = ScriptedBackend(decider=['{"type": "swipe", "direction": "up"}'])
    control = RunControl()
    control.pause()
    steps = []
    done = []
    worker = threading.Thread(target=lambda: done.append(
        run_agent(device, RoleAgent("scroll", backend), "scroll", max_steps=2, control=control,
                  on_step=steps.append)))
    worker.start()
    time.sleep(0.3)
    assert steps == [] and control.paused
    control.resume()
    worker.join(10)
    assert len(steps) == 2 and done[0].status == "budget"


def test_stopping_a_paused_run_ends_it(served):
    import threading

    from edgepilot.agent.loop import RunControl

    _, _, device = served
    control = RunControl()
    control.pause()
    threading.Timer(0.1, control.stop).start()
    result = run_agent(device, RoleAgent("scroll", ScriptedBackend()), "scroll", max_steps=3, control=control)
    assert result.status == "stopped" and result.steps == []


def test_prepare_run_builds_the_same_run_as_the_cli(served, tmp_path):
    from edgepilot.agent.session import execute, prepare_run
    from edgepilot.config import Config
    from edgepilot.devices import OpenDevice
    from edgepilot.policy import DEFAULT_POLICY, load_policy
    from edgepilot.policy.confirm import RefuseAll

    phone, _, device = served
    backend = _SlowBackend(0.0, decider=['{"type": "open_app", "app": "Bank"}',
                                         '{"type": "finish", "status": "success"}'])
    opened = OpenDevice(device, phone, "test phone")
    run = prepare_run("turn on airplane mode", opened, backend, config=Config(calls="every"),
                      policy=load_policy(DEFAULT_POLICY),
                      confirmer=RefuseAll("test"), out=tmp_path / "run", max_steps=3)
    assert run.sop is not None and run.meta["sop"] == run.sop.sop.name  # the airplane-mode SOP was retrieved
    result = execute(run)
    assert backend.stop_checks and all(check == run.control.stopped for check in backend.stop_checks)
    traj = read_trajectory(tmp_path / "run")
    first = traj.steps[0].gate
    assert first.allowed is False and first.asked is True and first.answer == "no"  # the bank is out of scope
    assert result.status == "finished" and traj.meta.policy.endswith("default.yaml")


class _VotingBackend(ScriptedBackend):
    """Greedy answers one thing, samples (temperature > 0) mostly another: voting must pick the commoner."""

    def __init__(self, greedy: str, samples: list[str]) -> None:
        super().__init__(planner=[_plan("open Settings")], decider=[greedy])
        self.samples = list(samples)
        self.temperatures: list[float] = []

    def complete(self, messages, *, schema=None, max_tokens=256, temperature=0.0, should_stop=None):
        out = super().complete(messages, schema=schema, max_tokens=max_tokens, temperature=temperature)
        if "You are the decider" in messages[-1].content:
            self.temperatures.append(temperature)
            if temperature > 0:
                out = out.model_copy(update={"text": self.samples.pop(0)})
        return out


def test_voting_takes_the_commonest_valid_answer_and_ignores_invalid_ones(served):
    phone, _, device = served
    obs = device.observe()
    settings, other = obs.find(text="Settings")[0], obs.find(text="Clock")[0]
    tap = lambda i: json.dumps({"type": "tap", "target": i})  # noqa: E731
    backend = _VotingBackend(tap(other), [tap(settings), tap(999), tap(settings), "nonsense"])
    agent = RoleAgent("open settings", backend, vote=5)
    decision = agent.decide(obs)
    assert decision.action == Tap(target=settings)  # 2 votes to 1; no element 999, nonsense does not parse
    assert backend.temperatures == [0.0, 0.7, 0.7, 0.7, 0.7]
    roles = [c.role for c in decision.calls]
    assert roles.count("decider-sample") == 4 and roles.count("decider") == 1
    # the winner's conversation is the one the reflector follows
    assert agent._last_decider.output == tap(settings)

    backend = _VotingBackend(tap(other), [tap(settings), tap(other), "nonsense", tap(999)])
    decision = RoleAgent("open settings", backend, vote=5).decide(obs)
    assert decision.action == Tap(target=other)  # 2 against 1: the greedy answer keeps it

    backend = _VotingBackend(tap(other), [tap(settings)])
    assert RoleAgent("open settings", backend, vote=2).decide(obs).action == Tap(target=other)  # a tie: greedy
    backend = _VotingBackend(tap(other), [])
    assert RoleAgent("open settings", backend).decide(obs).action == Tap(target=other)
    assert backend.temperatures == [0.0]  # no voting by default


def test_a_subgoal_that_names_an_element_narrows_the_deciders_grammar_to_it(bank_login):
    from edgepilot.actions import Key
    from edgepilot.agent.roles import decider_schema_for, ground_subgoal

    _, obs, login, pin = bank_login
    schema = decider_schema_for(obs)
    tap = ground_subgoal(schema, 'tap "Log in"', obs)
    assert tap["anyOf"] == [{"$ref": "#/$defs/Tap"}]
    assert tap["$defs"]["Tap"]["properties"]["target"] == {"enum": [login]}
    assert schema["anyOf"] != tap["anyOf"]  # the screen's own schema is not changed
    typed = ground_subgoal(schema, 'type "8538"', obs)
    assert typed["$defs"]["Type"]["properties"]["text"] == {"enum": ["8538"]}
    assert typed["$defs"]["Type"]["properties"]["target"] == {"enum": [pin]}
    # named the way the teacher names it: the PIN field shows dots, its resource id is "pin"
    into = ground_subgoal(schema, 'type "8538" into PIN', obs)
    assert into["$defs"]["Type"]["properties"]["target"] == {"enum": [pin]}
    quoted = ground_subgoal(schema, 'type "say "hi"" into PIN', obs)  # quotes inside are pinned like the rest
    assert quoted["$defs"]["Type"]["properties"]["target"] == {"enum": [pin]}
    assert quoted["$defs"]["Type"]["properties"]["text"] == {"enum": ['say "hi"']}
    assert ground_subgoal(schema, "press back", obs)["$defs"]["Key"]["properties"]["key"] == {"enum": ["back"]}
    for loose in ('tap "Transfer money"', "log in with the PIN", 'tap ""', "press the big red button", ""):
        assert ground_subgoal(schema, loose, obs) is None, loose
    # in the agent: the planner's subgoal grounds the decider, whose answer can then only be that tap
    backend = ScriptedBackend(planner=[_plan('tap "Log in"')], decider=[json.dumps({"type": "tap", "target": login})])
    agent = RoleAgent("log in to the bank", backend, calls="every")
    agent.history.append("open Bank -> worked")
    decision = agent.decide(obs)
    assert decision.plan["grounded"] is True and decision.action == Tap(target=login)
    decider_prompt = [m for role, m in backend.prompts if role == "decider"]
    assert decider_prompt  # with every call, the decider is still asked (its answer fills the narrowed grammar)
    agent = RoleAgent("log in to the bank", ScriptedBackend(planner=[_plan('tap "Log in"')],
                                                              decider=['{"type": "key", "key": "back"}']), ground=False)
    agent.history.append("open Bank -> worked")
    decision = agent.decide(obs)
    assert "grounded" not in decision.plan and decision.action == Key(key="back")


def test_a_planner_pointing_at_a_step_gives_the_decider_that_steps_words(served):
    """``"subgoal": "next step"`` (the step marked ``<- now``) or ``"step N"``: the decider reads that step in the
    words of a subgoal, grounded like any (the step's way whose target the screen has), and the trajectory
    records the pointer. A step with nothing to act on reaches the decider as written; a number past the
    procedure stays as it was."""
    from edgepilot.sop import load_library, retrieve

    phone, _, device = served
    device.act(OpenApp(app="Bank"))
    obs = device.observe()
    login = obs.find(text="Log in")[0]
    pin = next(i for i, n in enumerate(obs.elements) if n.editable)
    match = retrieve("Send $25 to Mia Thompson from my checking account with the bank app, PIN 1234", load_library())
    assert match is not None and match.sop.name == "bank-transfer"

    def ask(subgoal: str, decider: str, now: int = 1):
        backend = ScriptedBackend(planner=[_plan(subgoal)], decider=[decider])
        agent = RoleAgent("pay Mia", backend, sop=match, calls="every")
        agent.sop = agent.sop.advance(now)
        agent.history.append("open Bank -> worked")
        decision = agent.decide(obs)
        prompt = [m for role, m in backend.prompts if role == "decider"][0][1].content
        return decision, prompt

    decision, prompt = ask("step 3", json.dumps({"type": "tap", "target": login}))
    assert decision.plan["step_ref"] == 3 and decision.plan["subgoal"] == 'tap "Log in"'
    assert decision.plan["grounded"] is True and 'Next subgoal: tap "Log in"\n' in prompt
    decision, _ = ask("step 2", json.dumps({"type": "type", "text": "1234", "target": pin}))
    assert decision.plan["subgoal"] == 'type "1234" into PIN' and decision.plan["grounded"] is True
    decision, _ = ask("next step", json.dumps({"type": "type", "text": "1234", "target": pin}), now=2)
    assert decision.plan["step_ref"] == 2 and decision.plan["subgoal"] == 'type "1234" into PIN'
    decision, _ = ask("next step", json.dumps({"type": "tap", "target": login}), now=3)
    assert decision.plan["step_ref"] == 3 and decision.plan["subgoal"] == 'tap "Log in"'
    assert decision.action == Tap(target=login)
    decision, prompt = ask("step 10", '{"type": "finish", "status": "success"}')
    assert decision.plan["step_ref"] == 10 and "grounded" not in decision.plan
    assert 'Next subgoal: Finish when "Transfer sent" shows.' in prompt
    decision, prompt = ask("step 11", '{"type": "key", "key": "back"}')
    assert "step_ref" not in decision.plan and "Next subgoal: step 11\n" in prompt
    back = '{"type": "key", "key": "back"}'
    without = RoleAgent("pay Mia", ScriptedBackend(planner=[_plan("step 3")], decider=[back]))
    without.history.append("open Bank -> worked")
    assert "step_ref" not in without.decide(obs).plan  # no procedure, nothing to point at


def test_pointing_at_a_step_with_nothing_to_act_on_finishes_only_where_the_task_ends(served):
    """A step the task ends on (``Read ...`` before ``Finish and answer ...``, ``Finish when ...``) leaves the
    decider only finishing, with a non-empty answer where the procedure asks for one; any other step with
    nothing to act on (``Find the row of the {time} alarm``) leaves it everything but finishing."""
    from edgepilot.actions import Key
    from edgepilot.sop import load_library, retrieve
    from edgepilot.sop.values import values_in

    _, _, device = served
    device.act(Key(key="home"))
    obs = device.observe()  # a screen no step names: the procedure stays where each case puts it
    library = load_library()

    def decider_schema(goal: str, sop: str, now: int, decider: str) -> dict:
        match = retrieve(goal, library)
        assert match is not None and match.sop.name == sop
        backend = ScriptedBackend(planner=[_plan("next step")], decider=[decider])
        agent = RoleAgent(goal, backend, sop=match)
        agent.sop = agent.sop.advance(now)
        agent.history.append("press home -> worked")
        decision = agent.decide(obs)
        assert decision.plan["step_ref"] == now and decision.plan["subgoal"] == agent.sop.steps[now - 1].text
        return next(s for role, s in backend.schemas if role == "decider")

    read = decider_schema("What version of Android do I have?", "settings-about-phone", 3,
                          '{"type": "finish", "status": "success", "answer": "14"}')
    assert read["anyOf"] == [{"$ref": "#/$defs/Finish"}]
    finish = read["$defs"]["Finish"]
    screen_texts = [n.text for n in obs.elements if n.text]
    choices = finish["properties"]["answer"]["enum"]  # what the screen shows, and the values in it (9:41, 9, 41)
    assert set(screen_texts) <= set(choices) and all(any(c in t for t in screen_texts) for c in choices)
    assert set(values_in("9:41")) <= set(choices)
    assert finish["required"] == ["type", "status", "answer"]
    done = decider_schema("Pay $3 to Rosa Zhou from my Savings account, PIN 8165", "bank-transfer", 10,
                          '{"type": "finish", "status": "success"}')
    assert done["anyOf"] == [{"$ref": "#/$defs/Finish"}] and "answer" not in done["$defs"]["Finish"]["required"]
    find = decider_schema("Disable the 07:00 alarm", "clock-toggle-alarm", 2, '{"type": "key", "key": "back"}')
    assert {"$ref": "#/$defs/Finish"} not in find["anyOf"] and {"$ref": "#/$defs/Tap"} in find["anyOf"]


def test_an_answer_read_off_the_screen_is_what_the_step_points_at():
    """The choices of an answer the procedure asks for: the line a step's quoted words point at (after a
    label, before it for ``above``, a line starting with them), the values inside, or every text when the
    step points nowhere; a label the step quotes is never one, and a task that asks for an email keeps
    the email."""
    from edgepilot.agent.roles import answer_choices
    from edgepilot.perception.types import Bounds, Observation, UINode

    def screen(*texts: str) -> Observation:
        return Observation(nodes=tuple(UINode(text=t, bounds=Bounds(left=0, top=i * 10, right=100, bottom=i * 10 + 9))
                                       for i, t in enumerate(texts)), screen_width=100, screen_height=400)

    about = screen("About phone", "Device name", "Virtual Phone", "Android version", "14")
    assert answer_choices(about, 'Read the value under "Android version".') == ["14"]
    about = screen("Android version", "14", "Phone number", "+1 555-0100")
    step = 'Read the value asked for under "Android version" or "Phone number".'
    assert answer_choices(about, step, goal="Find out the Android version of this phone") == ["14"]  # the one asked
    assert answer_choices(about, step) == ["14", "+1 555-0100", "1", "555-0100"]  # none named: each
    assert answer_choices(about, step, goal="What is this phone's own number?") == ["555-0100"]
    contact = screen("Ann Lee", "555-0110", "Mobile", "ann@example.com", "Email")
    step = 'Read the number above "Mobile" or the address above "Email", whichever was asked.'
    assert answer_choices(contact, step) == ["555-0110", "ann@example.com"]
    assert answer_choices(contact, step, goal="Find Ann Lee's email") == ["ann@example.com"]
    week = screen("Forecast", "Friday: Cloudy, high 72°F", "Saturday: Rain, high 55°F")
    assert answer_choices(week, 'Read the line that starts with "Saturday:".') == ["Saturday: Rain, high 55°F", "55"]
    inbox = screen("Inbox\nYour code is 482913")
    assert answer_choices(inbox, "Read the code in the newest message.", ["482913", "elsewhere"]) == [
        "Inbox\nYour code is 482913", "482913", "Inbox", "Your code is 482913"]


def test_a_step_read_loosely_is_done_only_as_it_reads():
    """``Tap the note "To do"`` fits no form, but the tracker reads it as the agent does (loosely): a scroll that
    searched for the note does not do it, a tap does."""
    from edgepilot.sop import load_library, retrieve
    from edgepilot.sop.progress import SopProgress

    match = retrieve('Add "Buy bread" to my "To do" note', load_library())
    assert match is not None and match.sop.name == "notes-append"
    progress = SopProgress.start(match).advance(2)
    assert progress.step.text.startswith('Tap the note "To do"')
    assert not progress.done_by(Swipe(direction="up"))
    assert progress.done_by(Tap(target=3))


class _GrammarBackend(ScriptedBackend):
    """A decider that answers within its grammar (the first choice it leaves); the planner's queue as scripted."""

    def complete(self, messages, *, schema=None, max_tokens=256, temperature=0.0, should_stop=None):
        done = super().complete(messages, schema=schema, max_tokens=max_tokens, temperature=temperature)
        if self.prompts[-1][0] != "decider" or schema is None or len(schema.get("anyOf", ())) != 1:
            return done
        name = schema["anyOf"][0]["$ref"].rsplit("/", 1)[1]
        props = schema["$defs"][name]["properties"]
        answer = {key: props[key]["enum"][0] for key in ("type", "direction", "target") if "enum" in props.get(key, {})}
        return Completion(text=json.dumps({"type": name.lower(), **answer}), ms=1.0, constrained=True)


def test_a_tap_on_a_name_the_screen_lacks_scrolls_the_list_until_it_shows_then_taps_it(served):
    """The planner names a contact the screen does not show; the decider is grounded to scroll its list (up,
    then down once a scroll changes nothing) and, once the name is in sight, to tap it."""
    from edgepilot.actions import Key, Swipe
    from edgepilot.agent.roles import decider_schema_for, ground_subgoal

    phone, _, device = served
    device.act(OpenApp(app="Contacts"))
    obs = device.observe()
    names = [c.name for c in phone.by_key["contacts"].sorted_contacts()]
    lists = [i for i, n in enumerate(obs.elements) if n.scrollable]
    hidden = next(n for n in reversed(names) if n not in obs.to_text())
    schema = decider_schema_for(obs)
    scroll = ground_subgoal(schema, f'tap "{hidden}"', obs)
    assert scroll["anyOf"] == [{"$ref": "#/$defs/Swipe"}] and lists
    assert scroll["$defs"]["Swipe"]["properties"]["direction"] == {"enum": ["up"]}
    assert scroll["$defs"]["Swipe"]["properties"]["target"] == {"enum": lists}
    assert ground_subgoal(schema, f'tap "{hidden}"', obs, scroll="down")["$defs"]["Swipe"]["properties"][
        "direction"] == {"enum": ["down"]}
    device.act(OpenApp(app="Bank"))  # no list on the login screen: a missing label leaves the grammar alone
    login = device.observe()
    assert ground_subgoal(decider_schema_for(login), f'tap "{hidden}"', login) is None

    # from the list's end, a name at its top: up changes nothing, so the search turns round
    device.act(OpenApp(app="Contacts"))
    for _ in range(8):
        device.act(Swipe(direction="up", target=lists[0]))
    hidden = next(n for n in names if n not in device.observe().to_text())
    backend = _GrammarBackend(planner=[_plan(f'tap "{hidden}"')])
    agent = RoleAgent(f"call {hidden}", backend, reflect_with_model=False)
    agent.history.append("open Contacts -> worked")
    actions = []
    for _ in range(12):
        before = device.observe()
        action = agent.decide(before).action
        actions.append(action)
        if not isinstance(action, Swipe):
            break
        agent.reflect(before, action, device.act(action), device.observe())
    assert [a.direction for a in actions[:2]] == ["up", "down"], actions
    assert actions[-1] == Tap(target=next(i for i, n in enumerate(before.elements) if hidden in n.text))
    device.act(actions[-1])
    assert hidden in device.observe().to_text()

    # a name the list does not hold: searched down and up, then the decider is left to its own answer
    device.act(Key(key="back"))  # from the contact's page to the list
    assert lists[0] in [i for i, n in enumerate(device.observe().elements) if n.scrollable]
    agent = RoleAgent("call Nobody Here", _GrammarBackend(planner=[_plan('tap "Nobody Here"')],
                                                          decider=[json.dumps({"type": "key", "key": "back"})]),
                      reflect_with_model=False)
    agent.history.append("open Contacts -> worked")
    actions = []
    for _ in range(20):
        before = device.observe()
        decision = agent.decide(before)
        actions.append(decision.action)
        if not isinstance(decision.action, Swipe):
            break
        agent.reflect(before, decision.action, device.act(decision.action), device.observe())
    assert {a.direction for a in actions[:-1]} == {"up", "down"} and len(actions) < 20
    assert actions[-1].type == "key" and "grounded" not in decision.plan


def test_an_action_the_user_refused_is_not_offered_again_on_that_screen(served):
    from edgepilot.agent.roles import decider_schema_for

    _, _, device = served
    home = device.observe()
    settings = home.find(text="Settings")[0]
    asked = []

    def refuse_settings(action, obs):
        if getattr(action, "target", None) == settings:
            asked.append(action)
            return GateDecision(False, "the user refused (opening an app the task does not need)",
                                verdict="ask_user", rule="default", asked=True, answer="no")
        return GateDecision(True)

    backend = ScriptedBackend(decider=[json.dumps({"type": "tap", "target": settings}),
                                       '{"type": "finish", "status": "failure"}'])
    agent = RoleAgent("open the clock", backend)
    result = run_agent(device, agent, agent.goal, max_steps=5, gate=refuse_settings)
    assert result.steps[0].outcome.kind == "refused" and len(asked) == 1
    assert agent.banned == {screen_key(home): {settings}}
    assert settings not in decider_schema_for(home, agent.banned[screen_key(home)])["$defs"]["Tap"]["properties"][
        "target"]["enum"]
