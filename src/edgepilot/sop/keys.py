"""Hotkeys in a procedure's words (``Press ctrl+s``, ``Press the hotkey ctrl+shift+n``, ``Press F2``): the form
the follower reads, the :class:`~edgepilot.actions.Hotkey` it stands for, and what `sop lint` says of a key the
desktop does not have. A module of its own so that the SOP checks (``format``) and the follower (``follow``)
share it without importing each other."""

from __future__ import annotations

import difflib
import re
from typing import get_args

from edgepilot.actions import Hotkey, HotkeyName
from edgepilot.errors import SopError

HOTKEY_FORM = (r"^press (?:the )?(?:hotkey |keys? )?(?P<keys>(?:(?:ctrl|alt|shift|super)\+)+[a-z0-9_]+|f\d{1,2})"
               r"(?![\w+])")
"""A step that presses keys together (the follower's ``hotkey`` form)."""
_HOTKEY = re.compile(HOTKEY_FORM, re.IGNORECASE)
WAYS = re.compile(r",\s+or\s+", re.IGNORECASE)
"""What separates a step's ways of being done (``Tap "Mia", or type "Mia" in the "To" field``)."""


def hotkey_action(keys: str) -> Hotkey:
    """The hotkey a step's words name (``ctrl+shift+s``, ``f2``).

    Raises:
        SopError: a key the desktop does not have, or keys in an order it does not take.
    """
    names = tuple(k.strip() for k in keys.lower().split("+"))
    known = get_args(HotkeyName)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            raise SopError(f"no key {name!r} in the hotkey {keys!r}" + (f" (did you mean {close[0]!r}?)" if close
                                                                       else "")
                           + "; keys: ctrl, alt, shift, super, a-z, 0-9, f1-f12, " + ", ".join(known[52:]))
    try:
        return Hotkey(keys=names)  # type: ignore[arg-type]
    except ValueError as exc:  # pydantic's ValidationError: a key twice, a modifier after a key
        why = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
        raise SopError(f"no hotkey {keys!r}: {why.removeprefix('Value error, ')}") from exc


def hotkey_problem(step: str) -> str | None:
    """What is wrong with a hotkey a step's words press (any of its ``, or`` ways), or None."""
    for way in WAYS.split(" ".join(step.split())):
        m = _HOTKEY.match(way.strip())
        if m is None or "{" in m["keys"]:
            continue
        try:
            hotkey_action(m["keys"])
        except SopError as exc:
            return f"{exc}; write keys as the desktop names them, modifiers first: Press ctrl+s, Press F2"
    return None
