"""The desktop's keyboard: key names, and typing text the keyboard map lacks.

Printable ASCII goes through pyautogui's key presses. Anything else
(``héllo``, ``日本``) on X11 goes through :class:`KeysymTyper`: XTEST key
presses on spare keycodes that carry the missing characters for the moment
(``xdotool type`` does the same one character at a time and was seen to drop
characters on Xvfb). On Windows and macOS such text is pasted through the
clipboard (:func:`paste_text`, pyperclip).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from edgepilot.errors import ActionError

KEYS = {"enter": "enter", "delete": "backspace", "tab": "tab", "space": "space", "escape": "esc", "back": "esc",
        "menu": "apps"}
"""``key`` actions on a desktop, as pyautogui key names (``delete`` is Android's DEL: the key left of the cursor)."""
HOTKEY_NAMES = {"super": "winleft", "page_up": "pageup", "page_down": "pagedown", "escape": "esc",
                "minus": "-", "equal": "=", "comma": ",", "period": ".", "slash": "/", "plus": "+"}
"""Hotkey names that pyautogui spells differently; the others are the same."""


def hotkey_name(key: str) -> str:
    """A hotkey's key as pyautogui names it on this system (``super`` is ``command`` on macOS)."""
    if key == "super" and sys.platform == "darwin":
        return "command"
    return HOTKEY_NAMES.get(key, key)


def keysym_for(ch: str) -> int:
    """The X keysym of a character: Latin-1 as itself, everything else as 0x01000000 + its code point."""
    code = ord(ch)
    if ch == "\n":
        return 0xFF0D  # Return
    if ch == "\t":
        return 0xFF09  # Tab
    if ch == "\b":
        return 0xFF08  # BackSpace
    return code if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF else 0x01000000 + code


class KeysymTyper:
    """Types any text on X11 through XTEST: characters the keyboard map lacks are put on spare keycodes.

    Every character missing from the map (``é``, ``✓``, ``日``) is mapped onto
    a keycode that has no symbols, all of a chunk at once, then the keys are
    pressed. The map is left that way until the spare keycodes are needed for
    other characters or :meth:`close`: a client reads the map when it handles
    a key press, possibly after the typing ended, and a map restored too early
    turns the last characters into nothing (what ``xdotool type``, which maps
    and restores each character in turn, was seen to do on Xvfb: it dropped
    one or two characters in most runs).

    Raises:
        ActionError: (from :meth:`type`) the keyboard map has no spare keycode.
    """

    def __init__(self, x: Any, delay: float = 0.004, settle: float = 0.08) -> None:
        self.x = x
        self.delay = delay
        self.settle = settle
        self.assigned: dict[int, int] = {}  # keysym → spare keycode now carrying it

    def type(self, text: str) -> None:
        from Xlib import XK, X
        from Xlib.ext.xtest import fake_input

        info = self.x.display.info
        first = info.min_keycode
        mapping = self.x.get_keyboard_mapping(first, info.max_keycode - first + 1)
        width = len(mapping[0]) if mapping else 2
        known: dict[int, tuple[int, bool]] = {}
        for i, syms in enumerate(mapping):
            for level, sym in enumerate(syms[:2]):
                if sym and sym not in known and first + i not in self.assigned.values():
                    known[sym] = (first + i, level == 1)
        spare = [first + i for i, syms in enumerate(mapping) if not any(syms) or first + i in self.assigned.values()]
        if not spare:
            raise ActionError("the X keyboard map has no free keycode to type non-ASCII text with")
        shift = self.x.keysym_to_keycode(XK.XK_Shift_L)
        pos = 0
        while pos < len(text):
            plan, wanted = [], {}
            while pos < len(text):
                sym = keysym_for(text[pos])
                if sym in known:
                    plan.append(known[sym])
                elif sym in wanted or len(wanted) < len(spare):
                    wanted.setdefault(sym, len(wanted))
                    plan.append((-1 - wanted[sym], False))  # a spare keycode, decided below
                else:
                    break
                pos += 1
            codes = self._map(wanted, spare, width)
            for code, shifted in plan:
                code = codes[-1 - code] if code < 0 else code
                if shifted:
                    fake_input(self.x, X.KeyPress, shift)
                fake_input(self.x, X.KeyPress, code)
                fake_input(self.x, X.KeyRelease, code)
                if shifted:
                    fake_input(self.x, X.KeyRelease, shift)
                self.x.sync()
                time.sleep(self.delay)

    def _map(self, wanted: dict[int, int], spare: list[int], width: int) -> list[int]:
        """Keycodes for the wanted keysyms (in order), reusing ones already mapped; remaps only what must change."""
        codes = [0] * len(wanted)
        free = [c for c in spare if c not in {self.assigned.get(sym) for sym in wanted}]
        changed = False
        for sym, slot in wanted.items():
            if sym in self.assigned:
                codes[slot] = self.assigned[sym]
                continue
            code = free.pop(0)
            old = next((s for s, c in self.assigned.items() if c == code), None)
            if old is not None:
                del self.assigned[old]
            if not changed:
                time.sleep(self.settle)  # keys typed earlier with this keycode must be read before it changes
            self.x.change_keyboard_mapping(code, [(sym,) * width])
            self.assigned[sym] = codes[slot] = code
            changed = True
        if changed:
            self.x.sync()
            time.sleep(self.settle)  # clients see the new map before its first key arrives
        return codes

    def close(self) -> None:
        """Give the spare keycodes their empty map back."""
        if not self.assigned:
            return
        info = self.x.display.info
        width = len(self.x.get_keyboard_mapping(info.min_keycode, 1)[0])
        time.sleep(self.settle)
        for code in self.assigned.values():
            self.x.change_keyboard_mapping(code, [(0,) * width])
        self.x.sync()
        self.assigned.clear()


def ascii_typable(text: str) -> bool:
    """Whether pyautogui can type this by key presses (printable ASCII, newlines, tabs)."""
    return all(32 <= ord(ch) < 127 or ch in "\n\t" for ch in text)


def paste_text(text: str, gui: Any) -> None:
    """Windows and macOS: paste text through the clipboard (restored afterwards).

    Raises:
        ActionError: pyperclip is not installed.
    """
    try:
        import pyperclip
    except ImportError as exc:
        raise ActionError("typing non-ASCII text here pastes it through the clipboard: pip install pyperclip") from exc
    saved = pyperclip.paste()
    pyperclip.copy(text)
    gui.hotkey("command" if sys.platform == "darwin" else "ctrl", "v")
    time.sleep(0.1)
    pyperclip.copy(saved)
