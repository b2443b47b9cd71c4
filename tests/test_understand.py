"""The understanding step: goals as people type them → procedure (or none) and typed parameters; the check of
a finished run against the goal; values a goal leaves out."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edgepilot.actions import Finish, Tap, Type
from edgepilot.agent.loop import EXIT_STATUS, exit_status
from edgepilot.agent.session import fill_missing
from edgepilot.agent.verify import check_result, nothing_found
from edgepilot.bench.phrasings import load_phrasings
from edgepilot.bench.sop import evaluate_phrasings, same_value
from edgepilot.bench.tasks import train_only_library
from edgepilot.errors import GoalError, MissingInput
from edgepilot.perception.nodes import Bounds, UINode
from edgepilot.perception.types import Observation
from edgepilot.sim.tasks.suite import load_templates
from edgepilot.sop import load_library
from edgepilot.sop.understand import normalise_amount, normalise_phone, normalise_time, understand


@pytest.fixture(scope="module")
def library():
    return load_library()


@pytest.mark.parametrize(("typed", "want"), [
    ("7:30", "07:30"), ("730am", "07:30"), ("7.30 pm", "19:30"), ("19h30", "19:30"), ("half past seven", "07:30"),
    ("quarter to seven a.m.", "06:45"), ("noon", "12:00"), ("midnight", "00:00"), ("7 pm", "19:00"),
    ("12am", "00:00"), ("12:15 pm", "12:15"),
])
def test_times_people_write(typed, want):
    assert normalise_time(typed) == want


def test_money_and_phone_numbers():
    assert normalise_amount("$12") == "12.00"
    assert normalise_amount("1,204.5 dollars") == "1204.50"
    assert normalise_amount("12 bucks") == "12.00"
    assert normalise_amount("twelve") is None
    assert normalise_phone("555 0102") == "555-0102"
    assert normalise_phone("5550102") == "555-0102"
    assert normalise_phone("12") is None


# The wordings of the issue that asked for this step (not from the phrasings set, which is kept apart).
@pytest.mark.parametrize(("goal", "sop", "params"), [
    ("tell Ann Lee im on my way", "messages-send", {"name": "Ann Lee", "message": "im on my way"}),
    ("bluetooth off plz", "settings-bluetooth-toggle", {"state": "off"}),
    ("could u check how much is in savings, pin 1234", "bank-check-balance", {"pin": "1234", "account": "Savings"}),
    ("delete the groceries note", "notes-delete", {"title": "groceries"}),
    ("dark mode on", "settings-dark-theme", {"state": "on"}),
    ("delete the note called groceries", "notes-delete", {"title": "groceries"}),
    ("wake me up at 730am", "clock-add-alarm", {"time": "07:30"}),
    ("call vera novak", "contacts-call", {"name": "Vera Novak"}),
    ("whats ann lees number", "contacts-lookup", {"name": "Ann Lee"}),
    ("pay rosa zhou 12 bucks from checking, pin 8165", "bank-transfer",
     {"amount": "12.00", "payee": "Rosa Zhou", "account": "Checking", "pin": "8165"}),
    ("delte my alram for 6am", "clock-delete-alarm", {"alarm": "06:00"}),
    ("screen timeout 30 sec", "settings-screen-timeout", {"timeout": "30 seconds"}),
    ("open chrome", "system-open-app", {"app": "Chrome"}),
    ("send ann lee's number to omar diaz", "messages-share-contact", {"contact": "Ann Lee", "name": "Omar Diaz"}),
])
def test_goals_as_people_type_them(library, goal, sop, params):
    u = understand(goal, library)
    assert u.sop == sop, u.reason
    assert u.params == params


@pytest.mark.parametrize("goal", [
    "whats the wifi password for home",  # a question, not a connect task with a made-up password
    "is bluetooth on",
    "delete all my notes",               # a procedure does one note
    "turn wifi off at 10pm tonight",     # a time no toggle has a place for
    "Play the next song on Spotify",
])
def test_none_rather_than_a_wrong_procedure(library, goal):
    u = understand(goal, library)
    assert u.match is None and u.reason


# Goals that share a procedure's objects but ask for another action (written for this test, not taken from the
# phrasings set): retrieval scores them on their nouns; the action they ask for rules the procedure out.
@pytest.mark.parametrize(("goal", "not_this"), [
    ("change my bank pin to 4321", "bank-check-balance"),
    ("Change the CoffeeShop Wi-Fi password to sunshine22", "settings-wifi-connect"),
    ("did Vera Novak ring me yesterday", None),
    ("add dentist on friday to my calendar", "system-open-app"),
    ("RENAME my bank account to Holidays", "bank-check-balance"),
    ("what was the PIN of my bank app again?", None),  # a question for the secret a procedure needs
    ("please erase the login text Zapmail sent me", "messages-read-code"),  # the command's verb is erase
])
def test_a_procedure_that_does_another_action_is_not_forced(library, goal, not_this):
    u = understand(goal, library)
    assert u.match is None, (u.sop, u.params)
    if not_this:
        assert "no procedure does that" in u.reason or "fits" in u.reason


@pytest.mark.parametrize(("goal", "sop"), [
    ("hook my phone up to the headphones over bluetooth", "settings-bluetooth-connect"),
    ("get rid of the 6am alarm", "clock-delete-alarm"),
    ("how warm is it going to get on saturday", "chrome-weather"),   # "going to" is not "go to"
    ("Erase the note called Groceries, please", "notes-delete"),  # "called" names, it does not call
    ("switch bluetooth on and pair the speaker", "settings-bluetooth-connect"),  # the first verb is a step to it
])
def test_the_same_action_in_other_words_still_fits(library, goal, sop):
    u = understand(goal, library)
    assert u.sop == sop, u.reason


# Written for these tests, not taken from the phrasings set (kept apart for measuring).
def test_the_values_a_goal_gives_tell_its_procedure(library):
    """An amount, a listed account and a PIN say *bank transfer* though no word of the goal is the procedure's."""
    u = understand("$40 to ann lee out of checking pin 1111", library)
    assert u.sop == "bank-transfer", (u.reason, u.candidates)
    assert u.params == {"amount": "40.00", "payee": "Ann Lee", "account": "Checking", "pin": "1111"}
    assert understand("high temp thu", library).params == {"day": "Thursday"}
    # the numbers of a sum are the sum, not numbers for a procedure that takes one number
    desktop = load_library().for_device("desktop")
    assert understand("what is 6 times 7 on the calculator", desktop).sop == "galculator-compute"


def test_the_words_nothing_else_explains_fill_the_one_open_value(library):
    from edgepilot.sop.understand import leftover

    u = understand("whats the zapmail code", library)
    assert (u.sop, u.params) == ("messages-read-code", {"sender": "Zapmail"}), u.reason
    assert any("nothing else explains" in n for n in u.notes)
    sop = next(s for s in library.sops if s.name == "messages-read-code")
    assert leftover(sop, "read me the code zapmail sent real quick please") == "zapmail"
    assert leftover(sop, "read me the code") is None
    # a procedure taken below the bar never gets a value made up this way: none is better
    assert understand("mark all my texts as read", library).match is None


def test_a_name_before_the_noun_it_names(library):
    """``my Book club note``: the words between the small word and the noun the procedure's phrasings put after
    the value, unquoted and in any case."""
    assert understand("the Book club note - delete it", library).params == {"title": "Book club"}
    assert understand("packing list note can go, delete it", library).params == {"title": "packing list"}
    u = understand("set an alarm at the time in my Dentist trip note", library)
    assert (u.sop, u.params) == ("notes-time-to-alarm", {"title": "Dentist trip"}), u.reason
    assert understand('remove the "Old stuff" note', library).params == {"title": "Old stuff"}  # quoted wins
    assert understand('set an alarm for the time in my "Day one" note', library).params == {"title": "Day one"}
    assert understand("what code did Zapmail SMS me", library).params == {"sender": "Zapmail"}  # SMS is text
    assert understand("remove the 7am alarm", library).params == {"alarm": "07:00"}  # a time stays a time


def test_a_setting_named_without_on_or_off_is_asked_on_unless_something_says_otherwise(library):
    assert understand("switch the phone to airplane mode", library).params == {"state": "on"}
    assert understand("dark theme pls", library).params == {"state": "on"}
    assert understand("dark theme off", library).params == {"state": "off"}
    assert understand("toggle dark theme", library).params == {}  # a flip: which way is not said
    assert understand("Schalte den dunklen Modus aus", library).params.get("state") != "on"  # not read: no guess


def test_a_card_number_typed_without_spaces_is_the_card(library):
    u = understand("order the yoga mat, card 4111111111111111, Omar Diaz", library)
    assert u.sop == "chrome-shop-buy" and u.params.get("card") == "4111 1111 1111 1111", (u.reason, u.params)


def test_a_goal_every_word_of_which_a_procedure_explains_is_taken_below_the_bar(library):
    from edgepilot.sop.understand import EXPLAINED_FLOOR, _all_explained, normalise

    u = understand("hey which android is this phone running", library)  # 0.41: every word explained
    assert u.sop == "settings-about-phone" and u.match.score >= EXPLAINED_FLOOR, (u.reason, u.candidates)
    sop = next(s for s in library.sops if s.name == "contacts-edit")
    assert not _all_explained(sop, normalise("change my ringtone"), {"name": "Ringtone"})  # not typed as a name
    assert not _all_explained(sop, normalise("change Ann Lee's ringtone"), {"name": "Ann Lee"})  # ringtone?


def test_unquoted_text_at_the_end_after_the_word_that_leads_it_in(library):
    u = understand("reply to Ann Lee with are we still on for lunch?", library)
    assert u.sop == "messages-reply" and u.params.get("message") == "are we still on for lunch?", u.params


def test_the_words_of_a_procedures_name_weigh(library):
    phone = library.for_device("android")
    u = understand("Omar Diaz keeps texting me and I never answer, so please delete his contact", phone)
    assert (u.sop, u.params) == ("contacts-delete", {"name": "Omar Diaz"}), (u.reason, u.candidates)
    assert "Rid" not in understand("get rid of omar diaz from my contacts", phone).text  # a verb, not a name


def test_a_name_after_a_naming_word_ends_with_its_clause(library):
    goal = ("log into my bank with 1111, check the Checking balance and write it down in a new note with the "
            "title Rent money so I remember")
    u = understand(goal, library)
    assert (u.sop, u.params) == ("bank-balance-to-note", {"pin": "1111", "account": "Checking",
                                                          "title": "Rent money"}), (u.reason, u.candidates)


def test_a_quoted_name_after_a_naming_word(library):
    u = understand('Make a contact called "Town Pool" with the number shown on the library website', library)
    assert u.params.get("name") == "Town Pool", (u.sop, u.params)


def test_a_value_is_not_taken_twice(library):
    u = understand("Gym should be the new name of my 6 am alarm", library)  # the time is not also the label
    assert (u.sop, u.params) == ("clock-rename-alarm", {"time": "06:00", "label": "Gym"}), (u.reason, u.notes)


def test_the_possessive_says_whose_number_is_sent(library):
    for goal in ("Omar Diaz wants Ann Lee's number, text it to him", "pls txt ann lee's # to omar diaz"):
        u = understand(goal, library)
        assert (u.sop, u.params) == ("messages-share-contact", {"contact": "Ann Lee", "name": "Omar Diaz"}), goal


def test_words_to_the_assistant_at_the_end_are_not_the_task(library):
    u = understand("would you launch the clock for me, if you can?", library)
    assert (u.sop, u.params) == ("system-open-app", {"app": "Clock"}), (u.reason, u.candidates)
    u = understand("text Ann Lee: keep a seat for me", library)  # a message keeps its own words
    assert u.params.get("message") == "keep a seat for me"


def test_a_word_people_use_is_not_taken_for_a_typo(library):
    from edgepilot.sop.understand import english_words

    assert {"lunch", "dentist", "calendar"} <= english_words() and "alram" not in english_words()
    u = understand("add lunch with Ava on saturday to my calendar", library)
    assert "launch" not in u.text.lower() and u.match is None, (u.text, u.sop)
    assert understand("delte my alram for 6am", library).sop == "clock-delete-alarm"  # slips are still mended


def test_text_after_a_closing_colon_is_the_value(library):
    from edgepilot.sop.understand import normalise

    assert normalise("text Ben Ortiz: the train is late").text == 'text Ben Ortiz: "the train is late"'
    assert normalise("wake me at 7:30").text == "wake me at 07:30"  # a time's colon is not one
    assert '"' not in normalise("Read /tmp/a/dentist.txt: what time does it start?").text  # a question goes on
    u = understand("send a message to Ben Ortiz: The train is late, start without me", library)
    assert u.sop == "messages-send" and u.params == {"name": "Ben Ortiz",
                                                     "message": "The train is late, start without me"}


def test_actions_are_read_in_every_form_and_outside_quotes():
    from edgepilot.sop.actions import actions_in

    for text in ("delete it", "DELETES it", "deleted", "deleting", "Get rid of it", "remove", "erasing"):
        assert actions_in(text) == {"remove"}, text
    assert actions_in('note "delete the old files"') == frozenset()  # quoted text is a value
    assert actions_in("a note called Chores") == frozenset()
    assert actions_in("move it, then copy it") == {"move", "copy"}
    assert actions_in("dark mode on") == frozenset()  # no verb: nothing is ruled out


def test_a_procedure_that_does_only_the_first_part_is_not_forced():
    from edgepilot.sop.actions import further_actions

    assert further_actions("work out 6 × 7, then paste it into a new file and save it") == {"copy", "save"}
    assert further_actions("salt and pepper") == frozenset()
    desktop = load_library().for_device("desktop")
    trained = train_only_library(load_library(), kind="desktop").for_device("desktop")  # no copy-the-result one
    u = understand("Multiply 12 by 9 in Galculator and then copy the answer", trained)
    assert u.match is None, (u.sop, u.reason)
    assert understand("Multiply 12 by 9 in Galculator", trained).sop == "galculator-compute"
    assert understand("Multiply 12 by 9 in Galculator and then copy the answer", desktop).sop == \
        "galculator-copy-result"


def test_a_desktop_move_is_not_a_copy_and_a_delete_is_not_a_resize():
    desktop = load_library().for_device("desktop")
    trained = train_only_library(load_library(), kind="desktop").for_device("desktop")  # no move, no delete
    assert understand("Use Thunar to move silver.txt into the Inbox folder", trained).match is None
    assert understand("In the image viewer, delete blurry.png", trained).match is None
    assert understand("Use Thunar to copy silver.txt into the Inbox folder", trained).sop == "thunar-copy-into"
    assert understand("Use Thunar to move silver.txt into the Inbox folder", desktop).sop == "thunar-move-into"
    assert understand("In the image viewer, delete blurry.png", desktop).sop == "ristretto-delete-image"


def test_a_procedure_that_leaves_a_value_out_gives_way_to_one_close_behind_that_the_goal_gives_in_full():
    desktop = load_library().for_device("desktop")
    u = understand("what is 6 times 7 on the calculator", desktop)  # not: read a file the goal never names
    assert u.sop == "galculator-compute" and u.params == {"sum": "6*7"}, (u.sop, u.candidates)
    assert u.goal == "what is 6 times 7 on the calculator"  # the goal as typed (it was a cache's dict)
    phone = load_library().for_device("android")
    u = understand("Add a contact named Tara Fischer with the phone number 555-2945", phone)
    assert u.sop == "contacts-add", u.candidates  # not the library's number saved as a contact


def test_a_missing_value_is_missing_not_made_up(library):
    u = understand("how much money is in my bank account", library)
    assert u.sop == "bank-check-balance"
    assert set(u.missing) == {"pin", "account"}


@pytest.mark.parametrize(("goal", "message"), [
    ("", "empty"), ("   \n\t ", "empty"), ("x" * 100_000, "characters long"), ("🙂🙂🙂", "no words"),
    ("\u200b\u200e", "empty"),
])
def test_bad_goals_get_a_clear_error(library, goal, message):
    with pytest.raises(GoalError, match=message):
        understand(goal, library)


def test_control_characters_and_other_languages(library):
    u = understand("turn\x00 off\x1b[31m wifi", library)
    assert u.sop == "settings-wifi-toggle" and u.params == {"state": "off"}
    assert "\x00" not in u.goal and "\x1b" not in u.goal
    for goal in ("apaga el wifi por favor", "schalte das Licht ein", "打开蓝牙"):
        assert understand(goal, library).match is None


def test_missing_values_are_asked_or_the_run_says_what_is_missing(library):
    match = understand("how much is in my savings account", library).match
    assert match.missing == ("pin",)
    with pytest.raises(MissingInput, match="PIN") as caught:
        fill_missing(match, None)
    assert caught.value.missing == ("pin",)
    asked = []
    filled = fill_missing(match, lambda name, description, secret: asked.append((name, secret)) or "4321")
    assert filled.params["pin"] == "4321" and asked == [("pin", True)]
    assert "{pin}" not in filled.render()


def test_the_phrasings_set_covers_every_template_and_is_scored(library):
    data = load_phrasings()
    templates = load_templates()
    by_template = {}
    for g in data["goals"]:
        by_template.setdefault(g["task"].partition("#")[0], []).append(g)
        sop = library.get(g["sop"])
        assert set(g["params"]) == set(sop.params), g
    assert set(by_template) == set(templates)
    assert min(len(v) for v in by_template.values()) >= 11
    assert len(data["goals"]) >= 400 and len(data["none"]) >= 60
    report = evaluate_phrasings(library=library)
    assert report["goals"] == len(data["goals"]) and report["none_goals"] == len(data["none"])
    assert 0.0 < report["top1"] <= 1.0 and 0.0 <= report["forced_on_none"] <= 1.0
    assert set(report["halves"]) == {"dev", "held"}
    assert same_value("Ann Lee", "ann lee.") and not same_value("Ann Lee", None) and same_value(None, None)


# ---------------------------------------------------------------- the check of a finished run


@dataclass
class _Gate:
    allowed: bool = True


@dataclass
class _Step:
    obs: Observation
    action: object
    gate: _Gate | None = None


def _screen(*labels: str) -> Observation:
    nodes = tuple(UINode(text=label, bounds=Bounds(left=0, top=100 * i, right=1080, bottom=100 * i + 90),
                         clickable=True, class_name="android.widget.TextView", package="com.google.android.keep")
                  for i, label in enumerate(labels))
    return Observation(nodes=nodes, screen_width=1080, screen_height=2400, package="com.google.android.keep")


def test_a_finish_is_checked_against_the_goal(library):
    match = understand('delete the note titled "Groceries"', library).match
    notes = _screen("Packing list", "Groceries")
    wrong = [_Step(notes, Tap(target=0)), _Step(notes, Finish(status="success"))]
    why = check_result(match, "delete the note titled Groceries", wrong, None)
    assert why is not None and "Groceries" in why
    after = _screen("Packing list")
    right = [_Step(notes, Tap(target=1)), _Step(after, Finish(status="success"))]
    assert check_result(match, "delete the note titled Groceries", right, None) is None
    # the procedure ends with the note gone from the list: a finish with it still there is no success
    kept = [_Step(notes, Tap(target=1)), _Step(notes, Finish(status="success"))]
    assert "still shows" in check_result(match, "delete the note titled Groceries", kept, None)
    alarm = understand("delete my 8:30 alarm", library).match  # its step taps the alarm unquoted
    alarms = _screen("Alarm", "08:30 · Laundry", "Clock")
    tabs = [_Step(alarms, Tap(target=2)), _Step(alarms, Finish(status="success"))]
    assert "nothing named '08:30' was tapped" in check_result(alarm, "delete my 8:30 alarm", tabs, None)


def test_an_answer_must_be_of_the_kind_asked_and_read_off_a_screen(library):
    match = understand("whats ann lees number", library).match
    card = _screen("Ann Lee", "Mobile", "555-0134")
    steps = [_Step(card, Tap(target=0))]
    assert "not a phone number" in check_result(match, "whats ann lees number", steps, "80")
    assert "not on any screen" in check_result(match, "whats ann lees number", steps, "555-0199")
    assert check_result(match, "whats ann lees number", steps, "555-0134") is None
    assert "gave none" in check_result(match, "whats ann lees number", steps, "")


def test_typed_values_must_have_been_typed(library):
    match = understand('text Ann Lee saying "running late"', library).match
    chat = _screen("Ann Lee", "Text message")
    steps = [_Step(chat, Tap(target=0)), _Step(chat, Type(text="running", target=1))]
    assert "never typed" in check_result(match, "text Ann Lee saying running late", steps, None)
    steps.append(_Step(chat, Type(text="running late", target=1)))
    assert check_result(match, "text Ann Lee saying running late", steps, None) is None


def test_exit_statuses_tell_every_ending_apart():
    assert exit_status("finished") == 0
    codes = [exit_status(s) for s in ("unverified", "impossible", "needs_input", "stuck", "stopped", "error")]
    assert len(set(codes)) == len(codes) and 0 not in codes and 2 not in codes
    assert EXIT_STATUS["unverified"] == 7 and EXIT_STATUS["needs_input"] == 9


def test_a_search_that_finds_nothing_makes_the_goal_impossible(library):
    match = understand("call bob", library).match
    assert match.sop.name == "contacts-call" and match.params["name"] == "Bob"
    pkg = "com.android.contacts"

    def field(text: str) -> UINode:
        return UINode(text=text, hint="Search contacts", bounds=Bounds(left=0, top=0, right=1080, bottom=90),
                      class_name="android.widget.EditText", package=pkg, focusable=True, clickable=True)

    def screen(*nodes: UINode) -> Observation:
        return Observation(nodes=nodes, screen_width=1080, screen_height=2400, package=pkg)

    before = screen(field(""))
    why = nothing_found(match, Type(text="Bob", target=0), screen(field("Bob")), before)
    assert why is not None and "nothing named 'Bob'" in why
    row = UINode(text="Bob Ortiz", bounds=Bounds(left=0, top=100, right=1080, bottom=190), clickable=True,
                 class_name="android.widget.TextView", package=pkg)
    assert nothing_found(match, Type(text="Bob", target=0), screen(field("Bob"), row), before) is None
    recipient = UINode(text="", hint="To", bounds=Bounds(left=0, top=0, right=1080, bottom=90),
                       class_name="android.widget.EditText", package=pkg, focusable=True, clickable=True)
    # a field that is not a search (a recipient may be any name): never "impossible"
    assert nothing_found(match, Type(text="Bob", target=0), screen(field("Bob")), screen(recipient)) is None
    assert nothing_found(match, Type(text="hi", target=0), screen(field("hi")), before) is None
