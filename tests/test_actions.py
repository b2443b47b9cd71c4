"""The action space: a closed union with bounded fields."""

import pytest

from edgepilot.actions import (
    DESKTOP_ACTIONS,
    MOBILE_ACTIONS,
    Click,
    Drag,
    Finish,
    Hotkey,
    Point,
    Scroll,
    Swipe,
    Tap,
    Type,
    action_json_schema,
    action_to_json,
    actions_for,
    parse_action,
)
from edgepilot.errors import ActionError, ConfigError

MOBILE = {"tap", "long_press", "swipe", "type", "key", "open_app", "wait", "finish"}
DESKTOP = {"click", "double_click", "right_click", "drag", "scroll", "type", "key", "hotkey", "open_app", "wait",
           "finish"}


def test_parse_each_kind():
    assert parse_action('{"type": "tap", "target": 3}') == Tap(target=3)
    assert parse_action({"type": "tap", "target": {"x": 10, "y": 20}}).target == Point(x=10, y=20)
    assert parse_action('{"type": "swipe", "direction": "up"}') == Swipe(direction="up")
    assert parse_action('{"type": "type", "text": "hi", "target": 2, "clear": true}').clear
    assert parse_action('{"type": "finish", "answer": "42"}') == Finish(answer="42")
    for raw in ['{"type": "key", "key": "back"}', '{"type": "open_app", "app": "Settings"}',
                '{"type": "wait", "seconds": 1}', '{"type": "long_press", "target": 0}']:
        assert action_to_json(parse_action(raw))


@pytest.mark.parametrize("raw, where", [
    ('{"type": "fly"}', "type"),
    ('{"type": "tap"}', "target"),
    ('{"type": "tap", "target": 3, "extra": 1}', "extra"),
    ('{"type": "tap", "target": -1}', "target"),
    ('{"type": "tap", "target": 100000}', "target"),
    ('{"type": "key", "key": "launch_missiles"}', "key"),
    ('{"type": "type", "text": "' + "x" * 600 + '"}', "text"),
    ('{"type": "drag", "target": 1}', "to"),
    ('{"type": "scroll", "direction": "down", "amount": 0}', "amount"),
    ('{"type": "hotkey", "keys": []}', "keys"),
    ('{"type": "hotkey", "keys": ["ctrl", "a", "b", "c", "d"]}', "keys"),
    ('{"type": "hotkey", "keys": ["s", "ctrl"]}', "modifiers"),
    ('{"type": "hotkey", "keys": ["ctrl", "ctrl"]}', "twice"),
    ('{"type": "hotkey", "keys": ["ctrl", "ß"]}', "keys"),
    ('not json', "action"),
])
def test_invalid_actions_raise_clear_errors(raw, where):
    with pytest.raises(ActionError, match=where):
        parse_action(raw)


def test_round_trip_and_schema():
    action = Type(text="hello world", target=Point(x=5, y=6))
    assert parse_action(action_to_json(action)) == action
    for kind, expected in ((None, MOBILE | DESKTOP), ("android", MOBILE), ("desktop", DESKTOP)):
        schema = action_json_schema(kind)
        assert _kinds(schema) == expected, kind
        assert all("type" in schema["$defs"][ref["$ref"].rsplit("/", 1)[1]]["required"] for ref in schema["anyOf"])
    assert {c.model_fields["type"].default for c in MOBILE_ACTIONS} == MOBILE
    assert {c.model_fields["type"].default for c in DESKTOP_ACTIONS} == DESKTOP
    with pytest.raises(ConfigError, match="unknown device kind 'toaster'"):
        actions_for("toaster")  # type: ignore[arg-type]


def _kinds(schema: dict) -> set[str]:
    return {d["properties"]["type"]["const"] for d in schema["$defs"].values() if "type" in d.get("properties", {})}


def test_desktop_actions_parse_and_round_trip():
    cases = [
        ('{"type": "click", "target": 4}', Click(target=4)),
        ('{"type": "double_click", "target": {"x": 3, "y": 9}}', None),
        ('{"type": "right_click", "target": 0}', None),
        ('{"type": "drag", "target": 1, "to": {"x": 500, "y": 20}}', Drag(target=1, to=Point(x=500, y=20))),
        ('{"type": "scroll", "direction": "down"}', Scroll(direction="down", amount=3)),
        ('{"type": "hotkey", "keys": ["ctrl", "shift", "s"]}', Hotkey(keys=("ctrl", "shift", "s"))),
        ('{"type": "hotkey", "keys": ["page_down"]}', None),
        ('{"type": "type", "text": "héllo wörld ✓"}', Type(text="héllo wörld ✓")),
    ]
    for raw, expected in cases:
        action = parse_action(raw)
        if expected is not None:
            assert action == expected
        assert parse_action(action_to_json(action)) == action
        hash(action)  # frozen, hashable (the hotkey's keys are a tuple)
