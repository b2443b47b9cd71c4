"""Notes, Browser and Bank on the virtual phone: real flows driven by taps and typing.

Every interaction goes through the phone's input API at element centers taken
from the parsed uiautomator dump, as an agent would; the oracle runs each task
template of these apps the same way.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from edgepilot.perception import Observation
from edgepilot.perception.android_tree import parse_uiautomator_xml
from edgepilot.sim.apps.bank import Bank, parse_amount
from edgepilot.sim.apps.browser import Browser, normalize
from edgepilot.sim.apps.notes import Notes
from edgepilot.sim.phone import VirtualPhone
from edgepilot.sim.tasks.oracle import select

# ---------------------------------------------------------------- driving helpers


def observe(phone: VirtualPhone) -> Observation:
    tree = parse_uiautomator_xml(phone.dump_xml())
    return Observation(nodes=tree.nodes, package=tree.package, screen_width=1080, screen_height=2400)


def tap(phone: VirtualPhone, **selector) -> None:
    obs = observe(phone)
    hits = select(obs, selector)
    assert hits, f"nothing matches {selector} on:\n{obs.to_text()}"
    phone.tap(*obs.elements[hits[0]].bounds.center)


def type_into(phone: VirtualPhone, text: str, **selector) -> None:
    tap(phone, **selector)
    phone.input_text(text)


def texts(phone: VirtualPhone) -> list[str]:
    """Every line of text on the screen (list rows fold their children's lines into one element)."""
    return [line for n in observe(phone).elements for line in n.text.splitlines() if line.strip()]


def check_screen(phone: VirtualPhone) -> None:
    """The dump parses and the screencap is a PNG."""
    assert observe(phone).elements
    assert phone.screencap_png().startswith(b"\x89PNG")


@pytest.fixture
def phone() -> VirtualPhone:
    return VirtualPhone()


# ---------------------------------------------------------------- Notes


def test_notes_create_edit_and_delete(phone):
    phone.start_app(Notes.package)
    check_screen(phone)
    tap(phone, desc="New note")
    type_into(phone, "Errands", id="editable_title")
    type_into(phone, "Post office", id="edit_note_text")
    phone.keyevent(66)
    phone.input_text("Bank")
    check_screen(phone)
    tap(phone, id="menu_save")
    notes = phone.snapshot()["notes"]
    assert notes["screen"] == "main"
    assert notes["notes"][-1]["title"] == "Errands"
    assert notes["notes"][-1]["body"] == "Post office\nBank"
    assert "Post office" in texts(phone)  # the list shows the first line

    tap(phone, text="Errands")
    type_into(phone, " now", id="editable_title")
    tap(phone, id="menu_save")
    assert phone.snapshot()["notes"]["notes"][-1]["title"] == "Errands now"

    count = len(phone.snapshot()["notes"]["notes"])
    tap(phone, text="Errands now")
    tap(phone, id="menu_delete")
    check_screen(phone)
    tap(phone, text="Cancel")
    assert len(phone.snapshot()["notes"]["notes"]) == count
    tap(phone, id="menu_delete")
    tap(phone, text="Delete")
    notes = phone.snapshot()["notes"]
    assert len(notes["notes"]) == count - 1 and notes["screen"] == "main"
    assert all(n["title"] != "Errands now" for n in notes["notes"])


def test_notes_empty_note_is_discarded_and_back_discards_edits(phone):
    phone.start_app(Notes.package)
    before = phone.snapshot()["notes"]["notes"]
    tap(phone, desc="New note")
    tap(phone, id="menu_save")
    assert "Empty note discarded" in texts(phone)
    assert phone.snapshot()["notes"]["notes"] == before
    tap(phone, text="Chores")
    type_into(phone, "Vacuum", id="edit_note_text")
    phone.keyevent(4)  # hides the keyboard
    phone.keyevent(4)  # leaves the editor without saving
    assert phone.snapshot()["notes"]["notes"] == before


def test_notes_list_scrolls_to_the_oldest_note(phone):
    phone.start_app(Notes.package)
    assert "Groceries" not in texts(phone)
    phone.swipe(540, 1800, 540, 600)
    assert "Groceries" in texts(phone)


# ---------------------------------------------------------------- Browser


def test_browser_address_bar_links_and_back(phone):
    phone.start_app(Browser.package)
    check_screen(phone)
    type_into(phone, "https://www.Library.example/", id="url_bar")
    phone.keyevent(66)
    shown = texts(phone)
    assert "Riverside Public Library" in shown and "Sunday: Closed" in shown
    tap(phone, text="Events")
    assert phone.snapshot()["browser"]["url"] == "library.example/events"
    phone.keyevent(4)
    assert phone.snapshot()["browser"]["url"] == "library.example"
    type_into(phone, "nowhere.example", id="url_bar")
    tap(phone, text="Go")
    assert "This site can\u2019t be reached" in texts(phone)
    state = phone.snapshot()["browser"]
    assert state["history"] == ["library.example", "library.example/events", "nowhere.example"]
    phone.keyevent(4)
    phone.keyevent(4)
    assert phone.snapshot()["browser"]["url"] == "chrome://newtab"
    tap(phone, text="Weather")
    assert any(t.startswith("Monday: Sunny") for t in texts(phone))


def test_browser_shop_checkout_is_secure_and_records_the_order(phone):
    phone.start_app(Browser.package)
    tap(phone, text="Shop")
    tap(phone, text="Desk lamp")
    tap(phone, text="Add to cart")
    tap(phone, text="Add to cart")
    tap(phone, text="View cart")
    assert "Qty 2 \u00b7 $65.50" in texts(phone)
    tap(phone, text="Checkout")
    assert phone.secure
    png = phone.screencap_png()
    assert png.startswith(b"\x89PNG")
    check_screen(phone)
    type_into(phone, "4111 1111", id="card_number")
    type_into(phone, "Ann Lee", id="card_name")
    tap(phone, text="Pay $65.50")
    assert phone.snapshot()["browser"]["orders"] == []  # too short a card number
    type_into(phone, " 3456 5678", id="card_number")
    phone.keyevent(4)
    tap(phone, text="Pay $65.50")
    state = phone.snapshot()["browser"]
    assert state["cart"] == []
    (order,) = state["orders"]
    assert order["card_last4"] == "5678" and order["total"] == 65.5 and order["name"] == "Ann Lee"
    assert order["items"][0]["qty"] == 2
    assert not phone.secure
    assert f"Order number: {order['id']}" in texts(phone)


def test_browser_normalize():
    assert normalize(" HTTPS://www.Shop.example/ ") == "shop.example"
    assert normalize("chrome://newtab/") == "chrome://newtab"


# ---------------------------------------------------------------- Bank


def test_bank_login_lockout(phone):
    phone.start_app(Bank.package)
    assert phone.secure
    check_screen(phone)
    assert Image.open(io.BytesIO(phone.screencap_png())).convert("L").getbbox() is None  # FLAG_SECURE: black
    type_into(phone, "12", id="pin")
    phone.keyevent(66)
    assert phone.snapshot()["bank"]["failed_attempts"] == 0  # too short: not an attempt
    for _ in range(3):
        type_into(phone, "1111", id="pin")
        tap(phone, text="Log in")
    bank = phone.snapshot()["bank"]
    assert bank["locked"] and bank["screen"] == "locked" and not bank["logged_in"]
    assert "Locked" in texts(phone)
    phone.keyevent(3)
    phone.start_app(Bank.package)
    assert phone.snapshot()["bank"]["screen"] == "locked"


def test_bank_transfer_flow(phone):
    phone.start_app(Bank.package)
    type_into(phone, "2468", id="pin")
    tap(phone, text="Log in")
    assert phone.snapshot()["bank"]["logged_in"]
    assert "$2,418.35" in texts(phone)
    tap(phone, text="Checking")
    assert "Green Grocer Market" in texts(phone)
    phone.keyevent(4)
    tap(phone, text="Transfer money")
    tap(phone, text="Mia Thompson")
    type_into(phone, "5000", id="amount")
    phone.keyevent(66)
    assert phone.snapshot()["bank"]["screen"] == "transfer"  # insufficient funds in Checking
    phone.keyevent(4)  # hide the keyboard
    tap(phone, desc="Savings")
    phone.keyevent(66)
    assert phone.snapshot()["bank"]["screen"] == "transfer"  # no field focused: enter does nothing
    tap(phone, text="Review")
    assert "Send $5,000.00 to Mia Thompson?" in texts(phone)
    tap(phone, text="Cancel")
    assert phone.snapshot()["bank"]["screen"] == "transfer"
    tap(phone, text="Review")
    check_screen(phone)
    tap(phone, text="Confirm transfer")
    bank = phone.snapshot()["bank"]
    assert bank["transfers"] == [{"id": 1, "to": "Mia Thompson", "amount": 5000.0, "from_account": "Savings"}]
    assert bank["accounts"][1]["balance"] == 5250.0
    tap(phone, text="Done")
    tap(phone, text="Log out")
    assert phone.snapshot()["bank"]["screen"] == "login"


def test_bank_typed_recipient_and_parse_amount(phone):
    assert parse_amount("$1,250.5") == 1250.5
    assert parse_amount("0") is None and parse_amount("12.345") is None and parse_amount("abc") is None
    phone.start_app(Bank.package)
    type_into(phone, "2468", id="pin")
    phone.keyevent(66)
    tap(phone, text="Transfer money")
    type_into(phone, "Zed Quinn", id="recipient")
    type_into(phone, "42", id="amount")
    phone.keyevent(66)
    tap(phone, text="Confirm transfer")
    assert phone.snapshot()["bank"]["transfers"][0]["to"] == "Zed Quinn"
    assert phone.snapshot()["bank"]["accounts"][0]["balance"] == 2376.35


def test_states_round_trip(phone):
    for app in (phone.app("notes"), phone.app("browser"), phone.app("bank")):
        data = app.snapshot()
        app.load(data)
        assert app.snapshot() == data
