"""Global hotkeys (pynput) and the task prompt (a small tkinter window), for the daemon on an X desktop.

The keyboard listener reads key events from the X server (the RECORD
extension), independently of the pointer: the safety stop works while the
agent moves the mouse or holds a button down. Callbacks run on the listener's
thread and only hand work over (a stop is a few assignments; the prompt is
opened by the window thread).
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("edgepilot.daemon")

PROMPT_TITLE = "edgepilot: new task"


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


class PromptWindow:
    """The task prompt: a small always-on-top window with one entry. Enter submits, Escape cancels.

    All of tkinter lives on one thread of its own (tkinter objects must not
    cross threads); :meth:`open` may be called from any thread.

    Args:
        submit: called with the typed task on the window's thread; returns an error to show, or None when
            the task was queued (the window then closes).
        device: shown in the window (where the task will run).
    """

    def __init__(self, submit: Callable[[str], str | None], device: str) -> None:
        self._submit = submit
        self.device = device
        self._requests: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self.error = ""
        self.is_open = False

    def start(self) -> bool:
        """Start the window thread (nothing is shown yet); False when tkinter cannot open the display."""
        self._thread = threading.Thread(target=self._main, name="daemon-prompt", daemon=True)
        self._thread.start()
        self._started.wait(10)
        return not self.error

    def open(self) -> None:
        self._requests.put("open")

    def close(self) -> None:
        self._requests.put("quit")
        if self._thread is not None:
            self._thread.join(3)

    def _main(self) -> None:
        self._loop()
        gc.collect()  # the Tcl interpreter is freed here, on its own thread (never by another one at exit)

    def _loop(self) -> None:
        try:
            import tkinter as tk

            tk.NoDefaultRoot()  # no module-level root that would outlive this thread
            root = tk.Tk(className="edgepilot")
            root.withdraw()
        except Exception as exc:  # noqa: BLE001 - no tkinter, or no display: the prompt is off
            self.error = f"the task prompt is off: tkinter cannot open the display ({exc})"
            self._started.set()
            return
        self._started.set()
        state: dict[str, Any] = {"window": None}

        def poll() -> None:
            while True:
                try:
                    what = self._requests.get_nowait()
                except queue.Empty:
                    break
                if what == "quit":
                    root.quit()
                    return
                self._show(tk, root, state)
            root.after(50, poll)

        root.after(50, poll)
        root.mainloop()
        state.clear()
        try:
            root.destroy()
        except tk.TclError:
            pass

    def _show(self, tk: Any, root: Any, state: dict[str, Any]) -> None:
        window = state["window"]
        if window is not None and window.winfo_exists():
            window.lift()
            window.focus_force()
            return
        window = tk.Toplevel(root)
        window.title(PROMPT_TITLE)
        window.attributes("-topmost", True)
        window.resizable(False, False)
        tk.Label(window, text=f"Task for the agent on {self.device}   (Enter: run, Esc: cancel)",
                 anchor="w").pack(fill="x", padx=10, pady=(10, 4))
        text = tk.StringVar(master=window)
        entry = tk.Entry(window, textvariable=text, width=64)
        entry.pack(fill="x", padx=10)
        problem = tk.Label(window, text="", fg="#b00020", anchor="w", justify="left", wraplength=480)
        problem.pack(fill="x", padx=10, pady=(4, 10))

        def done(_event: Any = None) -> None:
            state["window"] = None
            self.is_open = False
            window.destroy()

        def submit(_event: Any = None) -> None:
            task = text.get().strip()
            if not task:
                problem.config(text="Type a task first, e.g. “turn on airplane mode”.")
                return
            window.withdraw()  # off the screen before the run's first screenshot of this desktop
            window.update()
            error = self._submit(task)
            if error:
                window.deiconify()
                problem.config(text=error)
                entry.focus_force()
            else:
                done()

        entry.bind("<Return>", submit)
        entry.bind("<KP_Enter>", submit)
        window.bind("<Escape>", done)
        window.protocol("WM_DELETE_WINDOW", done)
        window.update_idletasks()
        x = (window.winfo_screenwidth() - window.winfo_reqwidth()) // 2
        y = window.winfo_screenheight() // 3
        window.geometry(f"+{x}+{y}")
        state["window"] = window
        self.is_open = True
        window.wait_visibility()
        window.lift()
        entry.focus_force()
