"""The action space: a closed union with bounded fields."""

import pytest

from edgepilot.actions import Finish, Point, Swipe, Tap, Type, action_json_schema, action_to_json, parse_action
from edgepilot.errors import ActionError


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
    ('not json', "action"),
])
def test_invalid_actions_raise_clear_errors(raw, where):
    with pytest.raises(ActionError, match=where):
        parse_action(raw)


def test_round_trip_and_schema():
    action = Type(text="hello world", target=Point(x=5, y=6))
    assert parse_action(action_to_json(action)) == action
    schema = action_json_schema()
    kinds = {d["properties"]["type"]["const"] for d in schema["$defs"].values() if "type" in d.get("properties", {})}
    assert kinds == {"tap", "long_press", "swipe", "type", "key", "open_app", "wait", "finish"}
    assert all("type" in schema["$defs"][ref["$ref"].rsplit("/", 1)[1]]["required"] for ref in schema["anyOf"])
