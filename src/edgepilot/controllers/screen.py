"""The observed monitor: where it lies, and the coordinate spaces that meet on a desktop.

:class:`ScreenGeometry` maps between three spaces:

- **screenshot pixels**: what the model sees; observation bounds and
  ``Point`` targets are in them, origin at the observed monitor's corner;
- **pointer coordinates**: what pyautogui moves the mouse in; on X11 and
  Windows (pyautogui makes the process DPI-aware) these are physical pixels of
  the whole virtual screen, on macOS points (a Retina screenshot has two
  pixels per point); a monitor right of or above the primary one has an offset,
  possibly negative;
- **accessibility coordinates**: the toolkit's screen coordinates; on X11 the
  same as pointer coordinates, except for applications scaled by the toolkit
  (GTK with ``GDK_SCALE=2`` reports logical pixels: ``a11y_scale=2``).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgepilot.actions import Point, Target
from edgepilot.errors import ActionError
from edgepilot.perception.types import Bounds, Observation


@dataclass(frozen=True)
class ScreenGeometry:
    """Where the observed monitor lies, and the scale factors between the coordinate spaces.

    Args:
        left, top: the monitor's corner in pointer coordinates (negative left of the primary monitor).
        width, height: its size in pointer coordinates.
        scale: screenshot pixels per pointer unit (2.0 on a Retina display, else 1.0).
        a11y_scale: pointer units per accessibility unit (2.0 for GTK at GDK_SCALE=2 on X11, else 1.0).
    """

    left: int
    top: int
    width: int
    height: int
    scale: float = 1.0
    a11y_scale: float = 1.0

    @property
    def shot_size(self) -> tuple[int, int]:
        """The screenshot's size in pixels."""
        return round(self.width * self.scale), round(self.height * self.scale)

    def to_pointer(self, x: float, y: float) -> tuple[int, int]:
        """A screenshot pixel → the pointer position on its centre."""
        return (self.left + int((x + 0.5) / self.scale), self.top + int((y + 0.5) / self.scale))

    def to_shot(self, x: float, y: float) -> tuple[int, int]:
        """A pointer position → the screenshot pixel under it."""
        return (int((x - self.left) * self.scale), int((y - self.top) * self.scale))

    def a11y_bounds(self, b: Bounds) -> Bounds:
        """Accessibility bounds → screenshot bounds (empty stays empty)."""
        if b.area == 0:
            return b
        f = self.a11y_scale * self.scale
        return Bounds(left=round(b.left * f - self.left * self.scale), top=round(b.top * f - self.top * self.scale),
                      right=round(b.right * f - self.left * self.scale),
                      bottom=round(b.bottom * f - self.top * self.scale))

    @classmethod
    def from_monitor(cls, monitor: dict[str, int], shot_width: int, a11y_scale: float = 1.0) -> ScreenGeometry:
        """From an mss monitor (pointer coordinates) and the width of a screenshot of it."""
        width = int(monitor["width"])
        return cls(left=int(monitor["left"]), top=int(monitor["top"]), width=width, height=int(monitor["height"]),
                   scale=shot_width / width if width else 1.0, a11y_scale=a11y_scale)


def shot_point(target: Target, geometry: ScreenGeometry, obs: Observation | None) -> tuple[int, int]:
    """The screenshot pixel a target aims at: a point as it is, an element's visible centre.

    Raises:
        ActionError: the point or the element is off screen, or an element index comes before any observation.
    """
    w, h = geometry.shot_size
    if isinstance(target, Point):
        if target.x >= w or target.y >= h:
            raise ActionError(f"point {target.x},{target.y} is off the {w}x{h} screen")
        return target.x, target.y
    if obs is None:
        raise ActionError("an element index needs an observation first; call observe()")
    try:
        node = obs.element(target)
    except IndexError as exc:
        raise ActionError(str(exc)) from exc
    visible = node.bounds.intersect(Bounds(left=0, top=0, right=w, bottom=h))
    if visible.area == 0:
        raise ActionError(f"element {target} is off screen; scroll to it first")
    return visible.center


def pointer_for(target: Target, geometry: ScreenGeometry, obs: Observation | None) -> tuple[int, int]:
    """A target → pointer coordinates, kept off the screen's corners (pyautogui's fail-safe).

    Raises:
        ActionError: as :func:`shot_point`.
    """
    x, y = geometry.to_pointer(*shot_point(target, geometry, obs))
    g = geometry
    if x in (g.left, g.left + g.width - 1) and y in (g.top, g.top + g.height - 1):
        x += 1 if x == g.left else -1
    return x, y
