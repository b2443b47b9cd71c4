"""Contacts, Messages and Clock on the virtual phone, driven by taps on what the screen shows."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from edgepilot.perception import Observation
from edgepilot.perception.android_tree import parse_uiautomator_xml
from edgepilot.sim.apps.clock import Clock, normalize_time
from edgepilot.sim.apps.contacts import Contacts
from edgepilot.sim.apps.messages import Messages
from edgepilot.sim.phone import VirtualPhone

CONTACTS, MESSAGES, CLOCK = Contacts.package, Messages.package, Clock.package


@pytest.fixture
def phone() -> VirtualPhone:
    return VirtualPhone()


# ---------------------------------------------------------------- driving helpers


def observe(phone: VirtualPhone) -> Observation:
    tree = parse_uiautomator_xml(phone.dump_xml())
    return Observation(nodes=tree.nodes, package=tree.package, screen_width=1080, screen_height=2400)


def _matches(node, text, desc, rid) -> bool:
    """Like the oracle: ``text`` equals one line of the element's text (rows fold their children's lines)."""
    return ((text is None or text in node.text.splitlines()) and (desc is None or node.content_desc == desc)
            and (rid is None or node.resource_id.endswith(f":id/{rid}")))


def find(phone: VirtualPhone, text: str | None = None, *, desc: str | None = None, rid: str | None = None,
         scroll: bool = True):
    """The first element that matches, scrolling the list down when it is not on screen."""
    for _ in range(6):
        hits = [n for n in observe(phone).elements if _matches(n, text, desc, rid)]
        if hits:
            return hits[0]
        if not scroll:
            break
        phone.swipe(540, 1700, 540, 900)
    raise AssertionError(f"nothing on screen matches text={text!r} desc={desc!r} id={rid!r}")


def tap(phone: VirtualPhone, text: str | None = None, **kw) -> None:
    phone.tap(*find(phone, text, **kw).bounds.center)


def type_into(phone: VirtualPhone, rid: str, value: str, *, clear: bool = False) -> None:
    node = find(phone, rid=rid)
    phone.tap(*node.bounds.center)
    if clear:
        for _ in range(len(node.text) + 2):
            phone.keyevent(67)
    phone.input_text(value)


def screen_title(phone: VirtualPhone) -> str:
    return find(phone, rid="toolbar_title", scroll=False).text


def check_screen(phone: VirtualPhone) -> None:
    """The screen dumps as parseable XML with the app's package, and screencaps as a PNG."""
    obs = observe(phone)
    assert obs.package == phone.foreground
    assert any(n.resource_id.endswith(":id/toolbar_title") for n in obs.elements)
    image = Image.open(io.BytesIO(phone.screencap_png()))
    assert image.size == (1080, 2400)


def texts(phone: VirtualPhone) -> list[str]:
    return [line for n in observe(phone).elements for line in n.text.splitlines()]


def ids(phone: VirtualPhone, rid: str) -> list[str]:
    """The texts of the on-screen nodes (folded into rows or not) with that resource id."""
    return [n.text for n in observe(phone).nodes if n.resource_id.endswith(f":id/{rid}")]


# ---------------------------------------------------------------- contacts


def test_contacts_list_is_sorted_searchable_and_scrolls(phone):
    phone.start_app(CONTACTS)
    check_screen(phone)
    names = ids(phone, "title")
    assert names == sorted(names, key=str.casefold)
    assert any(n.scrollable for n in observe(phone).elements)
    assert "Priya Shah" not in texts(phone)
    type_into(phone, "search", "pri")
    assert ids(phone, "title") == ["Priya Shah"]
    phone.keyevent(67)
    phone.keyevent(67)
    phone.keyevent(67)
    phone.input_text("0113")
    assert "Nora Walsh" in texts(phone)


def test_contacts_add_requires_name_and_phone(phone):
    phone.start_app(CONTACTS)
    tap(phone, desc="Add contact")
    check_screen(phone)
    assert screen_title(phone) == "Create contact"
    type_into(phone, "phone", "555-2000")
    tap(phone, "Save")
    assert len(phone.snapshot()["contacts"]["contacts"]) == 15
    assert "Enter a name" in texts(phone)
    type_into(phone, "name", "Ava Chen")
    type_into(phone, "email", "ava@example.com")
    tap(phone, "Save")
    saved = [c for c in phone.snapshot()["contacts"]["contacts"] if c["name"] == "Ava Chen"]
    assert saved and saved[0]["phone"] == "555-2000" and saved[0]["email"] == "ava@example.com"
    assert screen_title(phone) == "Ava Chen"  # the new contact's page
    phone.keyevent(4)
    assert screen_title(phone) == "Contacts"


def test_contacts_view_edit_and_delete_with_confirmation(phone):
    phone.start_app(CONTACTS)
    tap(phone, "David Kim")
    check_screen(phone)
    assert find(phone, rid="contact_phone").text == "555-0104"
    tap(phone, "Edit")
    check_screen(phone)
    assert find(phone, rid="name").text == "David Kim"
    type_into(phone, "phone", "555-9999", clear=True)
    tap(phone, "Save")
    contact = next(c for c in phone.snapshot()["contacts"]["contacts"] if c["name"] == "David Kim")
    assert contact["phone"] == "555-9999"
    tap(phone, "Delete")
    check_screen(phone)
    assert screen_title(phone) == "Delete contact?"
    tap(phone, "Cancel")
    assert any(c["name"] == "David Kim" for c in phone.snapshot()["contacts"]["contacts"])
    tap(phone, "Delete")
    tap(phone, rid="confirm_delete")
    snap = phone.snapshot()["contacts"]
    assert not any(c["name"] == "David Kim" for c in snap["contacts"])
    assert snap["screen"] == "main"


def test_contacts_call_logs_the_number(phone):
    phone.start_app(CONTACTS)
    tap(phone, "Mom")
    tap(phone, "Call")
    check_screen(phone)
    assert "Calling…" in texts(phone)
    assert phone.snapshot()["contacts"]["call_log"] == [{"id": 1, "name": "Mom", "number": "555-0112"}]
    tap(phone, desc="End call")
    assert screen_title(phone) == "Mom"


def test_contacts_message_button_opens_the_conversation(phone):
    phone.start_app(CONTACTS)
    tap(phone, "Emily Stone")
    tap(phone, "Message")
    assert phone.foreground == MESSAGES
    assert screen_title(phone) == "Emily Stone"
    check_screen(phone)
    assert not find(phone, desc="Send").enabled
    type_into(phone, "compose", "Hi Emily")
    tap(phone, desc="Send")
    thread = next(t for t in phone.snapshot()["messages"]["threads"] if t["contact"] == "Emily Stone")
    assert thread["messages"][-1]["text"] == "Hi Emily" and thread["messages"][-1]["outgoing"] is True
    # the draft was cleared: the dump shows the hint as the field's text, and in its hint attribute
    compose = next(line for line in phone.dump_xml().splitlines() if f"{MESSAGES}:id/compose" in line)
    assert 'text="Text message"' in compose and 'hint="Text message"' in compose


# ---------------------------------------------------------------- messages


def test_messages_list_newest_first_with_code(phone):
    phone.start_app(MESSAGES)
    check_screen(phone)
    titles = ids(phone, "title")
    assert titles[0] == "BankAlert"
    tap(phone, "BankAlert")
    check_screen(phone)
    assert any("482913" in t for t in texts(phone))


def test_messages_new_conversation_with_suggestion(phone):
    phone.start_app(MESSAGES)
    tap(phone, desc="Start chat")
    check_screen(phone)
    type_into(phone, "recipient", "nora")
    suggestion = find(phone, "Nora Walsh")
    phone.tap(*suggestion.bounds.center)
    assert find(phone, rid="recipient").text == "Nora Walsh"
    assert phone.focus == "compose"
    phone.input_text("See you soon")
    tap(phone, desc="Send")
    snap = phone.snapshot()["messages"]
    assert snap["screen"] == "thread"
    assert next(t for t in snap["threads"] if t["contact"] == "Nora Walsh")["messages"][-1]["text"] == "See you soon"
    phone.keyevent(4)
    titles = ids(phone, "title")
    assert titles[0] == "Nora Walsh"


def test_messages_recipient_by_number_and_unknown(phone):
    phone.start_app(MESSAGES)
    tap(phone, desc="Start chat")
    type_into(phone, "recipient", "Nobody Known")
    type_into(phone, "compose", "hello")
    tap(phone, desc="Send")
    assert "Choose a contact or enter a phone number" in texts(phone)
    type_into(phone, "recipient", "555-0104", clear=True)
    type_into(phone, "compose", "x", clear=True)
    tap(phone, desc="Send")
    david = next(t for t in phone.snapshot()["messages"]["threads"] if t["contact"] == "David Kim")
    assert david["messages"][-1]["text"] == "x"
    messages = phone.app("messages")
    assert messages.resolve("5550199") == "555-0199"
    assert messages.resolve("555 7777") == "555 7777"


def test_messages_incoming_hook_posts_a_notification_that_opens_the_chat(phone):
    phone.app("messages").setup_incoming_message(contact="Hannah Lee", text="Are you free tonight?")
    assert phone.snapshot()["system"]["notifications"][0]["title"] == "Hannah Lee"
    phone.swipe(540, 20, 540, 1200)
    tap(phone, "Hannah Lee", scroll=False)
    assert phone.foreground == MESSAGES
    assert screen_title(phone) == "Hannah Lee"
    assert "Are you free tonight?" in texts(phone)
    thread = next(t for t in phone.snapshot()["messages"]["threads"] if t["contact"] == "Hannah Lee")
    assert thread["messages"][-1] == {"id": thread["messages"][-1]["id"], "text": "Are you free tonight?",
                                      "outgoing": False, "time": "09:41"}


# ---------------------------------------------------------------- clock


def test_clock_add_alarm_validates_time(phone):
    phone.start_app(CLOCK)
    check_screen(phone)
    tap(phone, desc="Add alarm")
    check_screen(phone)
    type_into(phone, "time", "25:00")
    tap(phone, "Save")
    assert len(phone.snapshot()["clock"]["alarms"]) == 5
    assert any("valid time" in t for t in texts(phone))
    type_into(phone, "time", "6:05", clear=True)
    type_into(phone, "label", "Gym")
    tap(phone, "Save")
    alarm = phone.snapshot()["clock"]["alarms"][-1]
    assert alarm["time"] == "06:05" and alarm["label"] == "Gym" and alarm["enabled"] is True
    assert screen_title(phone) == "Alarm"
    times = ids(phone, "alarm_time")
    assert times == sorted(times) and "06:05" in times


def test_clock_switch_edit_label_and_delete(phone):
    phone.start_app(CLOCK)
    tap(phone, desc="07:00 alarm")
    assert next(a for a in phone.snapshot()["clock"]["alarms"] if a["time"] == "07:00")["enabled"] is False
    assert find(phone, desc="07:00 alarm").checked is False
    tap(phone, "07:00")
    check_screen(phone)
    assert screen_title(phone) == "Edit alarm"
    type_into(phone, "label", "Alarm clock", clear=True)
    tap(phone, "Save")
    alarm = next(a for a in phone.snapshot()["clock"]["alarms"] if a["time"] == "07:00")
    assert alarm["label"] == "Alarm clock" and alarm["enabled"] is False
    tap(phone, "07:00")
    tap(phone, "Delete")
    check_screen(phone)
    assert screen_title(phone) == "Delete alarm?"
    tap(phone, rid="confirm_delete")
    assert not any(a["time"] == "07:00" for a in phone.snapshot()["clock"]["alarms"])


def test_clock_tabs(phone):
    phone.start_app(CLOCK)
    tap(phone, desc="Clock")
    check_screen(phone)
    assert screen_title(phone) == "Clock"
    tap(phone, desc="Alarm")
    assert screen_title(phone) == "Alarm"


def test_normalize_time():
    assert normalize_time("7:05") == "07:05"
    assert normalize_time("23:59") == "23:59"
    assert normalize_time("24:00") is None
    assert normalize_time("7.05") is None


# ---------------------------------------------------------------- state


@pytest.mark.parametrize("key", ["contacts", "messages", "clock"])
def test_snapshot_load_round_trip(phone, key):
    app = phone.app(key)
    data = app.snapshot()
    assert data["screen"] == "main"
    app.load(data)
    assert app.snapshot() == data


def test_reset_restores_defaults(phone):
    phone.start_app(CLOCK)
    tap(phone, desc="22:00 alarm")
    phone.reset()
    assert next(a for a in phone.snapshot()["clock"]["alarms"] if a["time"] == "22:00")["enabled"] is False


# ---------------------------------------------------------------- task templates

TEMPLATE_FILES = ("contacts.yaml", "messages.yaml", "clock.yaml")
