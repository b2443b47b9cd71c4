"""Where a swipe's finger goes: one computation for the controller that sends it and the policy that judges it.

The policy judges a swipe by what it does (a swipe whose finger moves less
than the touch slop is a tap where it starts), so it must know the points the
controller will send; both call :func:`swipe_points`.
"""

from __future__ import annotations

from edgepilot.actions import Swipe
from edgepilot.perception.types import Bounds

TOUCH_SLOP_PX = 64
"""A finger that moves less than this is a tap, on any phone the policy may judge for.

Android's touch slop is 8 dp (24–32 px on today's screens; the virtual phone
uses 30 px); the policy counts every movement up to twice the largest as a tap,
so a swipe it lets through as a scroll never lands as a tap."""


def swipe_points(action: Swipe, bounds: Bounds | None, width: int, height: int) -> tuple[tuple[int, int],
                                                                                           tuple[int, int]]:
    """The start and end pixels of ``action`` on a ``width`` x ``height`` screen.

    With ``bounds`` (the target element's) the finger starts at its centre and
    moves ``distance`` of the larger of the element's and half the screen's
    extent; without, it crosses the middle of the screen, centred.
    """
    if bounds is None:
        bounds = Bounds(left=0, top=0, right=width, bottom=height)
        cx, cy = bounds.center
        vertical = action.direction in ("up", "down")
        span = height if vertical else width
        half = int(span * action.distance / 2)
        mid = span // 2
        a, z = mid + half, mid - half
        if action.direction in ("down", "right"):
            a, z = z, a
        return ((cx, a), (cx, z)) if vertical else ((a, cy), (z, cy))
    cx, cy = bounds.center
    vertical = action.direction in ("up", "down")
    extent = max(bounds.height if vertical else bounds.width, (height if vertical else width) // 2)
    length = int(extent * action.distance)
    dx, dy = {"up": (0, -length), "down": (0, length), "left": (-length, 0), "right": (length, 0)}[action.direction]
    return (cx, cy), (min(max(cx + dx, 0), width - 1), min(max(cy + dy, 0), height - 1))
