"""Global hotkeys (pynput), for the daemon on an X desktop (the windows they open: daemon/windows.py).

The keyboard listener reads key events from the X server (the RECORD
extension), independently of the pointer: the safety stop works while the
agent moves the mouse or holds a button down. Callbacks run on the listener's
thread and only hand work over (a stop is a few assignments; the prompt is
opened by the window thread).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger("edgepilot.daemon")


class Hotkeys:
    """Two global hotkeys: ``prompt`` (open the task prompt) and ``stop`` (the safety stop).

    :meth:`start` never raises: without a display, without pynput, or with a
    hotkey pynput cannot parse, the hotkeys stay off and :attr:`reason` says why.
    """

    def __init__(self, prompt: str, stop: str, on_prompt: Callable[[], None], on_stop: Callable[[], None]) -> None:
        self.prompt = prompt
        self.stop_key = stop
        self._on_prompt = on_prompt
        self._on_stop = on_stop
        self.enabled = False
        self.reason = "not started"
        self.last_stop: float | None = None
        self._listener: Any = None

    def start(self) -> bool:
        if not os.environ.get("DISPLAY"):
            self.reason = "no display ($DISPLAY is not set); use `edgepilot daemon run` and `stop-run` instead"
            return False
        if self.prompt == self.stop_key:
            self.reason = f"hotkey and stop_hotkey are both {self.prompt!r}; make them differ in config.toml [daemon]"
            return False
        try:
            from pynput import keyboard
        except ImportError as exc:  # pynput missing, or it cannot reach the X server
            self.reason = f"pynput cannot start ({str(exc).splitlines()[0]})"
            return False
        try:
            self._listener = keyboard.GlobalHotKeys({self.prompt: self._prompt, self.stop_key: self._stop})
        except ValueError as exc:
            self.reason = f"pynput cannot read a hotkey ({exc}); fix [daemon] in config.toml"
            return False
        self._listener.daemon = True
        self._listener.start()
        self._listener.wait()
        self.enabled, self.reason = True, f"listening on {os.environ['DISPLAY']}"
        log.info("hotkeys: %s opens the prompt, %s stops the running task", self.prompt, self.stop_key)
        return True

    def _prompt(self) -> None:
        log.info("hotkey %s: task prompt", self.prompt)
        self._on_prompt()

    def _stop(self) -> None:
        import time

        self.last_stop = time.monotonic()
        log.warning("hotkey %s: safety stop", self.stop_key)
        self._on_stop()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self.enabled = False

    def status(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "reason": self.reason, "prompt": self.prompt, "stop": self.stop_key}
