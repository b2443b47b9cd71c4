"""What an action does to the device, read from the screen it was decided on.

Rules judge effects, not spellings. A tap on Send, a long press on it, a swipe
shorter than the touch slop that starts on it, a tap on the pixel at its
centre, ``type`` with empty text and Send as the target (the controller taps the
target first), ENTER in the message field next to it and a newline typed there
all *activate Send*, so every one of them meets the same rules and gets the
same verdict. :func:`effects_of` rewrites one action into its effects:

========== =====================================================================================
activate   a non-editable element is pressed (tap, long press, clicks, a tiny swipe, ``type`` on a
           non-editable target, a form submitted with ENTER or a typed newline: its submit button)
focus      an editable field is pressed (the caret moves there; nothing is sent)
enter_text text goes into a field
dismiss    a swipe across a list item (apps delete or archive items that way)
scroll     a swipe or wheel turn that moves content
key        a key that submits nothing (back, home, volume...)
hotkey     a desktop key chord
drag       a mouse drag (from the element under its start)
open_app   an app is launched
wait       nothing
finish     the run ends
unknown    the screen does not say what the action does; the engine asks the user
========== =====================================================================================

The policy language's ``actions:`` names stand for the effects of those
actions (``tap`` stands for ``activate``); see :data:`ACTION_EFFECTS`.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Literal

from edgepilot.actions import (
    Action,
    Click,
    DoubleClick,
    Drag,
    Finish,
    Hotkey,
    Key,
    LongPress,
    OpenApp,
    Point,
    RightClick,
    Scroll,
    Swipe,
    Tap,
    Type,
    Wait,
)
from edgepilot.controllers.gestures import TOUCH_SLOP_PX, swipe_points
from edgepilot.perception.types import Bounds, Observation, UINode
from edgepilot.policy.labels import normalise

EffectKind = Literal["activate", "focus", "enter_text", "dismiss", "scroll", "key", "hotkey", "drag", "open_app",
                     "wait", "finish", "unknown"]
EFFECT_KINDS: tuple[str, ...] = typing.get_args(EffectKind)

ACTION_EFFECTS: dict[str, tuple[str, ...]] = {
    "tap": ("activate",), "long_press": ("activate",), "click": ("activate",), "double_click": ("activate",),
    "right_click": ("activate",), "type": ("enter_text",), "swipe": ("scroll",), "scroll": ("scroll",),
    "key": ("key",), "hotkey": ("hotkey",), "drag": ("drag",), "open_app": ("open_app",), "wait": ("wait",),
    "finish": ("finish",),
}
"""What a policy rule's ``actions:`` entry covers: the effect an action of that type has when spelled plainly."""

CANONICAL_ACTION: dict[str, str] = {
    "activate": "tap", "focus": "tap", "enter_text": "type", "dismiss": "swipe", "scroll": "swipe", "key": "key",
    "hotkey": "hotkey", "drag": "drag", "open_app": "open_app", "wait": "wait", "finish": "finish",
    "unknown": "unknown",
}
"""The ``action.type`` fact of an effect: one name per effect, whatever action was sent."""

MULTILINE_SHARE = 0.15
"""A field taller than this share of the screen takes ENTER as a new line (a note's body), not as submit."""
NAVIGATION = re.compile(r"^(navigate up|up|back|home|close|cancel|menu|more options|overflow)$")
_FORM_HOPS = 4


@dataclass(frozen=True)
class DeviceEffect:
    """One thing an action does: its kind, the element it does it to, and how that was read."""

    kind: EffectKind
    node: UINode | None = None
    text: str | None = None
    key: str | None = None
    keys: str | None = None
    app: str | None = None
    via: str = ""
    detail: str = ""

    def describe(self) -> str:
        what = f' "{one_line(self.node.label)}"' if self.node is not None and self.node.label else ""
        if self.kind == "enter_text":
            return f"enters text into{what or ' the focused field'}"
        return {"activate": f"presses{what}", "focus": f"puts the caret in{what}", "dismiss": f"swipes away{what}",
                "scroll": "scrolls", "key": f"presses {self.key}", "hotkey": f"presses {self.keys}",
                "drag": f"drags{what}", "open_app": f"opens {self.app}", "wait": "waits", "finish": "finishes",
                "unknown": self.detail or "does something the screen does not explain"}[self.kind]


def one_line(text: str, limit: int = 60) -> str:
    """``text`` on one line (its lines joined with " / ", spaces collapsed), cut to ``limit`` characters."""
    text = " / ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def node_at(obs: Observation, target: int | Point | None) -> UINode | None:
    """The element an action's target names: by index, or the element under a pixel."""
    if isinstance(target, bool) or target is None:
        return None
    if isinstance(target, int):
        return obs.elements[target] if 0 <= target < len(obs.elements) else None
    hit = obs.element_at(target.x, target.y)
    return hit[1] if hit else None


def effects_of(action: Action, obs: Observation) -> tuple[DeviceEffect, ...]:
    """Every effect ``action`` has on the screen ``obs``, in the order they happen."""
    via = action.type
    match action:
        case Tap(target=t) | LongPress(target=t) | Click(target=t) | DoubleClick(target=t) | RightClick(target=t):
            return press_effects(obs, t, via)
        case Swipe():
            return _swipe(action, obs)
        case Type(text=text, target=t):
            return _type(obs, text, t)
        case Key(key="enter"):
            return _enter(obs, via="key enter")
        case Key(key="space"):
            return _space(obs, via="key space")
        case Key(key=key):
            return (DeviceEffect("key", key=key, via=via),)
        case Hotkey(keys=keys):
            chord = "+".join(keys)
            if "enter" in keys:  # enter with any modifiers: sends in chat apps, submits forms
                return (*_enter(obs, via=f"hotkey {chord}"), DeviceEffect("hotkey", keys=chord, via=via))
            if "space" in keys:
                return (*_space(obs, via=f"hotkey {chord}"), DeviceEffect("hotkey", keys=chord, via=via))
            return (DeviceEffect("hotkey", keys=chord, via=via),)
        case Scroll():
            return (DeviceEffect("scroll", node=node_at(obs, action.target), via=via),)
        case Drag(target=t):
            return (DeviceEffect("drag", node=node_at(obs, t), via=via),)
        case OpenApp(app=app):
            return (DeviceEffect("open_app", app=app, via=via),)
        case Wait():
            return (DeviceEffect("wait", via=via),)
        case Finish():
            return (DeviceEffect("finish", via=via),)
    return (DeviceEffect("unknown", via=via, detail=f"no effect is known for {via}"),)


def press_effects(obs: Observation, target: int | Point | None, via: str, detail: str = "") -> tuple[DeviceEffect,
                                                                                                     ...]:
    """What a finger down at ``target`` activates: every interactive element under the point it lands on.

    The point is the element's centre (as the controller taps it) or the pixel itself. Which of several
    overlapping elements takes the touch depends on drawing order the tree does not show (an overlay smaller
    than the button under it, a transparent view over a page), so each of them counts as activated, those the
    agent is not shown because another window or overlay seems to cover them included
    (:attr:`Observation.reachable`).
    """
    node = node_at(obs, target)
    if node is None:
        where = f"element {target}" if isinstance(target, int) else "that point"
        return (DeviceEffect("unknown", via=via, detail=f"presses {where}, which the screen does not show"),)
    x, y = (target.x, target.y) if isinstance(target, Point) else node.bounds.center
    under = [n for n in obs.reachable if n.bounds.contains(x, y) and n.actionable]
    if node not in under:
        under.insert(0, node)
    return tuple(DeviceEffect("focus" if n.editable else "activate", node=n, via=via, detail=detail) for n in under)


def _swipe(action: Swipe, obs: Observation) -> tuple[DeviceEffect, ...]:
    target = node_at(obs, action.target)
    if action.target is not None and target is None:
        return (DeviceEffect("unknown", via="swipe", detail="swipes an element the screen does not show"),)
    bounds = target.bounds if target is not None else None
    if isinstance(action.target, Point):  # as the controller does: the finger starts at the point itself
        bounds = Bounds(left=action.target.x, top=action.target.y, right=action.target.x + 1,
                        bottom=action.target.y + 1)
    (x1, y1), (x2, y2) = swipe_points(action, bounds, obs.screen_width, obs.screen_height)
    if abs(x2 - x1) <= TOUCH_SLOP_PX and abs(y2 - y1) <= TOUCH_SLOP_PX:  # a touch that never moved far: a tap
        moved = max(abs(x2 - x1), abs(y2 - y1))
        return press_effects(obs, Point(x=x1, y=y1), "swipe", detail=f"a swipe of {moved} px is a tap")
    start = obs.element_at(x1, y1)
    item = start[1] if start else None
    out: list[DeviceEffect] = []
    if item is not None and _pressable(item) and _within(item.bounds, x2, y2, TOUCH_SLOP_PX):
        # the finger never left the element: Android's View releases it as a click (no scroller took the move)
        out.extend(press_effects(obs, Point(x=x1, y=y1), "swipe",
                                 detail="a swipe that ends inside the element it started on presses it"))
    if action.direction in ("left", "right") and item is not None and _pressable(item):
        out.append(DeviceEffect("dismiss", node=item, via="swipe", detail="a sideways swipe on an item (apps swipe "
                                                                          "list items away to delete them)"))
    return (*out, DeviceEffect("scroll", node=target, via="swipe"))


def _pressable(node: UINode) -> bool:
    return (node.clickable or node.long_clickable or node.checkable) and not node.scrollable and not node.editable


def _within(bounds: Bounds, x: int, y: int, margin: int) -> bool:
    return bounds.left - margin <= x < bounds.right + margin and bounds.top - margin <= y < bounds.bottom + margin


def _focused_field(obs: Observation) -> UINode | None:
    index = obs.focused_element
    return obs.elements[index] if index is not None else None


def _focused_button(obs: Observation) -> UINode | None:
    return next((n for n in obs.elements if n.focused and not n.editable), None)


def _type(obs: Observation, text: str, target: int | Point | None) -> tuple[DeviceEffect, ...]:
    """Typing: into every field the text may land in (the field pressed first, else the one already focused).

    A target that is not a field is pressed (an effect of its own) and moves no focus there, so the text goes to
    the field focused before. Text with nowhere known to go, or a tab that moves the focus somewhere, is unknown.
    """
    out: list[DeviceEffect] = []
    fields: list[UINode] = []
    if target is not None:
        pressed = press_effects(obs, target, "type", detail="type presses its target before typing")
        out.extend(p for p in pressed if p.kind != "focus")  # a button pressed on the way is an effect of its own
        fields = [p.node for p in pressed if p.kind == "focus" and p.node is not None]
    if not fields and (focused := _focused_field(obs)) is not None:
        fields = [focused]
    if not text:
        return tuple(out) or (DeviceEffect("enter_text", node=fields[0] if fields else None, text="", via="type"),)
    if not fields:
        button = _focused_button(obs)
        if button is not None and " " in text:  # SPACE presses a focused button (Android's confirm keys, GTK)
            out.append(DeviceEffect("activate", node=button, via="type", detail="a space presses the focused button"))
        out.append(DeviceEffect("unknown", via="type", detail="types with no field focused: where the text goes "
                                                              "(or what it presses) is not on the screen"))
        return tuple(out)
    for field_node in fields:
        out.append(DeviceEffect("enter_text", node=field_node, text=text, via="type"))
        multiline = _multiline(field_node, obs)
        if re.search(r"\r|\n", text) and not multiline:
            out.extend(_submit(obs, field_node, via="type with a new line"))
        if "\t" in text and not multiline:
            out.append(DeviceEffect("unknown", node=field_node, via="type",
                                    detail="a tab moves the focus to another element, which the rest of the text "
                                           "then reaches"))
    return tuple(out)


def _enter(obs: Observation, via: str) -> tuple[DeviceEffect, ...]:
    node = _focused_field(obs)
    if node is None:
        focused = _focused_button(obs)
        if focused is not None:  # ENTER on a focused button presses it
            return (DeviceEffect("activate", node=focused, via=via, detail="enter presses the focused element"),)
        if obs.keyboard_shown:
            return (DeviceEffect("unknown", via=via, detail="presses enter on the keyboard, and no field is focused"),)
        return (DeviceEffect("key", key="enter", via=via),)
    if _multiline(node, obs):
        return (DeviceEffect("enter_text", node=node, text="\n", via=via, detail="a new line in a multi-line field"),)
    return _submit(obs, node, via=via)


def _space(obs: Observation, via: str) -> tuple[DeviceEffect, ...]:
    """SPACE types a space into a focused field, presses a focused button (a confirm key), or does nothing known."""
    if (field_node := _focused_field(obs)) is not None:
        return (DeviceEffect("enter_text", node=field_node, text=" ", via=via),)
    if (button := _focused_button(obs)) is not None:
        return (DeviceEffect("activate", node=button, via=via, detail="space presses the focused button"),)
    return (DeviceEffect("key", key="space", via=via),)


def _multiline(node: UINode, obs: Observation) -> bool:
    return node.editable and node.bounds.height > MULTILINE_SHARE * obs.screen_height


def _submit(obs: Observation, node: UINode | None, via: str) -> tuple[DeviceEffect, ...]:
    """Submitting ``node``'s form: pressing each button of the form (the screen cannot say which one the app runs)."""
    if node is None:
        return (DeviceEffect("unknown", via=via, detail="submits a form, and no field is focused"),)
    buttons = form_buttons(obs, node)
    if not buttons:
        return (DeviceEffect("unknown", node=node, via=via,
                             detail=f'submits the form of "{one_line(node.label) or "a field"}", and the screen shows '
                                    "no button of that form"),)
    return tuple(DeviceEffect("activate", node=b, via=via,
                              detail=f'{via} submits the form of "{one_line(node.label) or "a field"}"')
                 for b in buttons)


def _button(node: UINode) -> bool:
    return ((node.clickable or node.long_clickable) and node.enabled and not node.editable and not node.checkable
            and not node.scrollable and not NAVIGATION.match(normalise(node.text or node.content_desc)))
    # its own words only: a name edgepilot guessed (a neighbour's text) never makes a button navigation


def _inline(button: UINode, field_node: UINode) -> bool:
    """Whether ``button`` is an icon in ``field_node``'s row, touching it and smaller (clear text, show password):
    it does not by itself say where the field's form ends. A button with words ("Go", "Send") does."""
    if button.text.strip():
        return False
    b, f = button.bounds, field_node.bounds
    overlap = min(b.bottom, f.bottom) - max(b.top, f.top)
    gap = max(b.left - f.right, f.left - b.right, 0)
    return overlap >= 0.5 * b.height and gap <= TOUCH_SLOP_PX and b.area < f.area


def node_index(obs: Observation, node: UINode) -> int | None:
    """Where an element (possibly with folded text) sits in ``obs.nodes``: by bounds, class and id."""
    for i, n in enumerate(obs.nodes):
        if n.bounds == node.bounds and n.class_name == node.class_name and n.resource_id == node.resource_id:
            return i
    return None


def form_buttons(obs: Observation, node: UINode) -> list[UINode]:
    """The buttons of ``node``'s form: those under the nearest ancestor that holds any, within a list or window.

    The walk stops at a scrolling container (a list of many forms) and at the window's root: a field whose
    form shows no button gives none, and its submit is then unknown.
    """
    index = node_index(obs, node)
    if index is None:
        return []
    by_bounds = {(n.bounds, n.class_name, n.resource_id): n for n in obs.elements}
    icons: list[UINode] = []
    parent, hops = obs.nodes[index].parent, 0
    while parent is not None and 0 <= parent < len(obs.nodes) and hops < _FORM_HOPS:
        below = [n for n in _descendants(obs, parent) if _button(n)]
        own = [n for n in below if _inline(n, node)]  # the field's own icons (clear text, show password)
        icons.extend(n for n in own if n not in icons)
        if len(below) > len(own):  # a button of the form itself: the walk ends here
            return [by_bounds.get((n.bounds, n.class_name, n.resource_id), n) for n in below]
        if obs.nodes[parent].scrollable or obs.nodes[parent].parent is None:
            break
        parent, hops = obs.nodes[parent].parent, hops + 1
    return [by_bounds.get((n.bounds, n.class_name, n.resource_id), n) for n in icons]  # only icons: judge those


def _descendants(obs: Observation, root: int) -> list[UINode]:
    inside = {root}
    out = []
    for i in range(root + 1, len(obs.nodes)):
        if obs.nodes[i].parent in inside:
            inside.add(i)
            out.append(obs.nodes[i])
    return out
