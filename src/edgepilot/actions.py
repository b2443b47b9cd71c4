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
from functools import lru_cache
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from edgepilot.errors import ActionError, ConfigError

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


DeviceKind = Literal["android", "desktop"]

MODIFIERS = ("ctrl", "alt", "shift", "super")
HotkeyName = Literal[
    "ctrl", "alt", "shift", "super",
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m",
    "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z",
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9", "f10", "f11", "f12",
    "enter", "tab", "escape", "space", "backspace", "delete", "insert",
    "home", "end", "page_up", "page_down", "up", "down", "left", "right",
    "minus", "equal", "comma", "period", "slash", "plus",
]
"""Keys a desktop ``hotkey`` may press (names of keys, not the characters they type)."""


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


class Click(_Action):
    """Click an element or a point with the left mouse button."""

    type: Literal["click"] = "click"
    target: Target


class DoubleClick(_Action):
    """Double-click an element or a point (open a file, select a word)."""

    type: Literal["double_click"] = "double_click"
    target: Target


class RightClick(_Action):
    """Click with the right mouse button (opens a context menu)."""

    type: Literal["right_click"] = "right_click"
    target: Target


class Drag(_Action):
    """Press the left button on ``target``, move to ``to`` and release (move, resize, select)."""

    type: Literal["drag"] = "drag"
    target: Target
    to: Target


class Scroll(_Action):
    """Turn the mouse wheel over an element, or over the middle of the screen.

    ``direction`` is the way the view moves: ``down`` shows what is further
    down (the opposite of a finger's ``swipe``). ``amount`` counts wheel clicks.
    """

    type: Literal["scroll"] = "scroll"
    direction: Direction
    target: Target | None = None
    amount: int = Field(default=3, ge=1, le=25, description="wheel clicks")


class Hotkey(_Action):
    """Press keys together, modifiers first (``["ctrl", "s"]``); one key alone is fine (``["page_down"]``)."""

    type: Literal["hotkey"] = "hotkey"
    keys: tuple[HotkeyName, ...] = Field(min_length=1, max_length=4)

    @field_validator("keys")
    @classmethod
    def _modifiers_first(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(keys)) != len(keys):
            raise ValueError(f"a key is named twice in {list(keys)}")
        mods = [k in MODIFIERS for k in keys]
        if mods != sorted(mods, reverse=True):
            raise ValueError(f"modifiers ({', '.join(MODIFIERS)}) come before other keys: {list(keys)}")
        return keys


MOBILE_ACTIONS: tuple[type[_Action], ...] = (Tap, LongPress, Swipe, Type, Key, OpenApp, Wait, Finish)
"""What the decider may choose on a phone."""
DESKTOP_ACTIONS: tuple[type[_Action], ...] = (
    Click, DoubleClick, RightClick, Drag, Scroll, Type, Key, Hotkey, OpenApp, Wait, Finish,
)
"""What the decider may choose on a desktop."""
ACTION_SETS: dict[str, tuple[type[_Action], ...]] = {"android": MOBILE_ACTIONS, "desktop": DESKTOP_ACTIONS}

Action = Annotated[
    Union[Tap, LongPress, Swipe, Type, Key, OpenApp, Wait, Finish,
          Click, DoubleClick, RightClick, Drag, Scroll, Hotkey],
    Field(discriminator="type"),
]
"""Any action a device can carry out (a device refuses the kinds it has no use for with ActionError)."""

_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)


def actions_for(kind: DeviceKind) -> tuple[type[_Action], ...]:
    """The action classes a device of this kind offers, in the order the decider is shown them.

    Raises:
        ConfigError: unknown device kind.
    """
    try:
        return ACTION_SETS[kind]
    except KeyError:
        raise ConfigError(f"unknown device kind {kind!r}; known: {', '.join(ACTION_SETS)}") from None


@lru_cache(maxsize=8)
def _adapter_for(kind: str | None) -> TypeAdapter:
    if kind is None:
        return _ADAPTER
    return TypeAdapter(Annotated[Union[actions_for(kind)], Field(discriminator="type")])  # type: ignore[arg-type, valid-type]


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


def action_json_schema(kind: DeviceKind | None = None) -> dict:
    """The JSON schema of :data:`Action`, from which decoding grammars are built.

    With ``kind``, only the actions of that kind of device (:data:`ACTION_SETS`):
    a phone's decider is never offered a right click, a desktop's never a swipe.

    Unlike pydantic's own schema, ``type`` is required in every branch (it has
    a default in Python, but a model must always say which action it means,
    or ``{}`` would be a valid ``finish``), and the branches are a plain
    ``anyOf`` without the OpenAPI ``discriminator`` keyword, which grammar
    converters do not know.
    """
    schema = _adapter_for(kind).json_schema()
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
