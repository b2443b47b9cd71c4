"""The action space: one closed, discriminated union on ``type``.

A target is either an element index of the current observation (preferred:
small models ground far better on indices than on pixels) or a pixel
:class:`Point`. Every number and string is bounded, so that the JSON schema of
:data:`Action` (the decoding grammar of the decider) cannot run away.

    >>> parse_action('{"type": "tap", "target": 3}')
    Tap(type='tap', target=3)
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from edgepilot.errors import ActionError

MAX_INDEX = 999
MAX_COORD = 16_384
MAX_TEXT = 500


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Point(_Action):
    """A pixel on the screen."""

    x: int = Field(ge=0, le=MAX_COORD)
    y: int = Field(ge=0, le=MAX_COORD)


Index = Annotated[int, Field(ge=0, le=MAX_INDEX, description="element index in the current observation")]
Target = Union[Index, Point]

Direction = Literal["up", "down", "left", "right"]
KeyName = Literal[
    "back", "home", "enter", "delete", "tab", "space", "escape",
    "app_switch", "menu", "search", "volume_up", "volume_down", "power",
]


class Tap(_Action):
    """Tap an element or a point."""

    type: Literal["tap"] = "tap"
    target: Target


class LongPress(_Action):
    """Press and hold an element or a point."""

    type: Literal["long_press"] = "long_press"
    target: Target
    duration_ms: int = Field(default=800, ge=300, le=5000)


class Swipe(_Action):
    """Move a finger across the screen.

    ``direction`` is the way the finger moves: ``up`` scrolls a list towards its
    end, ``down`` from the top edge opens the notification shade. With a
    ``target`` the swipe runs across that element; without one, across the
    middle of the screen.
    """

    type: Literal["swipe"] = "swipe"
    direction: Direction
    target: Target | None = None
    distance: float = Field(default=0.6, gt=0.0, le=1.0, description="share of the span to cover")


class Type(_Action):
    """Type text with the soft keyboard.

    Types into the focused field; with a ``target`` the field is tapped first.
    ``clear`` empties the field before typing.
    """

    type: Literal["type"] = "type"
    text: str = Field(max_length=MAX_TEXT)
    target: Target | None = None
    clear: bool = False


class Key(_Action):
    """Press a key (system navigation or keyboard)."""

    type: Literal["key"] = "key"
    key: KeyName


class OpenApp(_Action):
    """Launch an app by its label ("Settings") or package name."""

    type: Literal["open_app"] = "open_app"
    app: str = Field(min_length=1, max_length=100)


class Wait(_Action):
    """Do nothing for a while (an app is loading)."""

    type: Literal["wait"] = "wait"
    seconds: float = Field(default=1.0, ge=0.0, le=30.0)


class Finish(_Action):
    """End the task: done, or impossible; ``answer`` carries what a question asked."""

    type: Literal["finish"] = "finish"
    status: Literal["success", "failure"] = "success"
    answer: str | None = Field(default=None, max_length=MAX_TEXT)


MOBILE_ACTIONS = (Tap, LongPress, Swipe, Type, Key, OpenApp, Wait, Finish)

Action = Annotated[
    Union[Tap, LongPress, Swipe, Type, Key, OpenApp, Wait, Finish],
    Field(discriminator="type"),
]
"""Any action a device can carry out."""

_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)


def parse_action(data: str | bytes | dict) -> Action:
    """Parse an action from JSON text or a dict.

    Raises:
        ActionError: the data is not one valid action; the message says which field.
    """
    try:
        if isinstance(data, dict):
            return _ADAPTER.validate_python(data)
        return _ADAPTER.validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "action"
        raise ActionError(f"not a valid action ({where}: {first['msg']}); got {str(data)[:200]}") from exc


def action_json_schema() -> dict:
    """The JSON schema of :data:`Action`, from which decoding grammars are built.

    Unlike pydantic's own schema, ``type`` is required in every branch (it has
    a default in Python, but a model must always say which action it means,
    or ``{}`` would be a valid ``finish``), and the branches are a plain
    ``anyOf`` without the OpenAPI ``discriminator`` keyword, which grammar
    converters do not know.
    """
    schema = _ADAPTER.json_schema()
    schema.pop("discriminator", None)
    schema["anyOf"] = schema.pop("oneOf")
    for definition in schema["$defs"].values():
        props = definition.get("properties", {})
        if "type" in props and "const" in props["type"]:
            props["type"].pop("default", None)
            definition["required"] = ["type", *[r for r in definition.get("required", []) if r != "type"]]
    return schema


def action_to_json(action: Action) -> str:
    """Compact JSON of an action, the exact form a model is trained to emit."""
    return json.dumps(action.model_dump(mode="json", exclude_defaults=False), separators=(", ", ": "))
