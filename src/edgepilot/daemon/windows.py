"""The daemon's small windows on this desktop (tkinter): the task prompt, questions before an action, results.

    hotkey ──▶ prompt ("edgepilot: new task")   Enter: queue the task · Escape: cancel
    policy asks ──▶ question ("edgepilot: confirm")   Allow · Refuse · Always (this task); closing it refuses
    a goal leaves a value out ──▶ value ("edgepilot: a value")   OK (Enter) · Cancel (Escape); secrets hidden
    a run from the prompt ends ──▶ notice ("edgepilot: result")   the outcome and the answer; goes by itself

All of tkinter lives on one thread of its own (tkinter objects must not cross
threads); every method here may be called from any thread and only hands the
work over. A question or a notice does not take the keyboard focus from the application the agent works in
(a window manager may still give a new window the focus), and is gone from the screen before the run
looks at it again: :meth:`DesktopWindows.dismiss` and :meth:`DesktopWindows.clear_notices`
wait until the window is unmapped. Every text shown is made safe first
(:func:`edgepilot.safetext.for_terminal`): a task or a screen's text cannot
draw a different question than the one asked.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from edgepilot.safetext import for_terminal

log = logging.getLogger("edgepilot.daemon")

PROMPT_TITLE = "edgepilot: new task"
CONFIRM_TITLE = "edgepilot: confirm"
NOTICE_TITLE = "edgepilot: result"
VALUE_TITLE = "edgepilot: a value"
WRAP = 520  # pixels: long lines wrap inside the small windows
ANSWERS = (("Allow", "yes"), ("Refuse", "no"), ("Always (this task)", "always"))


def safe(text: object, limit: int = 300) -> str:
    return for_terminal(text, newlines=False, limit=limit)


class DesktopWindows:
    """The prompt, the questions and the notices, on one tkinter thread.

    Args:
        submit: called with the typed task on the window thread; returns an error to show, or None when the
            task was queued (the prompt then closes).
        device: shown in the prompt (where the task will run).
    """

    def __init__(self, submit: Callable[[str], str | None], device: str) -> None:
        self._submit = submit
        self.device = device
        self._requests: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self.error = ""
        self.is_open = False  # the prompt is showing
        self.asking: list[str] = []  # ids of the questions showing
        self.notices = 0  # notices showing
        self.last_notice: list[str] = []  # what the last notice said (``daemon status``)

    # ------------------------------------------------------------ any thread

    def start(self) -> bool:
        """Start the window thread (nothing is shown yet); False when tkinter cannot open the display."""
        self._thread = threading.Thread(target=self._main, name="daemon-windows", daemon=True)
        self._thread.start()
        self._started.wait(10)
        return self._started.is_set() and not self.error

    @property
    def ready(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._started.is_set() and not self.error

    def open(self) -> None:
        """Show the task prompt (raise it when it is already showing)."""
        self._requests.put(("prompt",))

    def ask(self, confirm_id: str, lines: list[str], seconds: float, on_answer: Callable[[str], None]) -> None:
        """Show a question; a button calls ``on_answer`` with ``yes``, ``no`` or ``always`` (closing it: ``no``)."""
        self._requests.put(("ask", confirm_id, list(lines), seconds, on_answer))

    def dismiss(self, confirm_id: str, wait: float = 2.0) -> bool:
        """Take a question away; True once it is off the screen (or was never shown), within ``wait`` s."""
        return self._call(("dismiss", confirm_id), wait)

    def ask_value(self, key: str, lines: list[str], secret: bool, on_value: Callable[[str | None], None]) -> None:
        """Ask for a value the goal left out; ``on_value`` gets the text (None: cancelled or closed). A secret is
        shown as dots. :meth:`dismiss` with ``key`` takes the window away."""
        self._requests.put(("value", key, list(lines), secret, on_value))

    def notice(self, lines: list[str], seconds: float) -> None:
        """Show a notice for ``seconds`` (or until OK); it does not ask for the focus."""
        self.last_notice = [safe(line, 400) for line in lines]
        self._requests.put(("notice", list(lines), seconds))

    def clear_notices(self, wait: float = 2.0) -> bool:
        """Take every notice away (a run is about to look at this screen); True once they are gone."""
        return self._call(("clear",), wait)

    def close(self) -> None:
        self._requests.put(("quit",))
        if self._thread is not None:
            self._thread.join(3)

    def _call(self, request: tuple[Any, ...], wait: float) -> bool:
        if not self.ready:
            return True
        done = threading.Event()
        self._requests.put((*request, done))
        return done.wait(wait)

    # ------------------------------------------------------------ the window thread

    def _main(self) -> None:
        try:
            self._loop()
        except Exception:  # noqa: BLE001 - the windows are a convenience; the daemon and its socket go on
            log.exception("the desktop windows stopped")
            self.error = "the desktop windows stopped (see the daemon log)"
        finally:
            self._started.set()
            gc.collect()  # the Tcl interpreter is freed here, on its own thread (never by another one at exit)

    def _loop(self) -> None:
        try:
            import tkinter as tk

            tk.NoDefaultRoot()  # no module-level root that would outlive this thread
            root = tk.Tk(className="edgepilot")
            root.withdraw()
        except Exception as exc:  # noqa: BLE001 - no tkinter, or no display: the windows are off
            self.error = f"the desktop windows are off: tkinter cannot open the display ({exc})"
            return
        self._started.set()
        state: dict[str, Any] = {"prompt": None, "questions": {}, "notices": []}

        def poll() -> None:
            while True:
                try:
                    request = self._requests.get_nowait()
                except queue.Empty:
                    break
                what, args = request[0], request[1:]
                if what == "quit":
                    root.quit()
                    return
                try:
                    if what == "prompt":
                        self._prompt(tk, root, state)
                    elif what == "ask":
                        self._question(tk, root, state, *args)
                    elif what == "value":
                        self._value(tk, root, state, *args)
                    elif what == "dismiss":
                        self._take_away(root, state, *args)
                    elif what == "notice":
                        self._notice(tk, root, state, *args)
                    elif what == "clear":
                        (done,) = args
                        windows, state["notices"] = state["notices"], []
                        self.notices = 0
                        for window in windows:
                            self._gone(root, window, None)
                        done.set()
                except Exception as exc:  # noqa: BLE001 - one broken window must not stop the others, or the polling
                    if isinstance(exc, tk.TclError):  # a window closed under us: nothing to show any more
                        log.warning("desktop window %s: %s", what, exc)
                    else:
                        log.exception("desktop window %s", what)
                    if what in ("dismiss", "clear"):
                        args[-1].set()
                    elif what == "value":  # nobody will answer it: the run is told there is no value
                        args[-1](None)
            root.after(50, poll)

        root.after(50, poll)
        root.mainloop()
        state.clear()
        try:
            root.destroy()
        except tk.TclError:
            pass

    def _take_away(self, root: Any, state: dict[str, Any], key: str, done: threading.Event | None = None) -> None:
        """A question or a value box answered or given up: off the screen, out of ``asking``."""
        self._gone(root, state["questions"].pop(key, None), done)
        self.asking = list(state["questions"])

    @staticmethod
    def _gone(root: Any, window: Any, done: threading.Event | None) -> None:
        if window is not None and window.winfo_exists():
            window.destroy()
            root.update()  # unmapped now, before the run's next screenshot
        if done is not None:
            done.set()

    @staticmethod
    def _place(window: Any, where: str) -> None:
        window.update_idletasks()
        width, height = window.winfo_screenwidth(), window.winfo_screenheight()
        if where == "corner":  # top right, out of the way of most of an application's controls
            x, y = width - window.winfo_reqwidth() - 16, 16
        else:
            x, y = (width - window.winfo_reqwidth()) // 2, height // 3
        window.geometry(f"+{max(0, x)}+{max(0, y)}")

    def _prompt(self, tk: Any, root: Any, state: dict[str, Any]) -> None:
        window = state["prompt"]
        if window is not None and window.winfo_exists():
            window.lift()
            window.focus_force()
            return
        window = tk.Toplevel(root)
        window.title(PROMPT_TITLE)
        window.attributes("-topmost", True)
        window.resizable(False, False)
        tk.Label(window, text=f"Task for the agent on {safe(self.device, 120)}   (Enter: run, Esc: cancel)",
                 anchor="w").pack(fill="x", padx=10, pady=(10, 4))
        text = tk.StringVar(master=window)
        entry = tk.Entry(window, textvariable=text, width=64)
        entry.pack(fill="x", padx=10)
        problem = tk.Label(window, text="", fg="#b00020", anchor="w", justify="left", wraplength=480)
        problem.pack(fill="x", padx=10, pady=(4, 10))

        def done(_event: Any = None) -> None:
            state["prompt"] = None
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
                problem.config(text=safe(error, 400))
                entry.focus_force()
            else:
                done()

        entry.bind("<Return>", submit)
        entry.bind("<KP_Enter>", submit)
        window.bind("<Escape>", done)
        window.protocol("WM_DELETE_WINDOW", done)
        self._place(window, "middle")
        state["prompt"] = window
        self.is_open = True
        window.wait_visibility()
        window.lift()
        entry.focus_force()

    @staticmethod
    def _lines_window(tk: Any, root: Any, title: str, lines: list[str]) -> Any:
        """An always-on-top window: the first line in bold, the others below it, each made safe."""
        window = tk.Toplevel(root)
        window.title(title)
        window.attributes("-topmost", True)
        window.resizable(False, False)
        head, *rest = [safe(line, 400).strip() for line in lines]
        tk.Label(window, text=head, anchor="w", justify="left", wraplength=WRAP,
                 font=("TkDefaultFont", 11, "bold")).pack(fill="x", padx=12, pady=(12, 4))
        for line in rest:
            tk.Label(window, text=line, anchor="w", justify="left", wraplength=WRAP).pack(fill="x", padx=12)
        return window

    def _question(self, tk: Any, root: Any, state: dict[str, Any], confirm_id: str, lines: list[str],
                  seconds: float, on_answer: Callable[[str], None]) -> None:
        window = self._lines_window(tk, root, CONFIRM_TITLE, lines or ["The agent asks before an action"])
        left = tk.Label(window, text="", anchor="w", fg="#555555")
        left.pack(fill="x", padx=12, pady=(6, 0))
        buttons = tk.Frame(window)
        buttons.pack(fill="x", padx=12, pady=12)
        deadline = time.monotonic() + seconds

        def answer(choice: str) -> None:
            self._take_away(root, state, confirm_id)
            on_answer(choice)

        for label, choice in ANSWERS:
            tk.Button(buttons, text=label, takefocus=1, command=lambda c=choice: answer(c)).pack(side="left",
                                                                                               padx=(0, 8))
        window.protocol("WM_DELETE_WINDOW", lambda: answer("no"))
        window.bind("<Escape>", lambda _e: answer("no"))

        def tick() -> None:
            if not window.winfo_exists():
                return
            left.config(text=f"No answer in {max(0, int(deadline - time.monotonic()))} s is a refusal.")
            window.after(500, tick)

        tick()
        self._place(window, "middle")
        state["questions"][confirm_id] = window
        self.asking = list(state["questions"])

    def _value(self, tk: Any, root: Any, state: dict[str, Any], key: str, lines: list[str], secret: bool,
               on_value: Callable[[str | None], None]) -> None:
        window = self._lines_window(tk, root, VALUE_TITLE, lines or ["The task needs a value"])
        text = tk.StringVar(master=window)
        entry = tk.Entry(window, textvariable=text, width=48, show="•" if secret else "")
        entry.pack(fill="x", padx=12, pady=(8, 0))

        def give(value: str | None) -> None:
            self._take_away(root, state, key)
            on_value(value)

        buttons = tk.Frame(window)
        buttons.pack(fill="x", padx=12, pady=12)
        def submit(_event: Any = None) -> None:
            if text.get().strip():  # Enter on an empty box asks again; Cancel or Escape is the way to give up
                give(text.get())

        tk.Button(buttons, text="OK", command=submit).pack(side="left", padx=(0, 8))
        tk.Button(buttons, text="Cancel", command=lambda: give(None)).pack(side="left")
        entry.bind("<Return>", submit)
        entry.bind("<KP_Enter>", submit)
        window.bind("<Escape>", lambda _e: give(None))
        window.protocol("WM_DELETE_WINDOW", lambda: give(None))
        self._place(window, "middle")
        state["questions"][key] = window
        self.asking = list(state["questions"])
        window.wait_visibility()
        window.lift()
        entry.focus_force()  # typed into like the prompt: the person just asked for this task

    def _notice(self, tk: Any, root: Any, state: dict[str, Any], lines: list[str], seconds: float) -> None:
        window = self._lines_window(tk, root, NOTICE_TITLE, lines or ["edgepilot"])

        def close() -> None:
            if window in state["notices"]:
                state["notices"].remove(window)
                self.notices = len(state["notices"])
            if window.winfo_exists():
                window.destroy()

        tk.Button(window, text="OK", takefocus=1, command=close).pack(anchor="e", padx=12, pady=10)
        window.protocol("WM_DELETE_WINDOW", close)
        self._place(window, "corner")
        window.after(int(max(1.0, seconds) * 1000), close)
        state["notices"].append(window)
        self.notices = len(state["notices"])
