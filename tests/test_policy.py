"""The policy engine: the language, evaluation, task scope, confirmations, the gate on the real virtual phone."""

from __future__ import annotations

import json
import os
import random
import re

import pytest
from click.testing import CliRunner

from edgepilot.actions import Finish, Key, OpenApp, Point, Swipe, Tap, Type, Wait
from edgepilot.agent.loop import run_agent
from edgepilot.cli.main import main
from edgepilot.controllers.android import AndroidDevice
from edgepilot.errors import PolicyError
from edgepilot.policy import (
    DEFAULT_POLICY,
    AuditLog,
    PolicyEngine,
    PolicyGate,
    TerminalConfirmer,
    derive_scope,
    engine_for_task,
    facts,
    load_policy,
    parse_policy,
    resolve_target,
    verify,
)
from edgepilot.policy.confirm import ConfirmResult
from edgepilot.policy.gate import GateDecision
from edgepilot.sim.local import LocalTransport
from edgepilot.sim.phone import VirtualPhone


def _policy(text: str):
    return parse_policy(text, name="p.yaml")


# ---------------------------------------------------------------- the language


def test_default_policy_loads_and_every_rule_has_a_reason():
    policy = load_policy(DEFAULT_POLICY)
    assert policy.default == "ask_user"
    assert len(policy.rules) >= 10
    assert all(r.reason for r in policy.rules)


@pytest.mark.parametrize("text, where, words", [
    ("rules:\n  - id: a\n    effect: allow\n    actoins: [tap]\n", "p.yaml:4", "did you mean 'actions'"),
    ("rules:\n  - id: a\n    effect: alow\n", "p.yaml:3", "'allow' or 'forbid'"),
    ("rules:\n  - id: a\n    effect: allow\n    actions: [tapp]\n", "p.yaml:4", "did you mean 'tap'"),
    ("rules:\n  - id: a\n    effect: forbid\n    when:\n      target.txt: OK\n", "p.yaml:5",
     "did you mean 'target.text'"),
    ("rules:\n  - id: a\n    effect: forbid\n    when:\n      any:\n        - target.text: {regex: '('}\n",
     "p.yaml:6", "bad regular expression"),
    ("rules:\n  - id: a\n    effect: forbid\n    when: {target.text: {like: x}}\n", "p.yaml:4", "unknown test 'like'"),
    ("rules:\n  - id: a\n    effect: forbid\n    when: {action.seconds: {min: many}}\n", "p.yaml:4",
     "`min` takes a number"),
    ("rules:\n  - id: a\n    effect: allow\n  - id: a\n    effect: forbid\n", "p.yaml:4", "used twice"),
    ("rules:\n  - id: a\n    effect: forbid\n    fallback: explode\n", "p.yaml:4", "block"),
    ("defualt: block\nrules: []\n", "p.yaml:1", "did you mean 'default'"),
    ("rules: [\n", "p.yaml", "not valid YAML"),
    ("- just\n- a list\n", "p.yaml:1", "a policy is a mapping"),
    ("a: &x [1, 2]\nrules: *x\n", "p.yaml", "aliases are not allowed"),
    pytest.param("rules:\n  - " + "[" * 20000 + "\n", "p.yaml:2", "brackets nest deeper than 32 levels",
                 id="20000-brackets"),
    pytest.param("rules:\n" + "- " * 5000 + "x\n", "p.yaml", "nests too deep", id="5000-dashes"),
])
def test_errors_name_file_line_and_field(text, where, words):
    with pytest.raises(PolicyError) as err:
        _policy(text)
    assert str(err.value).startswith(where), err.value
    assert words in str(err.value)


def test_binary_huge_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(PolicyError, match="not UTF-8"):
        parse_policy(b"\xff\xfe\x00garbage", name="x.yaml")
    with pytest.raises(PolicyError, match="too large"):
        parse_policy(b"#" * (2 << 20), name="x.yaml")
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "nope.yaml")


def test_toml_policies_with_line_numbers(tmp_path):
    good = tmp_path / "p.toml"
    good.write_text('default = "block"\n[[rules]]\nid = "keys"\neffect = "allow"\nactions = ["key"]\n'
                    '[rules.when]\n"action.key" = { in = ["back", "home"] }\n')
    policy = load_policy(good)
    assert policy.default == "block" and policy.rules[0].condition is not None
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nid = "a"\neffect = "allow"\n[[rules]]\nid = "b"\neffect = "alow"\n')
    with pytest.raises(PolicyError, match=r"bad\.toml:6: rules\[1\]\.effect"):
        load_policy(bad)


def test_fuzzed_policy_files_load_or_fail_clearly():
    """Random damage to the default policy: it loads, or it is a PolicyError; never anything else."""
    text = DEFAULT_POLICY.read_text()
    rng = random.Random(7)
    errors = 0
    for _ in range(400):
        chars = list(text)
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.4:
                del chars[i:i + rng.randint(1, 20)]
            elif op < 0.8:
                chars.insert(i, rng.choice(list(":-[]{}'\"\n #&*!|>%@`\t") + ["\x00", "é", "rules:"]))
            else:
                chars[i] = rng.choice("abcxyz0123")
        try:
            parse_policy("".join(chars).encode("utf-8", "replace"), name="fuzz.yaml")
        except PolicyError as exc:
            assert str(exc).startswith("fuzz.yaml")
            errors += 1
    assert errors > 50  # the damage was real


# ---------------------------------------------------------------- evaluation


class _Phone:
    """The virtual phone behind the Android controller, in-process (the adb path is tested elsewhere)."""

    def __init__(self) -> None:
        self.sim = VirtualPhone(serial="policy-test")
        self.device = AndroidDevice(LocalTransport(self.sim))
        self.info = self.device.info

    def open(self, app: str) -> None:
        self.sim.start_app(self.sim.app(app).package)
        self.sim.changed()

    def observe(self):
        return self.device.observe()

    def act(self, action):
        return self.device.act(action)


@pytest.fixture
def phone():
    return _Phone()


def _screen(phone, app="contacts"):
    phone.open(app)
    return phone.observe()


def test_priority_forbid_first_first_match_and_default(phone):
    obs = _screen(phone)
    policy = _policy("""
default: block
rules:
  - {id: late-forbid, priority: 20, effect: forbid, actions: [tap], fallback: terminate}
  - {id: allow-taps, priority: 10, effect: allow, actions: [tap]}
  - {id: forbid-taps, priority: 10, effect: forbid, actions: [tap], fallback: ask_user}
  - {id: keys, priority: 30, effect: allow, actions: [key]}
""")
    engine = PolicyEngine(policy)
    assert engine.evaluate(Tap(target=0), obs).rule == "forbid-taps"  # forbid before allow at equal priority
    assert engine.evaluate(Tap(target=0), obs).effect == "ask_user"
    assert engine.evaluate(Key(key="back"), obs).effect == "allow"
    verdict = engine.evaluate(Wait(seconds=1), obs)
    assert (verdict.effect, verdict.rule) == ("block", "default")  # no rule: deny, never allow


def test_no_policy_fails_closed(phone):
    verdict = PolicyEngine(None).evaluate(Key(key="back"), _screen(phone))
    assert verdict.effect == "block" and "fail closed" in verdict.reason


def test_missing_attribute_never_matches_even_under_not(phone):
    obs = _screen(phone)
    policy = _policy("""
default: block
rules:
  - id: allow-unless-password
    effect: allow
    when: {not: {target.password: true}}
""")
    engine = PolicyEngine(policy)
    assert engine.evaluate(Tap(target=0), obs).effect == "allow"
    assert engine.evaluate(Wait(seconds=1), obs).effect == "block"  # a wait has no target: unknown, no match


def test_conditions_tests(phone):
    obs = _screen(phone)
    policy = _policy(r"""
default: block
rules:
  - {id: short-waits, effect: allow, actions: [wait], when: {action.seconds: {min: 0.5, max: 3}}}
  - {id: apps, effect: allow, actions: [open_app], when: {action.app: {in: [Contacts, CLOCK]}}}
  - {id: alice, effect: allow, actions: [tap], when: {any: [{target.text: {regex: '(?i)^alice'}}, {target.desc: zz}]}}
""")
    engine = PolicyEngine(policy)
    assert engine.evaluate(Wait(seconds=2), obs).effect == "allow"
    assert engine.evaluate(Wait(seconds=5), obs).effect == "block"
    assert engine.evaluate(OpenApp(app="clock"), obs).effect == "allow"  # `in` ignores case
    assert engine.evaluate(OpenApp(app="bank"), obs).effect == "block"
    alice = next(i for i, e in enumerate(obs.elements) if e.label.startswith("Alice"))
    assert engine.evaluate(Tap(target=alice), obs).rule == "alice"
    x, y = obs.elements[alice].bounds.center
    assert engine.evaluate(Tap(target=Point(x=x, y=y)), obs).rule == "alice"  # pixels resolve to the node
    assert engine.evaluate(Tap(target=alice + 1), obs).effect == "block"


def test_facts_see_the_resolved_target_and_screen(phone):
    phone.open("bank")
    obs = phone.observe()
    pin = obs.find(resource_id="com.example.bank:id/pin") or [i for i, e in enumerate(obs.elements) if e.password]
    known = facts(Type(text="1234", target=pin[0]), obs, resolve_target(Type(text="1234", target=pin[0]), obs))
    assert known["target.password"] is True and known["screen.secure"] is True
    assert known["target.resource_id"] == "pin" and known["screen.package"] == "com.example.bank"


def test_default_policy_on_sensitive_steps(phone):
    engine = engine_for_task("turn on dark theme", load_policy(DEFAULT_POLICY))
    settings = _screen(phone, "settings")
    assert engine.evaluate(Tap(target=0), settings).effect == "allow"  # in the task's app
    assert engine.evaluate(Key(key="back"), settings).effect == "allow"
    assert engine.evaluate(Swipe(direction="up"), settings).effect == "allow"
    assert engine.evaluate(Finish(), settings).effect == "allow"
    open_bank = engine.evaluate(OpenApp(app="Bank"), settings)
    assert (open_bank.effect, open_bank.category) == ("ask_user", "out_of_scope")
    notes = _screen(phone, "notes")
    in_notes = next(i for i, e in enumerate(notes.elements) if e.package == notes.package and e.clickable)
    assert engine.evaluate(Tap(target=in_notes), notes).effect == "ask_user"  # an app the task does not need
    status_bar = next(i for i, e in enumerate(notes.elements) if e.package == "com.android.systemui")
    assert engine.evaluate(Tap(target=status_bar), notes).effect == "allow"  # the status bar is no app's
    bank = _screen(phone, "bank")
    pin = next(i for i, e in enumerate(bank.elements) if e.password)
    assert engine.evaluate(Type(text="1", target=pin), bank).category == "password"


@pytest.mark.parametrize("task, apps", [
    ("Turn on airplane mode", {"settings"}),
    ("Text Alice Morgan: \"running late\"", {"messages"}),
    ("Set an alarm for 6:30", {"clock"}),
    ("Delete the note titled \"Groceries\"", {"notes"}),
    ("Transfer $50 to Bob from my Checking account", {"bank"}),
    ("What is the weather on Friday? Use the browser", {"browser"}),
])
def test_scope_from_the_task_sentence(task, apps):
    assert apps <= set(derive_scope(task).apps)


def test_updates_during_a_run_only_narrow():
    from edgepilot.policy import make_rule

    engine = engine_for_task("turn on wifi", load_policy(DEFAULT_POLICY))
    engine.narrow(make_rule(id="no-typing", priority=1, effect="forbid", actions=["type"], fallback="block"))
    assert engine.rules[0].id == "no-typing"
    with pytest.raises(PolicyError, match="widen"):
        engine.narrow(make_rule(id="all", priority=0, effect="allow"))


# ---------------------------------------------------------------- the gate


class Answers:
    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.requests = []

    def ask(self, request, timeout):
        self.requests.append(request)
        return ConfirmResult(self.answers.pop(0) if self.answers else "no")


def _bank_pin(phone):
    phone.open("bank")
    obs = phone.observe()
    return obs, Type(text="2468", target=next(i for i, e in enumerate(obs.elements) if e.password))


def test_gate_asks_refuses_and_does_not_ask_twice(phone, tmp_path):
    obs, action = _bank_pin(phone)
    answers = Answers("no")
    gate = PolicyGate(engine_for_task("check my bank balance", load_policy(DEFAULT_POLICY)), task="check balance",
                      confirmer=answers, audit=AuditLog(tmp_path / "a.jsonl"))
    first = gate(action, obs)
    assert not first.allowed and first.asked and "refused" in first.reason
    request = answers.requests[0]
    assert request.rule == "type-password" and request.app == "com.example.bank" and "password" in request.target
    again = gate(action, obs)
    assert not again.allowed and len(answers.requests) == 1 and "already refused" in again.reason
    log = (tmp_path / "a.jsonl").read_text()
    words = re.sub(r"\b[0-9a-f]{16,}\b", "<hash>", log)  # the chain's hashes are random hex: "2468" may be in one
    assert "2468" not in words and "<4 characters>" in log  # typed text never reaches the log
    assert verify(tmp_path / "a.jsonl").ok


def test_always_stops_asking_for_that_rule(phone):
    obs, action = _bank_pin(phone)
    answers = Answers("always")
    gate = PolicyGate(engine_for_task("check my bank balance", load_policy(DEFAULT_POLICY)), task="t",
                      confirmer=answers)
    assert gate(action, obs).allowed
    assert gate(action, obs).allowed and len(answers.requests) == 1


def test_gate_refuses_when_the_screen_changed_under_the_target(phone):
    obs = _screen(phone, "contacts")
    gate = PolicyGate(engine_for_task("find Alice in my contacts", load_policy(DEFAULT_POLICY)), task="t",
                      device=phone)
    alice = next(i for i, e in enumerate(obs.elements) if e.label.startswith("Alice"))
    assert gate(Tap(target=alice), obs).allowed
    phone.open("clock")  # something else came to the front after the screenshot
    decision = gate(Tap(target=alice), obs)
    assert not decision.allowed and "changed" in decision.reason and gate.stats.rechecks_failed == 1


def test_terminate_rule_stops_the_run_and_refusals_reach_the_trajectory(phone, tmp_path):
    from edgepilot.agent.agents import FnAgent
    from edgepilot.agent.trajectory import TrajectoryWriter, read_trajectory

    policy = _policy("rules:\n  - {id: no-apps, effect: forbid, actions: [open_app], fallback: terminate}\n")
    gate = PolicyGate(PolicyEngine(policy), task="t")
    agent = FnAgent("scripted", lambda obs: OpenApp(app="Bank"), "t")
    writer = TrajectoryWriter(tmp_path / "run", {"goal": "t"})
    result = run_agent(phone, agent, "t", max_steps=5, gate=gate, writer=writer)
    assert result.status == "stopped" and "no-apps" in result.reason and len(result.steps) == 1
    step = read_trajectory(tmp_path / "run").steps[0]
    assert step.gate.allowed is False and step.gate.rule == "no-apps"
    assert step.outcome.kind == "refused"


def test_gate_decision_json_is_compact_for_plain_allows():
    assert GateDecision(True).to_json() == {"allowed": True, "reason": ""}


# ---------------------------------------------------------------- the terminal prompt


def test_terminal_confirmer_reads_a_tty_and_times_out():
    master, slave = os.openpty()
    with os.fdopen(slave, "r") as tty_in, open(os.devnull, "w") as out:
        confirmer = TerminalConfirmer(stdin=tty_in, stdout=out)
        from edgepilot.policy import ConfirmRequest

        request = ConfirmRequest(task="t", action="tap 'Send'", target="Send", rule="send-message",
                                 category="send_message", reason="sending", app="messages")
        os.write(master, b"y\n")
        assert confirmer.ask(request, timeout=5).answer == "yes"
        os.write(master, b"a\n")
        assert confirmer.ask(request, timeout=5).answer == "always"
        os.write(master, b"whatever\n")
        assert confirmer.ask(request, timeout=5).answer == "no"
        assert confirmer.ask(request, timeout=0.2).answer == "no"  # silence is a refusal
    os.close(master)


def test_terminal_confirmer_without_a_terminal_refuses():
    import io

    from edgepilot.policy import ConfirmRequest

    result = TerminalConfirmer(stdin=io.StringIO("y\n")).ask(
        ConfirmRequest(task="t", action="a", target="", rule="r", category="", reason="", app=""), timeout=1)
    assert result.answer == "no" and "not a terminal" in result.note


# ---------------------------------------------------------------- command line


def test_cli_policy_explain_check_init(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPILOT_CONFIG", str(tmp_path / "config.toml"))
    runner = CliRunner()
    out = runner.invoke(main, ["policy", "explain", "Text Alice: \"hi\""])
    assert out.exit_code == 0, out.output
    assert "task-apps" in out.output and "messages" in out.output and "type-password" in out.output
    data = json.loads(runner.invoke(main, ["policy", "explain", "turn on wifi", "--json"]).output)
    assert data["task_apps"] == ["settings"] and data["rules"][0]["priority"] == 10
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: x\n    effect: allow\n    when: {screen.pakage: a}\n")
    out = runner.invoke(main, ["policy", "check", str(bad), str(DEFAULT_POLICY)])
    assert out.exit_code == 1 and f"{bad}:4" in out.output and "screen.package" in out.output
    assert runner.invoke(main, ["policy", "init"]).exit_code == 0
    assert (tmp_path / "policy.yaml").exists()
    assert runner.invoke(main, ["policy", "init"]).exit_code == 1  # no silent overwrite
    assert "policy.yaml" in runner.invoke(main, ["policy", "show"]).output.splitlines()[0]


def test_run_with_a_broken_policy_stops_before_anything_happens(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("rules:\n  - id: x\n    efect: allow\n")
    out = CliRunner().invoke(main, ["run", "turn on wifi", "--policy", str(bad), "--out", str(tmp_path / "t")])
    assert out.exit_code == 1 and "p.yaml:3" in out.output and "did you mean 'effect'" in out.output
    assert not (tmp_path / "t").exists()


def test_default_policy_on_desktop_actions():
    from edgepilot.actions import Click, Hotkey, Scroll
    from edgepilot.perception import Bounds, Observation, UINode

    def node(text, cls="Button", top=0, **kw):
        return UINode(text=text, class_name=cls, bounds=Bounds(left=0, top=top, right=100, bottom=top + 40),
                      clickable=True, package="mousepad", **kw)

    nodes = (node("Delete"), node("", cls="EditText", top=50, focusable=True), node("Save", top=100))
    screen = Observation(nodes=nodes, package="mousepad", screen_width=1280, screen_height=800)
    engine = engine_for_task('In Mousepad, write "hi" and save it as /tmp/x.txt', load_policy(DEFAULT_POLICY))
    assert "editor" in derive_scope('In Mousepad, write "hi" and save it as /tmp/x.txt').apps
    assert engine.evaluate(Click(target=2), screen).effect == "allow"  # in the task's app
    assert engine.evaluate(Type(text="hi", target=1), screen).effect == "allow"
    assert engine.evaluate(Hotkey(keys=("ctrl", "s")), screen).effect == "allow"
    assert engine.evaluate(Scroll(direction="down"), screen).effect == "allow"
    assert engine.evaluate(Click(target=0), screen).category == "delete"
    assert engine.evaluate(Hotkey(keys=("ctrl", "q")), screen).category == "close"
    other = engine_for_task("Use the calculator to add 2 and 2", load_policy(DEFAULT_POLICY))
    assert other.evaluate(Click(target=2), screen).effect == "ask_user"  # the editor is not this task's app
