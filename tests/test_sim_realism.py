"""The virtual phone's dumps look like a real phone's: a live status bar, an on-screen keyboard window, hints,
NAF nodes, non-Latin text, nested scrollables, overlays. Everything is read back from the uiautomator dump."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from edgepilot.perception.android_tree import parse_uiautomator_xml
from edgepilot.sim.phone import LATIN_IME, SYSTEMUI, VirtualPhone

CONTACTS = "com.android.contacts"
BANK = "com.example.bank"


@pytest.fixture
def phone() -> VirtualPhone:
    return VirtualPhone()


def nodes(phone: VirtualPhone):
    return parse_uiautomator_xml(phone.dump_xml()).nodes


def raw(phone: VirtualPhone) -> list[dict[str, str]]:
    """Every node's attributes exactly as the dump writes them."""
    root = ET.fromstring(phone.dump_xml().split("\n", 1)[1])
    return [n.attrib for n in root.iter("node")]


def by_rid(phone: VirtualPhone, rid: str):
    hits = [n for n in nodes(phone) if n.resource_id.endswith(f":id/{rid}")]
    assert hits, f"no node with id {rid}"
    return hits[0]


def keys(phone: VirtualPhone) -> dict[str, object]:
    """The keyboard's keys by their label (content-desc, else text)."""
    return {n.content_desc or n.text: n for n in nodes(phone) if n.package == LATIN_IME and n.clickable}


def tap_node(phone: VirtualPhone, node) -> None:
    phone.tap(*node.bounds.center)


def tap_key(phone: VirtualPhone, label: str) -> None:
    tap_node(phone, keys(phone)[label])


def focus(phone: VirtualPhone, rid: str) -> None:
    tap_node(phone, by_rid(phone, rid))
    assert phone.keyboard_shown


# ---------------------------------------------------------------- 1. the status bar


def test_the_clock_starts_at_9_41_and_ticks_a_minute_every_three_inputs(phone):
    assert by_rid(phone, "clock").text == "9:41"
    phone.tap(540, 1200)
    phone.tap(540, 1200)
    assert by_rid(phone, "clock").text == "9:41"
    phone.tap(540, 1200)
    assert by_rid(phone, "clock").text == "9:42"
    for _ in range(3):
        phone.keyevent(4)  # back, at home: nothing else happens
    assert by_rid(phone, "clock").text == "9:43"
    phone.input_text("x")
    phone.swipe(540, 1800, 540, 900)
    phone.broadcast("ADB_INPUT_TEXT", {"msg": "y"})
    assert by_rid(phone, "clock").text == "9:44"
    clock = by_rid(phone, "clock")
    assert clock.package == SYSTEMUI and clock.resource_id == f"{SYSTEMUI}:id/clock"
    phone.reset()
    assert by_rid(phone, "clock").text == "9:41"


def test_a_short_swipe_that_is_a_tap_counts_once(phone):
    for _ in range(3):
        phone.swipe(540, 1200, 545, 1205)  # a tap sent as a swipe
    assert phone.input_count == 3
    assert by_rid(phone, "clock").text == "9:42"


def test_the_battery_drops_a_percent_every_ten_inputs(phone):
    assert by_rid(phone, "battery_image").content_desc == "Battery 87 percent."
    assert by_rid(phone, "battery_percentage").text == "87%"
    for _ in range(9):
        phone.tap(540, 1200)
    assert by_rid(phone, "battery_percentage").text == "87%"
    phone.tap(540, 1200)
    assert by_rid(phone, "battery_image").content_desc == "Battery 86 percent."
    assert by_rid(phone, "battery_percentage").text == "86%"
    assert by_rid(phone, "battery").package == SYSTEMUI


def test_settings_shows_the_status_bar_battery(phone):
    for _ in range(20):
        phone.keyevent(4)
    phone.start_app("com.android.settings")
    row = by_rid(phone, "battery")  # the status bar's container comes first
    assert row.package == SYSTEMUI
    assert any(n.text == "85%" and n.package == "com.android.settings" for n in nodes(phone))


def test_the_wifi_icon_follows_settings(phone):
    assert by_rid(phone, "wifi_signal").content_desc == "Wifi signal full."
    phone.app("settings").state.wifi = False
    phone.changed()
    assert by_rid(phone, "wifi_signal").content_desc == "No internet"
    assert not [n for n in nodes(phone) if n.resource_id.endswith(":id/airplane")]
    phone.app("settings").state.airplane_mode = True
    phone.changed()
    assert by_rid(phone, "airplane").content_desc == "Airplane mode."


def test_one_status_bar_icon_per_pending_notification(phone):
    assert not [n for n in nodes(phone) if n.resource_id.endswith(":id/notification_icon")]
    phone.notify("com.google.android.apps.messaging", "Ann", "hi")
    phone.notify(CONTACTS, "Sync", "done")
    icons = [n for n in nodes(phone) if n.resource_id == f"{SYSTEMUI}:id/notification_icon"]
    assert [n.content_desc for n in icons] == ["Messages notification", "Contacts notification"]
    assert all(n.class_name == "android.widget.ImageView" and n.bounds.bottom <= 80 for n in icons)
    for i in range(5):
        phone.notify(CONTACTS, f"n{i}", "")
    assert len([n for n in nodes(phone) if n.resource_id.endswith(":id/notification_icon")]) == 4
    assert by_rid(phone, "notification_more").content_desc == "3 more notifications"


def test_the_same_inputs_give_the_same_dumps():
    a, b = VirtualPhone(), VirtualPhone()
    for p in (a, b):
        p.start_app(CONTACTS)
        focus(p, "search")
        tap_key(p, "a")
        tap_key(p, "n")
        p.swipe(540, 1800, 540, 900)
        p.notify(CONTACTS, "x", "y")
        p.keyevent(4)
    assert a.dump_xml() == b.dump_xml()
    assert a.screencap_png() == b.screencap_png()
    assert by_rid(a, "clock").text == "9:42"


# ---------------------------------------------------------------- 2. the on-screen keyboard


def test_the_keyboard_window_is_in_the_dump_exactly_while_a_field_has_focus(phone):
    phone.start_app(CONTACTS)
    assert LATIN_IME in phone.packages()
    assert not [n for n in nodes(phone) if n.package == LATIN_IME]
    focus(phone, "search")
    tree = parse_uiautomator_xml(phone.dump_xml())
    roots = [n for n in tree.nodes if n.parent is None]
    assert [r.package for r in roots] == [SYSTEMUI, CONTACTS, LATIN_IME, SYSTEMUI]
    kb = roots[2]
    assert kb.class_name == "android.widget.FrameLayout"
    assert (kb.bounds.left, kb.bounds.top, kb.bounds.right, kb.bounds.bottom) == (0, 2400 - 130 - 820, 1080, 2270)
    assert roots[1].bounds.bottom <= kb.bounds.top  # the app is laid out above it
    labels = keys(phone)
    assert set("abcdefghijklmnopqrstuvwxyz1234567890,.") <= set(labels)
    assert {"Shift", "Delete", "Symbols", "Space", "Search"} <= set(labels)  # a search field: the action is Search
    assert labels["Space"].text == "" and labels["1"].text == "1" and labels["q"].text == ""
    row_tops = sorted({n.bounds.top for n in labels.values()})
    assert len(row_tops) == 5  # digits, three letter rows, the bottom row
    assert labels["q"].bounds.top < labels["a"].bounds.top < labels["z"].bounds.top < labels["Space"].bounds.top
    phone.keyevent(4)  # the first back hides it
    assert not [n for n in nodes(phone) if n.package == LATIN_IME]


def test_tapping_keys_types_into_the_focused_field(phone):
    phone.start_app(CONTACTS)
    focus(phone, "search")
    for label in ("Shift", "A", "l", "Space", "x", "Delete", "Delete"):
        tap_key(phone, label)
    assert phone.app("contacts").form.get("search") == "Al"
    assert by_rid(phone, "search").text == "Al"
    tap_key(phone, "Symbols")
    assert "@" in keys(phone) and "Letters" in keys(phone)
    tap_key(phone, "@")
    tap_key(phone, "Letters")
    tap_key(phone, "i")
    assert phone.app("contacts").form.get("search") == "Al@i"


def test_the_enter_key_submits_like_keycode_enter(phone):
    phone.start_app(BANK)
    focus(phone, "pin")
    assert "Enter" in keys(phone)
    for digit in "2468":
        tap_key(phone, digit)
    tap_key(phone, "Enter")
    assert phone.app("bank").route.name != "login"
    assert not phone.keyboard_shown


def test_taps_between_keys_reach_nothing_below(phone):
    phone.start_app(CONTACTS)
    focus(phone, "search")
    before = phone.app("contacts").form.get("search")
    phone.tap(20, 2400 - 130 - 820 + 400)  # the gap left of "a"
    assert phone.app("contacts").form.get("search") == before
    assert phone.keyboard_shown


# ---------------------------------------------------------------- 3. hints, NAF, visibility, drawing order


def test_an_empty_field_dumps_its_hint_as_text_and_as_the_hint_attribute(phone):
    phone.start_app(CONTACTS)
    search = next(a for a in raw(phone) if a["resource-id"].endswith(":id/search"))
    assert search["text"] == "Search contacts" and search["hint"] == "Search contacts"
    focus(phone, "search")
    tap_key(phone, "b")
    search = next(a for a in raw(phone) if a["resource-id"].endswith(":id/search"))
    assert search["text"] == "b" and search["hint"] == "Search contacts"
    assert all("hint" not in a for a in raw(phone) if a["class"] != "android.widget.EditText")


def test_the_nav_bar_glyphs_are_not_hints(phone):
    back = next(a for a in raw(phone) if a["resource-id"].endswith(":id/back"))
    assert "hint" not in back and back["content-desc"] == "Back"


def test_clickable_nodes_with_no_label_are_naf(phone):
    attrs = raw(phone)
    assert all(a.get("NAF") != "true" or (a["clickable"] == "true" and not a["text"] and not a["content-desc"])
               for a in attrs)
    labelled = next(a for a in attrs if a["content-desc"] == "Back")
    assert "NAF" not in labelled


def test_visible_to_user_and_drawing_order_are_written(phone):
    phone.start_app(CONTACTS)
    attrs = raw(phone)
    assert all(a["visible-to-user"] in ("true", "false") for a in attrs)
    assert all(a["drawing-order"].isdigit() for a in attrs)
    roots = ET.fromstring(phone.dump_xml().split("\n", 1)[1])
    assert [w.attrib["drawing-order"] for w in roots] == ["0", "0", "0"]
    app = roots[1]
    assert [c.attrib["drawing-order"] for c in app] == [str(i + 1) for i in range(len(app))]


# ---------------------------------------------------------------- 4. content like real apps

NOTES = "com.google.android.keep"


def test_non_latin_and_emoji_text_reach_the_dump(phone):
    phone.start_app(CONTACTS)
    for _ in range(4):
        phone.swipe(540, 1800, 540, 600)
    assert any(n.text.startswith("王小明") for n in nodes(phone))
    phone.start_app(NOTES)
    assert any(n.text == "Weekend 🌞" for n in nodes(phone))
    assert "Weekend 🌞" in phone.dump_xml()  # written as UTF-8, not as escapes
    mom = next(t for t in phone.snapshot()["messages"]["threads"] if t["contact"] == "Mom")
    assert mom["messages"][-1]["text"] == "Love you ❤️"


def test_an_unlabelled_overflow_button_is_naf_and_harmless(phone):
    phone.start_app(NOTES)
    more = next(a for a in raw(phone) if a["resource-id"] == f"{NOTES}:id/more_options")
    assert more["NAF"] == "true" and more["clickable"] == "true"
    assert more["text"] == "" and more["content-desc"] == "" and more["class"] == "android.widget.ImageButton"
    before = phone.snapshot()
    tap_node(phone, by_rid(phone, "more_options"))
    assert phone.snapshot() == before


def test_a_horizontal_chip_row_scrolls_inside_the_vertical_list(phone):
    phone.start_app(NOTES)
    tree = nodes(phone)
    row = next(i for i, n in enumerate(tree) if n.resource_id == f"{NOTES}:id/label_chips")
    assert tree[row].scrollable and tree[row].class_name == "android.widget.HorizontalScrollView"
    assert any(n.scrollable for n in tree[:row] if n.package == NOTES)  # the page's list holds it
    chips = [n for n in tree if n.parent == row]
    assert chips[0].text == "All notes" and chips[0].selected
    assert chips[-1].bounds.width == 0  # off screen to the right, cut at the edge
    hidden = [a for a in raw(phone) if a["text"] == "Archive"]
    assert hidden[0]["visible-to-user"] == "false"
    y = tree[row].bounds.center[1]
    phone.swipe(900, y, 200, y)
    after = [n for n in nodes(phone) if n.resource_id == f"{NOTES}:id/chip"]
    assert after[0].bounds.width == 0 and after[-1].bounds.right == 1080 and after[-1].bounds.width > 100
    notes_before = phone.snapshot()["notes"]["notes"]
    tap_node(phone, after[-1])
    assert [n.text for n in nodes(phone) if n.resource_id == f"{NOTES}:id/chip" and n.selected] == ["Archive"]
    assert phone.snapshot()["notes"]["notes"] == notes_before  # a chip filters nothing


# ---------------------------------------------------------------- rotation


def test_the_phone_turns_to_landscape_over_adb_and_the_agent_sees_and_acts_on_it(served):
    from edgepilot.actions import Tap

    phone, _, device = served
    assert device.transport.shell("settings put system user_rotation 1") == ""
    assert device.transport.shell("wm size").strip() == "Physical size: 1080x2400", "wm size stays natural"
    assert device.transport.shell("wm user-rotation").strip() == "lock 1"
    obs = device.observe()
    assert (obs.screen_width, obs.screen_height) == (2400, 1080)
    assert parse_uiautomator_xml(phone.dump_xml()).rotation == 1
    assert all(n.bounds.right <= 2400 and n.bounds.bottom <= 1080 for n in obs.elements)
    assert [n.label for n in obs.elements[:2]] == ["Wifi signal full.\nBattery 87 percent.\n87%", "9:41"], \
        "the status bar still folds when the screen is short"
    import io

    from PIL import Image
    assert Image.open(io.BytesIO(obs.screenshot_png)).size == (2400, 1080)
    device.act(Tap(target=obs.find(text="Settings")[0]))
    obs = device.observe()
    network = next(i for i, n in enumerate(obs.elements) if n.text.startswith("Network & internet"))
    assert obs.elements[network].bounds.right == 2400, "rows span the landscape width"
    device.act(Tap(target=network))
    assert phone.current.route.name != "main"
    device.transport.shell("wm user-rotation lock 0")
    assert (device.observe().screen_width, device.observe().screen_height) == (1080, 2400)
    assert "user_rotation" in device.transport.shell("settings put system user_rotation 7")


def test_a_reset_turns_the_phone_upright_again(phone):
    phone.rotate(3)
    assert (phone.width, phone.height) == (2400, 1080)
    phone.reset()
    assert phone.rotation == 0 and (phone.width, phone.height) == (1080, 2400)
