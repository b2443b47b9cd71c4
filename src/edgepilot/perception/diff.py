"""What changed between two observations: the reflector's cheap check and its model input."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from edgepilot.perception.signature import screen_key, steady_elements
from edgepilot.perception.types import Observation, describe


def _lines(obs: Observation) -> list[str]:
    return [describe(n) for _, n in steady_elements(obs)]


@dataclass(frozen=True)
class ScreenDiff:
    """The difference between the screen before an action and after it."""

    same: bool
    app_before: str
    app_after: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    keyboard_before: bool
    keyboard_after: bool

    @property
    def app_changed(self) -> bool:
        return self.app_before != self.app_after

    def summary(self, limit: int = 8) -> str:
        """A few lines a model can read: the app switch, then elements that appeared and went."""
        if self.same:
            return "Nothing changed on the screen."
        lines = []
        if self.app_changed:
            lines.append(f"The app changed from {self.app_before or 'unknown'} to {self.app_after or 'unknown'}.")
        if self.keyboard_after != self.keyboard_before:
            lines.append("The keyboard opened." if self.keyboard_after else "The keyboard closed.")
        groups = [("Appeared", self.added)] + ([] if self.app_changed else [("Went away", self.removed)])
        for title, items in groups:  # after an app switch, what went away is the whole old screen
            if items:
                lines.append(f"{title}:")
                lines += [f"  {item}" for item in items[:limit]]
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")
        if len(lines) == 0:
            lines.append("Elements moved, but none appeared or went away.")
        return "\n".join(lines)


def screen_diff(before: Observation, after: Observation) -> ScreenDiff:
    """Compare two observations element by element (text, class, flags, bounds), the status bar and clocks left
    out (:func:`~edgepilot.perception.signature.screen_key`)."""
    same = screen_key(before) == screen_key(after)
    b, a = Counter(_lines(before)), Counter(_lines(after))
    added = tuple((a - b).elements())
    removed = tuple((b - a).elements())
    return ScreenDiff(same=same, app_before=before.package, app_after=after.package, added=added,
                      removed=removed, keyboard_before=before.keyboard_shown, keyboard_after=after.keyboard_shown)
