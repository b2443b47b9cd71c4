"""The ``input`` command of the device shell: taps, swipes, text and key events.

Holds the Android key code table (:data:`KEYCODES`) that other commands use
too (``am force-stop`` presses HOME).
"""

from __future__ import annotations

from edgepilot.sim.adb.protocol import PhoneBackend
from edgepilot.sim.adb.shell_io import CommandIO

LONG_PRESS_MS = 500
DEFAULT_SWIPE_MS = 300

KEYCODES: dict[str, int] = {
    "SOFT_LEFT": 1, "SOFT_RIGHT": 2, "HOME": 3, "BACK": 4, "CALL": 5, "ENDCALL": 6,
    "STAR": 17, "POUND": 18, "DPAD_UP": 19, "DPAD_DOWN": 20, "DPAD_LEFT": 21,
    "DPAD_RIGHT": 22, "DPAD_CENTER": 23, "VOLUME_UP": 24, "VOLUME_DOWN": 25, "POWER": 26,
    "CAMERA": 27, "CLEAR": 28, "COMMA": 55, "PERIOD": 56, "ALT_LEFT": 57, "ALT_RIGHT": 58,
    "SHIFT_LEFT": 59, "SHIFT_RIGHT": 60, "TAB": 61, "SPACE": 62, "SYM": 63, "EXPLORER": 64,
    "ENVELOPE": 65, "ENTER": 66, "DEL": 67, "GRAVE": 68, "MINUS": 69, "EQUALS": 70,
    "LEFT_BRACKET": 71, "RIGHT_BRACKET": 72, "BACKSLASH": 73, "SEMICOLON": 74,
    "APOSTROPHE": 75, "SLASH": 76, "AT": 77, "NUM": 78, "HEADSETHOOK": 79, "FOCUS": 80,
    "PLUS": 81, "MENU": 82, "NOTIFICATION": 83, "SEARCH": 84, "MEDIA_PLAY_PAUSE": 85,
    "MEDIA_STOP": 86, "MEDIA_NEXT": 87, "MEDIA_PREVIOUS": 88, "MUTE": 91, "PAGE_UP": 92,
    "PAGE_DOWN": 93, "ESCAPE": 111, "FORWARD_DEL": 112, "CTRL_LEFT": 113,
    "CTRL_RIGHT": 114, "MOVE_HOME": 122, "MOVE_END": 123, "INSERT": 124,
    "VOLUME_MUTE": 164, "SETTINGS": 176, "APP_SWITCH": 187, "BRIGHTNESS_DOWN": 220,
    "BRIGHTNESS_UP": 221, "SLEEP": 223, "WAKEUP": 224, "CUT": 277, "COPY": 278,
    "PASTE": 279, "ALL_APPS": 284,
}  # fmt: skip
KEYCODES.update({str(d): 7 + d for d in range(10)})
KEYCODES.update({chr(c): 29 + c - ord("A") for c in range(ord("A"), ord("Z") + 1)})

INPUT_SOURCES = frozenset(
    {"keyboard", "mouse", "joystick", "touchnavigation", "touchpad", "trackball",
     "stylus", "dpad", "gamepad", "touchscreen", "rotaryencoder"}
)  # fmt: skip


def keycode(name: str) -> int | None:
    """Android key code for a number, ``KEYCODE_X`` or ``X``; None if unknown."""
    if name.isdigit():
        return int(name)
    key = name.upper()
    key = key[len("KEYCODE_") :] if key.startswith("KEYCODE_") else key
    return KEYCODES.get(key)


def _to_int(text: str) -> int:
    return int(float(text))


class InputService:
    """``input [SOURCE] [-d DISPLAY] tap|swipe|draganddrop|text|keyevent|press ...``.

    Args:
        phone: The phone that receives the events.
    """

    def __init__(self, phone: PhoneBackend) -> None:
        self.phone = phone

    def input(self, args: list[str], cio: CommandIO) -> int:
        """Run ``input ARGS``; return the exit status."""
        args = list(args)
        if args and args[0] in INPUT_SOURCES:
            args.pop(0)
        if len(args) >= 2 and args[0] == "-d":
            del args[:2]
        if not args:
            return cio.fail("Usage: input [<source>] [-d DISPLAY_ID] <command> [<arg>...]")
        sub, rest = args[0], args[1:]
        handler = {
            "tap": self._tap, "swipe": self._swipe, "draganddrop": self._swipe,
            "text": self._text, "keyevent": self._keyevent, "press": self._press,
        }.get(sub)  # fmt: skip
        if handler is None:
            return cio.fail(f"Error: Unknown command: {sub}")
        return handler(rest, cio)

    def _tap(self, args: list[str], cio: CommandIO) -> int:
        if len(args) != 2:
            return cio.fail("Usage: input tap <x> <y>")
        self.phone.tap(_to_int(args[0]), _to_int(args[1]))
        return 0

    def _swipe(self, args: list[str], cio: CommandIO) -> int:
        if len(args) not in (4, 5):
            return cio.fail("Usage: input swipe <x1> <y1> <x2> <y2> [duration(ms)]")
        x1, y1, x2, y2 = (_to_int(a) for a in args[:4])
        duration = _to_int(args[4]) if len(args) == 5 else DEFAULT_SWIPE_MS
        if (x1, y1) == (x2, y2) and duration >= LONG_PRESS_MS:
            self.phone.long_press(x1, y1, duration)
        else:
            self.phone.swipe(x1, y1, x2, y2, duration)
        return 0

    def _text(self, args: list[str], cio: CommandIO) -> int:
        if not args:
            return cio.fail("Usage: input text <string>")
        text = args[0].replace("%s", " ")  # like Android, only the first argument is typed
        if text:
            self.phone.input_text(text)
        return 0

    def _keyevent(self, args: list[str], cio: CommandIO) -> int:
        names = [a for a in args if a not in ("--longpress", "--doubletap")]
        if not names:
            return cio.fail("Usage: input keyevent [--longpress|--doubletap] <key code number or name> ...")
        codes = []
        for name in names:
            code = keycode(name)
            if code is None:
                return cio.fail(f"Error: Unknown keycode: {name}")
            codes.append(code)
        for code in codes:
            self.phone.keyevent(code)
        return 0

    def _press(self, args: list[str], cio: CommandIO) -> int:
        self.phone.keyevent(KEYCODES["DPAD_CENTER"])
        return 0
