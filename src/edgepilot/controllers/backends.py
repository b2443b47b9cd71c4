"""The desktop's system services, each imported only when a device first needs it.

The X display (python-xlib), screenshots (mss), pyautogui and the accessibility reader are heavy
or platform-specific; importing :mod:`edgepilot.controllers.desktop` loads
none of them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from typing import Any

from edgepilot.errors import DeviceError, PerceptionError
from edgepilot.perception.atspi import AtspiReader
from edgepilot.perception.ax import AxReader
from edgepilot.perception.uia import UiaReader


def default_display(display: str | None) -> str:
    """The X display to use: ``display``, else ``$DISPLAY``.

    Raises:
        DeviceError: neither is set; the message says how to start a virtual display.
    """
    name = display or os.environ.get("DISPLAY", "")
    if not name:
        wayland = " (this is a Wayland session: run under XWayland with DISPLAY set)" \
            if os.environ.get("WAYLAND_DISPLAY") else ""
        raise DeviceError("no X display: DISPLAY is not set" + wayland + ". Set DISPLAY (e.g. DISPLAY=:0), or start "
                          "a virtual one: `Xvfb :99 -screen 0 1280x800x24 &` and use --device desktop::99")
    return name


def open_x_display(display: str | None) -> Any:
    """Connect to an X display with python-xlib.

    Raises:
        DeviceError: it cannot be reached; the message says to set DISPLAY or start Xvfb.
    """
    name = default_display(display)
    try:
        from Xlib.display import Display

        return Display(name)
    except ImportError as exc:
        raise DeviceError("the desktop controller needs python-xlib and pyautogui: pip install 'edgepilot[desktop]'") \
            from exc
    except Exception as exc:  # noqa: BLE001 - python-xlib raises DisplayConnectionError, OSError, ValueError...
        raise DeviceError(f"cannot open X display {name!r} ({str(exc).strip()}); set DISPLAY to a running X server, "
                          "or start Xvfb: `Xvfb :99 -screen 0 1280x800x24 &` and use --device desktop::99") from exc


def open_mss(display: str | None) -> Any:
    """An mss screenshot grabber for ``display`` (None: the screen, off Linux).

    Raises:
        DeviceError: mss is not installed or cannot take screenshots there.
    """
    try:
        import mss
    except ImportError as exc:
        raise DeviceError("the desktop controller needs mss: pip install 'edgepilot[desktop]'") from exc
    factory = getattr(mss, "MSS", None) or mss.mss
    try:
        return factory(display=display) if display is not None else factory()
    except Exception as exc:  # noqa: BLE001 - mss raises ScreenShotError and Xlib errors
        raise DeviceError(f"cannot take screenshots of {display or 'the screen'} ({exc}); "
                          "set DISPLAY or start Xvfb") from exc


_PYAUTOGUI_LOCK = threading.Lock()


def _alive(connection: Any) -> bool:
    """Whether an Xlib connection still reaches its server (a display number is reused by the next Xvfb
    once the first one stopped: same name, dead socket)."""
    try:
        connection.get_input_focus()
        return True
    except Exception:  # noqa: BLE001 - Xlib's ConnectionClosedError, BrokenPipeError
        return False


def pyautogui_for(display: str | None) -> Any:
    """pyautogui, with its X11 backend talking to ``display``.

    pyautogui opens ``$DISPLAY`` when it is imported and computes its key
    codes from that server; for another display its X11 module is loaded
    again with ``DISPLAY`` set to it. One display at a time per process.

    Raises:
        DeviceError: pyautogui is not installed or cannot reach the display.
    """
    with _PYAUTOGUI_LOCK:
        saved = os.environ.get("DISPLAY")
        if display is not None:
            os.environ["DISPLAY"] = display
        try:
            import pyautogui

            if sys.platform.startswith("linux") and display is not None:
                from pyautogui import _pyautogui_x11 as x11

                if x11._display.get_display_name() != display or not _alive(x11._display):
                    with contextlib.suppress(Exception):
                        x11._display.close()
                    importlib.reload(x11)
                    pyautogui.platformModule = x11
        except ImportError as exc:
            raise DeviceError("the desktop controller needs pyautogui: pip install 'edgepilot[desktop]'") from exc
        except Exception as exc:  # noqa: BLE001 - Xlib's connection errors, KeyError('DISPLAY')
            raise DeviceError(f"pyautogui cannot reach display {display!r} ({exc}); set DISPLAY or start Xvfb") \
                from exc
        finally:
            if saved is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = saved
        pyautogui.PAUSE = 0.0  # pyautogui sleeps 0.1 s after every call by default; the device settles once per action
        return pyautogui


def open_reader(*, display: str | None = None, a11y_bus: str | None = None, session_bus: str | None = None) -> Any:
    """The accessibility tree reader of this system: AT-SPI (Linux), UI Automation (Windows), AX (macOS).

    Raises:
        PerceptionError: there is none, or it cannot be reached.
    """
    if sys.platform == "win32":
        return UiaReader()
    if sys.platform == "darwin":
        return AxReader()
    try:
        import jeepney  # noqa: F401
    except ImportError as exc:
        raise PerceptionError("reading the AT-SPI tree needs jeepney: pip install 'edgepilot[desktop]'") from exc

    return AtspiReader(a11y_bus, session_bus=session_bus, display=display)
