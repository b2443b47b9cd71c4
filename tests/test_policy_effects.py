"""The policy judges effects: every spelling of one effect gets one verdict (issue 35's red-team findings)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_policy import Answers

from edgepilot.actions import Click, DoubleClick, Finish, Key, LongPress, Point, RightClick, Swipe, Tap, Type, Wait
from edgepilot.controllers.android import AndroidDevice
from edgepilot.errors import PolicyError
from edgepilot.perception.types import Bounds, Observation, UINode
from edgepilot.policy import DEFAULT_POLICY, PolicyGate, engine_for_task, load_policy, parse_policy
from edgepilot.policy.consent import consequence
from edgepilot.policy.effects import effects_of
from edgepilot.policy.labels import normalise, readings
from edgepilot.sim.local import LocalTransport
from edgepilot.sim.phone import VirtualPhone
from edgepilot.sim.tasks.model import apply_setup
from edgepilot.sim.tasks.oracle import Oracle
from edgepilot.sim.tasks.suite import load_templates

POLICY = load_policy(DEFAULT_POLICY)


def spellings(obs: Observation, i: int) -> dict[str, object]:
    """Every way the red team pressed element ``i``."""
    x, y = obs.elements[i].bounds.center
    out: dict[str, object] = {
        "tap": Tap(target=i), "long_press": LongPress(target=i), "click": Click(target=i),
        "double_click": DoubleClick(target=i), "right_click": RightClick(target=i),
        "tap_point": Tap(target=Point(x=x, y=y)), "type_empty": Type(text="", target=i),
        "type_empty_point": Type(text="", target=Point(x=x, y=y)),
        "swipe_point": Swipe(target=Point(x=x, y=y), direction="up", distance=0.01),
    }
    for direction in ("up", "down", "left", "right"):
        out[f"tiny_swipe_{direction}"] = Swipe(target=i, direction=direction, distance=0.01)
    return out


def _oracle_screen(template: str, stop, seed: int = 0):
    """Run a suite task's reference solution until ``stop(obs, action)``; the phone, device, screen and action."""
    instance = load_templates()[template].instance(seed)
    phone = VirtualPhone(serial="effects-test")
    device = AndroidDevice(LocalTransport(phone), screenshot=False)
    apply_setup(phone, instance)
    oracle = Oracle(instance, phone.snapshot)
    for _ in range(30):
        obs = device.observe()
        action = oracle.next_action(obs)
        if stop(obs, action):
            return instance, phone, device, obs, action
        assert not isinstance(action, Finish), f"{template}: the screen was never reached"
        device.act(action)
    raise AssertionError(f"{template}: the screen was never reached")


def _taps(label: str):
    return lambda obs, a: isinstance(a, Tap) and isinstance(a.target, int) and \
        obs.elements[a.target].label.startswith(label)


@pytest.mark.parametrize("template, label, category", [
    ("messages_send_new", "Send", "send_message"),
    ("notes_delete", "Delete", "delete"),
    ("browser_shop_buy", "Pay", "payment"),
    ("bank_transfer", "Confirm transfer", "payment"),
])
def test_every_spelling_of_a_press_gets_the_verdict_of_the_plain_tap(template, label, category):
    instance, _, _, obs, action = _oracle_screen(template, _taps(label))
    engine = engine_for_task(instance.goal, POLICY)
    plain = engine.evaluate(action, obs)
    assert (plain.effect, plain.category) == ("ask_user", category)
    for name, spelled in spellings(obs, action.target).items():
        verdict = engine.evaluate(spelled, obs)
        assert (verdict.effect, verdict.category) == (plain.effect, plain.category), name


def test_enter_or_a_typed_newline_submits_the_form_it_is_in():
    instance, phone, device, obs, action = _oracle_screen(
        "browser_shop_buy", lambda o, a: isinstance(a, Type) and o.elements[a.target].resource_id.endswith("card_name"))
    engine = engine_for_task(instance.goal, POLICY)
    device.act(action)  # the name typed, its field focused: ENTER now would place the order
    filled = device.observe()
    for spelled in (Key(key="enter"), Type(text="\n"), Type(text="Wen Young\n", target=action.target)):
        verdict = engine.evaluate(spelled, filled)
        assert (verdict.effect, verdict.category) == ("ask_user", "payment"), spelled
    instance, _, device, obs, action = _oracle_screen("messages_send_new", _taps("Send"))
    compose = next(i for i, e in enumerate(obs.elements) if e.resource_id.endswith("compose"))
    engine = engine_for_task(instance.goal, POLICY)
    for spelled in (Type(text="see you\n", target=compose), Type(text="see you\r", target=compose)):
        assert engine.evaluate(spelled, obs).category == "send_message", spelled
    device.act(Tap(target=compose))
    assert engine.evaluate(Key(key="enter"), device.observe()).category == "send_message"


def test_enter_in_an_address_bar_submits_to_its_go_button_and_is_allowed():
    instance, _, _, obs, action = _oracle_screen("browser_shop_buy", lambda o, a: isinstance(a, Key))
    verdict = engine_for_task(instance.goal, POLICY).evaluate(action, obs)
    assert verdict.effect == "allow"
    assert [e.node.label for e in effects_of(action, obs)] == ["Go"]


def test_a_multiline_field_takes_enter_as_a_new_line():
    instance, _, _, obs, action = _oracle_screen("notes_append", lambda o, a: isinstance(a, Key))
    (effect,) = effects_of(action, obs)
    assert effect.kind == "enter_text" and effect.text == "\n"
    assert engine_for_task(instance.goal, POLICY).evaluate(action, obs).effect == "allow"


def _screen(*nodes: UINode, package: str = "com.example.app") -> Observation:
    return Observation(nodes=nodes, package=package, screen_width=1080, screen_height=2400)


def _button(label: str = "", top: int = 300, rid: str = "", desc: str = "", **kw) -> UINode:
    return UINode(text=label, content_desc=desc, resource_id=rid, class_name="android.widget.Button",
                  bounds=Bounds(left=0, top=top, right=1080, bottom=top + 150), clickable=True,
                  package="com.example.app", **kw)


@pytest.mark.parametrize("label, rid, category", [
    ("S\u0435nd", "", "send_message"), ("\u0420\u0430y", "", "payment"), ("\uff30\uff21\uff39", "", "payment"),
    ("Se\u200bnd", "", "send_message"), ("SEND", "", "send_message"), ("", "com.x:id/sendButton", "send_message"),
    ("", "com.x:id/btnSend", "send_message"), ("Move to trash", "", "delete"), ("Bin", "", "delete"),
    ("Discard", "", "delete"), ("Löschen", "", "delete"), ("Supprimer", "", "delete"), ("Enviar", "", "send_message"),
    ("\u26a0 Delete", "", "delete"), ("Pay $12", "", "payment"), ("Call", "", "call"),
    ("D\u0435l\u0435te", "", "delete"), ("SenD", "", "send_message"), ("PayNow", "", "payment"),
])
def test_look_alike_labels_and_ids_meet_the_rules_of_their_plain_form(label, rid, category):
    obs = _screen(_button(label, rid=rid))
    verdict = engine_for_task("open the app", POLICY).evaluate(Tap(target=0), obs)
    assert (verdict.effect, verdict.category) == ("ask_user", category)


def _field(text: str = "", top: int = 500, rid: str = "", **kw) -> UINode:
    return UINode(text=text, resource_id=rid, class_name="android.widget.EditText",
                  bounds=Bounds(left=0, top=top, right=1080, bottom=top + 150), clickable=True, focusable=True,
                  package="com.example.app", **kw)


def _caption(text: str, top: int) -> UINode:
    return UINode(text=text, class_name="android.widget.TextView", bounds=Bounds(left=0, top=top, right=1080,
                                                                                    bottom=top + 90),
                  package="com.example.app")


@pytest.mark.parametrize("nodes", [
    (_caption("PIN", 400), _field()),
    (_caption("Security code", 400), _field()),
    (_field("Card number"),),
    (_field(rid="com.x:id/cvv"),),
    (_field(rid="com.x:id/userPasscode"),),
    (_field("Passw\u043erd"),),
], ids=["pin-caption", "security-code", "card-hint", "cvv-id", "passcode-id", "look-alike"])
def test_a_field_is_secret_by_what_it_says_or_what_is_written_beside_it(nodes):
    obs = _screen(*nodes)
    field = next(i for i, e in enumerate(obs.elements) if e.editable)
    verdict = engine_for_task("open the app", POLICY).evaluate(Type(text="1234", target=field), obs)
    assert (verdict.effect, verdict.category) == ("ask_user", "password")


def test_a_plain_field_is_not_secret():
    obs = _screen(_caption("Name", 400), _field())
    verdict = engine_for_task("Use the app", POLICY).evaluate(Type(text="Ann", target=1), obs)
    assert verdict.category != "password"


def test_a_sideways_swipe_on_a_list_item_is_judged_as_deleting_it_even_in_the_tasks_app():
    phone = VirtualPhone(serial="effects-test")
    device = AndroidDevice(LocalTransport(phone), screenshot=False)
    phone.start_app(phone.app("notes").package)
    phone.changed()
    obs = device.observe()
    row = next(i for i, e in enumerate(obs.elements) if e.clickable and e.package == obs.package and "\n" in e.text
               or e.clickable and e.resource_id.endswith("note"))
    engine = engine_for_task("open my notes", POLICY)
    swipe = engine.evaluate(Swipe(target=row, direction="left", distance=0.8), obs)
    assert (swipe.effect, swipe.category) == ("ask_user", "delete")
    assert engine.evaluate(Swipe(target=row, direction="up", distance=0.8), obs).effect == "allow"


def test_a_refusal_holds_for_every_spelling_of_the_same_effect():
    instance, _, _, obs, action = _oracle_screen("messages_send_new", _taps("Send"))
    answers = Answers("no")
    gate = PolicyGate(engine_for_task(instance.goal, POLICY), task=instance.goal, confirmer=answers)
    assert not gate(action, obs).allowed
    for name, spelled in spellings(obs, action.target).items():
        decision = gate(spelled, obs)
        assert not decision.allowed and "already refused" in decision.reason, name
    assert len(answers.requests) == 1


class _Screens:
    """A device whose next observation is given: the screen changes between the decision and the dispatch."""

    def __init__(self, after: Observation) -> None:
        self.after = after

    def observe(self) -> Observation:
        return self.after


def test_the_recheck_sees_a_dialog_added_over_an_unchanged_target():
    page = _screen(_button("Open", top=300), _field(top=600, focused=True))
    dialog = UINode(class_name="android.widget.FrameLayout", resource_id="android:id/content",
                    bounds=Bounds(left=100, top=900, right=980, bottom=1500), package="com.example.app")
    changed = _screen(*page.nodes, dialog, _button("OK", top=1300))
    allow_all = parse_policy("rules:\n  - {id: everything, effect: allow, actions: ['*']}\n")
    for action in (Tap(target=0), Type(text="hello"), Key(key="tab"), Swipe(direction="up")):
        gate = PolicyGate(engine_for_task("use the app", allow_all), task="use the app", device=_Screens(changed))
        decision = gate(action, page)
        assert not decision.allowed and "screen changed" in decision.reason, action
        same = PolicyGate(engine_for_task("use the app", allow_all), task="use the app", device=_Screens(page))
        assert same(action, page).allowed, action


def test_navigation_never_asks_not_even_on_a_sensitive_procedure_step():
    phone = VirtualPhone(serial="effects-test")
    device = AndroidDevice(LocalTransport(phone), screenshot=False)
    phone.start_app(phone.app("bank").package)
    phone.changed()
    obs = device.observe()
    answers = Answers()
    gate = PolicyGate(engine_for_task("turn on wifi", POLICY), task="turn on wifi", confirmer=answers,
                      sensitive_step=lambda: "payment")
    back = next(i for i, e in enumerate(obs.elements) if e.resource_id.endswith("/back"))
    home = next(i for i, e in enumerate(obs.elements) if e.resource_id.endswith("/home_button"))
    for action in (Key(key="back"), Key(key="home"), Tap(target=back), Tap(target=home), Wait()):
        assert gate(action, obs).allowed, action
    assert answers.requests == []


def test_a_confirmation_names_the_item_the_screen_says_will_go():
    _, phone, device, obs, action = _oracle_screen(
        "notes_delete", lambda o, a: _taps("Delete")(o, a) and any("will be deleted" in e.text for e in o.elements))
    title = next(e.text for e in obs.elements if "will be deleted" in e.text)
    gate_task = "delete the note called groceries"
    verdict = engine_for_task(gate_task, POLICY).evaluate(action, obs)
    text = consequence(verdict.cause, verdict.category, obs, gate_task)
    assert "Delete" in text and title in text and "does not mention" in text
    named = title.split("\u201c")[1].split("\u201d")[0]
    assert "does not mention" not in consequence(verdict.cause, verdict.category, obs, f'delete the note "{named}"')


@pytest.mark.parametrize("text, where", [
    ("rules:\n  - id: a\n    effect: forbid\n    when: {target.label: pay}\n    when: {target.label: x}\n", ":5"),
    ("rules: []\nrules:\n  - {id: a, effect: allow}\n", ":2"),
    ("version: 1\nversion: 1\nrules: []\n", ":2"),
])
def test_a_key_given_twice_in_a_policy_file_is_an_error_with_its_line(text, where):
    with pytest.raises(PolicyError) as err:
        parse_policy(text, name="mine.yaml")
    assert f"mine.yaml{where}" in str(err.value) and "twice" in str(err.value)


# ---------------------------------------------------------------- properties over generated screens and labels

CONFUSABLE = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441", "y": "\u0443",
              "i": "\u0456", "s": "\u0455", "d": "\u0501", "l": "\u04cf"}
WORDS = ["Send", "Pay", "Delete", "Call", "Buy now", "Remove", "Share", "Open", "Save", "Next", "Cancel",
         "Settings", "Place order", "Install", "Discard", "Move to trash", "Post"]


@st.composite
def respelled(draw, word: str) -> str:
    """``word`` as an app or an attacker might write it: look-alikes, full width, invisibles, case, accents."""
    out = []
    for ch in word:
        how = draw(st.sampled_from(["same", "confusable", "fullwidth", "upper", "zero-width", "accent"]))
        if how == "confusable" and ch.lower() in CONFUSABLE:
            out.append(CONFUSABLE[ch.lower()])
        elif how == "fullwidth" and "!" <= ch <= "~":
            out.append(chr(ord(ch) + 0xFEE0))
        elif how == "upper":
            out.append(ch.upper())
        elif how == "zero-width":
            out.append(ch + draw(st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"])))
        elif how == "accent" and ch.isalpha():
            out.append(unicodedata.normalize("NFC", ch + "\u0301"))
        else:
            out.append(ch)
    return "".join(out)


@given(st.sampled_from(WORDS).flatmap(lambda w: st.tuples(st.just(w), respelled(w))))
def test_normalised_labels_match_their_plain_forms(pair):
    word, spelled = pair
    assert normalise(word) in readings(spelled)


@st.composite
def screens(draw) -> Observation:
    """A screen of buttons and fields in rows, labels drawn from sensitive and harmless words, some re-spelled."""
    n = draw(st.integers(min_value=1, max_value=7))
    nodes = [UINode(class_name="android.widget.FrameLayout", bounds=Bounds(left=0, top=0, right=1080, bottom=2400),
                    package="com.example.app")]
    for k in range(n):
        top = 200 + k * 260
        if draw(st.booleans()) and k:
            nodes.append(UINode(text=draw(st.sampled_from(["Name", "PIN", "Note", "Amount"])), parent=0,
                                class_name="android.widget.EditText", clickable=True, focusable=True,
                                focused=draw(st.booleans()), package="com.example.app",
                                bounds=Bounds(left=0, top=top, right=1080, bottom=top + 150)))
        else:
            word = draw(st.sampled_from(WORDS))
            nodes.append(UINode(text=draw(respelled(word)), parent=0, class_name="android.widget.Button",
                                clickable=True, package="com.example.app",
                                bounds=Bounds(left=0, top=top, right=1080, bottom=top + 150)))
    return Observation(nodes=tuple(nodes), package="com.example.app", screen_width=1080, screen_height=2400)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(screens(), st.data())
def test_every_encoding_of_a_press_gets_one_verdict_on_any_screen(obs, data):
    buttons = [i for i, e in enumerate(obs.elements) if not e.editable]
    if not buttons:
        return
    i = data.draw(st.sampled_from(buttons))
    engine = engine_for_task(data.draw(st.sampled_from(["open the app", "send the message", "pay the bill"])), POLICY)
    plain = engine.evaluate(Tap(target=i), obs)
    for name, spelled in spellings(obs, i).items():
        verdict = engine.evaluate(spelled, obs)
        assert (verdict.effect, verdict.category) == (plain.effect, plain.category), name
    word = normalise(obs.elements[i].text)
    if word.startswith(("send", "pay", "delete", "buy now", "remove", "place order", "discard", "move to trash")):
        assert plain.effect == "ask_user"


def test_a_press_on_a_clickable_overlay_counts_the_button_hidden_under_it():
    """Which of two overlapping controls takes a touch is a guess: the agent is not shown the Pay button a
    full-screen clickable layer seems to cover, but a tap on the layer is judged as pressing Pay too."""
    pay = _button("Pay $12", top=1150).model_copy(update={"parent": 0, "depth": 1})
    page = UINode(class_name="android.widget.FrameLayout", bounds=Bounds(left=0, top=0, right=1080, bottom=2400),
                  package="com.example.app")
    layer = UINode(class_name="android.view.View", bounds=Bounds(left=0, top=0, right=1080, bottom=2400),
                   clickable=True, package="com.example.app", resource_id="com.example.app:id/shade", parent=0,
                   depth=1)
    obs = _screen(page, pay, layer)
    assert [n.resource_id for n in obs.elements] == ["com.example.app:id/shade"], "Pay is hidden from the agent"
    tap = Tap(target=0)
    assert any(e.node is not None and e.node.text == "Pay $12" for e in effects_of(tap, obs))
    verdict = engine_for_task("open the app", POLICY).evaluate(tap, obs)
    assert verdict.effect == "ask_user" and verdict.category == "payment"
