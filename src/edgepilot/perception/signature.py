"""A screen's signature: what a person could act on, without what ticks by itself.

Two observations with the same signature offer the same actions in the same
places: the same app in front, the same windows, the same interactive
elements with the same labels, states and bounds. The status bar (a clock, a
battery) and plain text are left out, so a ticking clock does not make a
screen new, while a dialog that appears, a button that moves or a label that
changes does.
"""

from __future__ import annotations

from edgepilot.perception.elements import CLOCK_IDS, STATUS_BAR_FRACTION, SYSTEM_UI, in_status_bar, shows_time
from edgepilot.perception.nodes import UINode, describe
from edgepilot.perception.types import Observation

__all__ = ["SYSTEM_UI", "describe_change", "layout_signature", "screen_key", "steady_elements", "ticking"]

def ticking(node: UINode, screen_height: int) -> bool:
    """Whether a node changes on its own: the status bar (a clock, a battery, signal and notification icons),
    any clock by its id, and a time of day in the system's panels or in the top strip of the screen (a
    desktop panel's clock). Such a change is no sign that an action did anything."""
    if in_status_bar(node, screen_height) or node.resource_id.rsplit("/", 1)[-1] in CLOCK_IDS:
        return True
    in_bar = node.package == SYSTEM_UI or node.bounds.bottom <= screen_height * STATUS_BAR_FRACTION
    return in_bar and shows_time(node)


def steady_elements(obs: Observation) -> list[tuple[int, UINode]]:
    """The elements (with their numbers) that do not change on their own."""
    return [(i, n) for i, n in enumerate(obs.elements) if not ticking(n, obs.screen_height)]


def screen_key(obs: Observation) -> tuple:
    """What a person sees, less what ticks: two observations with the same key show the same screen.

    Loops, taps banned on a screen and the reflector's "nothing changed" are keyed on it, so a clock or a
    battery that moved between two looks does not make a screen new.
    """
    return (obs.package, obs.secure, obs.keyboard_shown,
            tuple((i, describe(n), n.bounds.left, n.bounds.top, n.bounds.right, n.bounds.bottom)
                  for i, n in steady_elements(obs)))


def layout_signature(obs: Observation) -> tuple:
    """The foreground app, the window roots, every interactive element (class, id, label, state, bounds) and the
    numbering of all elements (class and id by index: an element number an action names must still mean the same
    element when the action is sent, so a new message bubble that shifts the numbers changes the signature)."""
    roots = tuple((n.package, n.class_name, n.resource_id, n.bounds) for n in obs.nodes
                  if n.parent is None and not in_status_bar(n, obs.screen_height))
    elements = []
    for n in obs.elements:
        if not n.interactive or in_status_bar(n, obs.screen_height):
            continue
        label = "" if n.editable else n.label  # a field's text is what is typed, not what the field is
        elements.append((n.class_name, n.resource_id, label, n.content_desc, n.bounds, n.enabled, n.checked,
                         n.password))
    numbering = tuple((n.class_name, n.resource_id) for n in obs.elements)
    return obs.package, obs.secure, roots, tuple(elements), numbering


def describe_change(before: Observation, after: Observation) -> str:
    """In words, the first way ``after``'s signature differs from ``before``'s ('' when it does not)."""
    if before.package != after.package:
        return f"{after.package or 'another app'} is now in front instead of {before.package}"
    a, b = layout_signature(before), layout_signature(after)
    if a == b:
        return ""
    if a[2] != b[2]:
        return "a window opened or closed"
    if a[4] != b[4] and a[3] == b[3]:
        return f"the elements were renumbered ({len(a[4])} before, {len(b[4])} now)"
    gone = [e for e in a[3] if e not in b[3]]
    new = [e for e in b[3] if e not in a[3]]
    if new:
        return f"'{(new[0][2] or new[0][3] or new[0][1] or new[0][0])[:40]}' appeared or changed"
    if gone:
        return f"'{(gone[0][2] or gone[0][3] or gone[0][1] or gone[0][0])[:40]}' is gone or changed"
    return "the screen's state changed"
