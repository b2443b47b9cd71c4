"""The uiautomator reader and observations: real dumps, and hostile or broken ones."""

import time

import pytest

from edgepilot.errors import PerceptionError
from edgepilot.perception import Observation
from edgepilot.perception.android_tree import MAX_DEPTH, parse_bounds, parse_uiautomator_xml
from edgepilot.perception.types import Bounds, UINode
from edgepilot.sim.phone import VirtualPhone

DUMP = """<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>
<hierarchy rotation="0">
  <node index="0" text="" resource-id="" class="android.widget.FrameLayout" package="com.android.settings" content-desc="" checkable="false" checked="false" clickable="false" enabled="true" focusable="false" focused="false" scrollable="false" long-clickable="false" password="false" selected="false" bounds="[0,0][1080,2400]">
    <node index="0" text="" resource-id="com.android.settings:id/row" class="android.widget.LinearLayout" package="com.android.settings" content-desc="" checkable="false" checked="false" clickable="true" enabled="true" focusable="true" focused="false" scrollable="false" long-clickable="false" password="false" selected="false" bounds="[0,200][1080,400]">
      <node index="0" text="Wi-Fi" resource-id="android:id/title" class="android.widget.TextView" package="com.android.settings" content-desc="" checkable="false" checked="false" clickable="false" enabled="true" focusable="false" focused="false" scrollable="false" long-clickable="false" password="false" selected="false" bounds="[40,220][600,300]" />
      <node index="1" text="HomeNet" resource-id="android:id/summary" class="android.widget.TextView" package="com.android.settings" content-desc="" checkable="false" checked="false" clickable="false" enabled="true" focusable="false" focused="false" scrollable="false" long-clickable="false" password="false" selected="false" bounds="[40,300][600,380]" />
    </node>
    <node index="1" text="secret" resource-id="com.android.settings:id/pin" class="android.widget.EditText" package="com.android.settings" content-desc="" checkable="false" checked="false" clickable="true" enabled="true" focusable="true" focused="true" scrollable="false" long-clickable="false" password="true" selected="false" bounds="[0,500][1080,650]" />
  </node>
</hierarchy>"""


def test_parses_nodes_flags_and_parents():
    tree = parse_uiautomator_xml(DUMP)
    assert tree.package == "com.android.settings"
    assert len(tree.nodes) == 5
    row, title = tree.nodes[1], tree.nodes[2]
    assert row.clickable and row.resource_id.endswith("/row") and row.bounds.center == (540, 300)
    assert title.parent == 1 and title.depth == 2
    pin = tree.nodes[4]
    assert pin.password and pin.focused and pin.editable


def test_observation_folds_row_text_and_hides_passwords():
    tree = parse_uiautomator_xml(DUMP)
    obs = Observation(nodes=tree.nodes, package=tree.package, screen_width=1080, screen_height=2400)
    assert [e.resource_id.rsplit("/", 1)[-1] for e in obs.elements] == ["row", "pin"]
    assert obs.elements[0].text == "Wi-Fi\nHomeNet"
    text = obs.to_text()
    assert '[0] LinearLayout "Wi-Fi · HomeNet" id=row (clickable)' in text
    assert "secret" not in text and "(editable, password, focused, clickable)" in text
    assert obs.focused_element == 1
    assert obs.element_at(540, 260)[0] == 0
    with pytest.raises(IndexError, match="elements 0..1"):
        obs.element(5)


def test_a_copy_with_other_nodes_derives_its_own_elements():
    tree = parse_uiautomator_xml(DUMP)
    obs = Observation(nodes=tree.nodes, package=tree.package, screen_width=1080, screen_height=2400)
    assert len(obs.elements) == 2  # computed and cached on the original
    fewer = obs.model_copy(update={"nodes": tuple(n for n in obs.nodes if not n.password)})
    assert [e.resource_id.rsplit("/", 1)[-1] for e in fewer.elements] == ["row"]
    assert len(obs.elements) == 2


def test_noise_around_the_xml_is_ignored():
    tree = parse_uiautomator_xml("UI hierchary dumped to: /dev/tty\n" + DUMP + "\nextra")
    assert len(tree.nodes) == 5


@pytest.mark.parametrize("bad, message", [
    ("", "no uiautomator hierarchy"),
    ("not xml at all", "no uiautomator hierarchy"),
    (DUMP[: len(DUMP) // 2], "malformed"),
    ("<hierarchy><node bounds='[0,0][1,1]'></hierarchy>", "malformed"),
    ("<?xml version='1.0'?><root/>", "expected <hierarchy>"),
    ("<hierarchy><node bounds='nonsense'/></hierarchy>", "bad bounds"),
])
def test_broken_dumps_raise_perception_error(bad, message):
    with pytest.raises(PerceptionError, match=message):
        parse_uiautomator_xml(bad)


def test_entity_expansion_is_refused_quickly():
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(f'<!ENTITY lol{i} "{"&lol%s;" % (i - 1 if i > 1 else "") * 10}">' for i in range(1, 10))
            + ']><hierarchy><node text="&lol9;" bounds="[0,0][1,1]"/></hierarchy>')
    start = time.perf_counter()
    with pytest.raises(PerceptionError, match="DTD"):
        parse_uiautomator_xml(bomb)
    assert time.perf_counter() - start < 1.0


def test_external_entities_are_refused():
    xxe = ('<?xml version="1.0"?><!DOCTYPE h [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           '<hierarchy><node text="&x;" bounds="[0,0][1,1]"/></hierarchy>')
    with pytest.raises(PerceptionError):
        parse_uiautomator_xml(xxe)


def test_huge_attribute_is_refused():
    huge = f'<hierarchy><node text="{"a" * 200_000}" bounds="[0,0][1,1]"/></hierarchy>'
    with pytest.raises(PerceptionError, match="characters long"):
        parse_uiautomator_xml(huge)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 5, 200_000])
def test_deep_nesting_is_refused_without_recursion(depth):
    deep = "<hierarchy>" + '<node bounds="[0,0][1,1]">' * depth + "</node>" * depth + "</hierarchy>"
    with pytest.raises(PerceptionError, match="deeper than"):
        parse_uiautomator_xml(deep)


def test_bounds_parser():
    assert parse_bounds("[1,2][30,40]").center == (15, 21)
    with pytest.raises(PerceptionError):
        parse_bounds("[1,2,3]")


def test_every_virtual_phone_screen_round_trips_through_the_reader():
    phone = VirtualPhone()
    for package in phone.packages():
        if package not in phone.apps or not phone.apps[package].launchable:
            continue
        phone.start_app(package)
        tree = parse_uiautomator_xml(phone.dump_xml())
        obs = Observation(nodes=tree.nodes, package=tree.package, screen_width=1080, screen_height=2400)
        assert obs.package == package
        assert obs.elements, package
        assert phone.screencap_png().startswith(b"\x89PNG")


def test_screen_diff_ignores_the_status_bar_clock():
    from edgepilot.perception import Bounds, Observation, UINode
    from edgepilot.perception.diff import screen_diff

    def screen(clock: str, label: str = "Wi-Fi") -> Observation:
        return Observation(nodes=(
            UINode(text=clock, package="com.android.systemui", bounds=Bounds(left=40, top=10, right=160, bottom=80)),
            UINode(text=label, package="com.android.settings", clickable=True,
                   bounds=Bounds(left=0, top=300, right=1080, bottom=420)),
        ), package="com.android.settings", screen_width=1080, screen_height=2400)

    assert screen_diff(screen("9:41"), screen("9:42")).same
    assert screen_diff(screen("9:41 AM"), screen("10:02 PM")).same
    changed = screen_diff(screen("9:41"), screen("9:42", "Bluetooth"))
    assert not changed.same and "Bluetooth" in changed.summary()
    assert "9:42" not in changed.summary()


def test_a_clock_in_a_desktop_panel_at_the_top_ticks_and_changes_nothing():
    from edgepilot.perception.diff import screen_diff

    def desk(time: str) -> Observation:
        return Observation(nodes=(
            UINode(bounds=Bounds(left=1100, top=0, right=1280, bottom=30), text=time, class_name="Label",
                   package="xfce4-panel"),
            UINode(bounds=Bounds(left=0, top=100, right=400, bottom=160), text="Save", class_name="PushButton",
                   clickable=True, package="mousepad"),
        ), package="mousepad", screen_width=1280, screen_height=800)

    assert screen_diff(desk("10:41"), desk("10:42")).same
    assert not screen_diff(desk("10:41"), desk("10:41").model_copy(update={"nodes": desk("x").nodes[1:]})).same
