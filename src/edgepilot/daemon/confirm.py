"""Confirmations of daemon runs: every attached client, a window on this desktop and a desktop notification may
answer; the first answer wins.

    policy gate ──ask──▶ DaemonConfirmer ──confirm event──▶ subscribed clients ──answer op──┐
                               │ ├──────the question window (daemon/windows.py)─────────────┤
                               │ └──────notify-send (with actions where libnotify has them)─┤
                               ◀──────────────────── first answer, else "no" at the timeout ┘

No answer within ``confirm_timeout`` is a refusal; a stop of the run refuses
at once. Clients come and go freely: the run waits on the confirmation, never
on a client.
"""

from __future__ import annotations

import html
import itertools
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edgepilot.agent.events import confirm_event, confirmed_event
from edgepilot.agent.loop import RunControl
from edgepilot.daemon.bus import EventBus
from edgepilot.policy.confirm import Answer, ConfirmRequest, ConfirmResult
from edgepilot.safetext import for_terminal

if TYPE_CHECKING:
    from edgepilot.daemon.windows import DesktopWindows

log = logging.getLogger("edgepilot.daemon")

NotifyMode = Literal["actions", "plain", "off"]


class AnswerRefused(Exception):
    """An answer that cannot be taken: no such confirmation, or it was already answered."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Pending:
    """One question to the user, open until answered, refused by a stop, or timed out."""

    id: str
    run: str
    request: ConfirmRequest
    timeout: float
    asked_at: float = field(default_factory=time.monotonic)
    answer: Answer | None = None
    by: str = ""
    note: str = ""
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def settle(self, answer: Answer, by: str, note: str = "") -> bool:
        """Record the answer if none was given yet; True when this one counts."""
        with self._lock:
            if self.answer is not None:
                return False
            self.answer, self.by, self.note = answer, by, note
        self._done.set()
        return True

    def wait(self, seconds: float) -> bool:
        return self._done.wait(seconds)

    def summary(self) -> dict:
        left = max(0.0, self.timeout - (time.monotonic() - self.asked_at))
        return {"id": self.id, "run": self.run, "action": self.request.action, "target": self.request.target,
                "rule": self.request.rule, "reason": self.request.reason, "app": self.request.app,
                "consequence": self.request.consequence, "seconds_left": round(left, 1)}


def session_bus() -> str | None:
    """The D-Bus session bus address notify-send would use, or None where there is none."""
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    if address:
        return address
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and Path(runtime, "bus").is_socket():
        return f"unix:path={Path(runtime, 'bus')}"
    return None


class Notifier:
    """Desktop notifications through ``notify-send``.

    ``actions``: libnotify ≥ 0.7.9 (``--action`` in ``notify-send --help``): Allow / Refuse / Always buttons that
    answer the confirmation. ``plain``: an older notify-send: a notice that says how to answer.
    ``off``: no notify-send, or turned off in config.toml.
    """

    def __init__(self, mode: NotifyMode, reason: str = "") -> None:
        self.mode = mode
        self.reason = reason
        self.last_error = ""

    @classmethod
    def detect(cls, enabled: bool = True) -> Notifier:
        if not enabled:
            return cls("off", "turned off ([daemon] notify = false)")
        exe = shutil.which("notify-send")
        if exe is None:
            return cls("off", "notify-send is not installed (Debian: libnotify-bin)")
        if not session_bus():  # notify-send would fail at every question, and only the log would say
            return cls("off", "no D-Bus session bus ($DBUS_SESSION_BUS_ADDRESS is not set and $XDG_RUNTIME_DIR/bus "
                              "does not exist), so no notification can be shown; answer in `edgepilot tui --attach` "
                              "or `edgepilot daemon answer`")
        try:
            out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError) as exc:
            return cls("off", f"notify-send does not run: {exc}")
        if "--action" in out.stdout + out.stderr:
            return cls("actions", "notify-send with actions")
        return cls("plain", "notify-send without --action (libnotify < 0.7.9): answer in a client")

    def show(self, pending: Pending, on_answer: Callable[[Answer], None]) -> subprocess.Popen | None:
        """Show the question; with actions, a click on a button calls ``on_answer`` (from a watcher thread)."""
        if self.mode == "off":
            return None
        summary, body = notification_text(pending.request)
        how = (f"Answer in `edgepilot tui --attach` or `edgepilot daemon answer {pending.id} yes|no|always`; "
               f"no answer in {int(pending.timeout)} s is a refusal.")
        cmd = ["notify-send", "-a", "edgepilot", "-u", "critical", "-t", str(int(pending.timeout * 1000))]
        if self.mode == "actions":
            cmd += ["-A", "yes=Allow", "-A", "no=Refuse", "-A", "always=Always (this task)"]
        cmd += [summary, f"{body}\n\n{how}"]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
        except OSError as exc:
            self.last_error = f"notify-send failed: {exc}"
            log.warning(self.last_error)
            return None
        threading.Thread(target=self._watch, args=(proc, on_answer), name="daemon-notify", daemon=True).start()
        return proc

    def announce(self, lines: list[str], seconds: float) -> None:
        """A notice that goes by itself (how a run ended); nothing to answer, nothing waited for."""
        if self.mode == "off" or not lines:
            return
        body = html.escape("\n".join(for_terminal(line, newlines=False, limit=400) for line in lines[1:]), quote=False)
        cmd = ["notify-send", "-a", "edgepilot", "-t", str(int(seconds * 1000)),
               f"edgepilot: {for_terminal(lines[0], newlines=False, limit=170)}", body]
        try:
            subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        except OSError as exc:
            self.last_error = f"notify-send failed: {exc}"
            log.warning(self.last_error)

    def _watch(self, proc: subprocess.Popen, on_answer: Callable[[Answer], None]) -> None:
        out, err = proc.communicate()
        if proc.returncode not in (0, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL):
            self.last_error = f"notify-send exited {proc.returncode}: {err.strip()[:300]}"
            log.warning(self.last_error)
            return
        choice = (out or "").strip().splitlines()[-1:] or [""]
        if self.mode == "actions" and choice[0] in ("yes", "no", "always"):
            on_answer(choice[0])  # type: ignore[arg-type]

    @staticmethod
    def close(proc: subprocess.Popen | None) -> None:
        """Take the notification away (notify-send closes it on SIGINT while it waits for a click)."""
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=1)
        except (OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass


def notification_text(request: ConfirmRequest) -> tuple[str, str]:
    """The notification's summary (the action) and body (what it will do first, when known, then the rest of
    :meth:`ConfirmRequest.lines`). The body is escaped for the notification servers that read it as markup
    (``<a href>``, ``<img>``); both are made safe like a terminal line."""
    summary = f"edgepilot asks before: {for_terminal(request.action, newlines=False, limit=170)}"
    body = "\n".join(line.strip() for line in request.lines()[1:])
    return summary, html.escape(body, quote=False)


class Confirmations:
    """The open confirmations of every run, answerable by id."""

    def __init__(self, bus: EventBus, notifier: Notifier, windows: DesktopWindows | None = None) -> None:
        self.bus = bus
        self.notifier = notifier
        self.windows = windows  # the question window on this desktop, once the daemon's windows are up
        self._lock = threading.Lock()
        self._open: dict[str, Pending] = {}
        self._ids = itertools.count(1)

    def ask(self, run: str, request: ConfirmRequest, timeout: float, control: RunControl) -> ConfirmResult:
        """Ask every subscriber and the desktop; block until the first answer, a stop of the run, or the timeout."""
        pending = Pending(id=f"c{next(self._ids)}", run=run, request=request, timeout=timeout)
        with self._lock:
            self._open[pending.id] = pending
        event = confirm_event(run, id=pending.id, timeout=timeout, request=request.to_json())
        full = {**event, "request": request.to_json(screenshot=True)} if request.screenshot_png else None
        self.bus.emit(event, full, keep_full=True)
        shown = self.notifier.show(pending, lambda answer: pending.settle(answer, "notification"))
        windows = self.windows if self.windows is not None and self.windows.ready else None
        if windows is not None:
            windows.ask(pending.id, request.lines(), timeout, lambda answer: pending.settle(answer, "window"))
        try:
            deadline = pending.asked_at + timeout
            while not pending.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                if control.stopped():
                    pending.settle("no", "stop", f"the run was stopped ({control.reason})")
                elif time.monotonic() >= deadline:
                    pending.settle("no", "timeout", f"no answer within {timeout:g} s")
        finally:
            with self._lock:
                self._open.pop(pending.id, None)
            Notifier.close(shown)
            if windows is not None and not windows.dismiss(pending.id):  # off the screen before the next look
                log.warning("confirmation %s: its window did not close within 2 s", pending.id)
        answer: Answer = pending.answer or "no"
        self.bus.emit(confirmed_event(run, id=pending.id, answer=answer, by=pending.by))
        log.info("confirmation %s of run %s: %s (by %s)", pending.id, run, answer, pending.by)
        return ConfirmResult(answer, pending.note or ("" if answer != "no" else f"refused by the user ({pending.by})"))

    def ask_value(self, run: str, name: str, description: str, secret: bool, timeout: float,
                  control: RunControl) -> str | None:
        """Ask the person at this desktop for a value the goal left out (a PIN, a day), in a window; None when
        there is no window to ask in, or no answer within ``timeout``, a cancel, or a stop of the run (the run then
        ends saying what is missing). The value stays out of the daemon's log."""
        windows = self.windows if self.windows is not None and self.windows.ready else None
        if windows is None:
            return None
        key = f"v{next(self._ids)}"
        given: list[str | None] = []
        answered = threading.Event()

        def on_value(value: str | None) -> None:
            given.append(value)
            answered.set()

        lines = [f"The task needs {for_terminal(description, newlines=False, limit=200)} ({name})",
                 f"run {run}: the goal does not say it. Type it and press Enter; Escape leaves the task undone.",
                 f"No answer in {int(timeout)} s leaves it undone too."]
        windows.ask_value(key, lines, secret, on_value)
        log.info("run %s asks for %s in a window", run, name)
        deadline = time.monotonic() + timeout
        try:
            while not answered.wait(0.1):
                if control.stopped() or time.monotonic() >= deadline:
                    break
        finally:
            windows.dismiss(key)
        value = given[0] if given else None
        log.info("run %s: %s %s", run, name, "given" if value and value.strip() else "not given")
        return value

    def answer(self, confirm_id: str, answer: Answer, by: str = "client") -> Pending:
        """Answer an open confirmation.

        Raises:
            AnswerRefused: no open confirmation has this id (unknown, answered, timed out).
        """
        with self._lock:
            pending = self._open.get(confirm_id)
        if pending is None:
            raise AnswerRefused("not_found", f"no open confirmation {confirm_id!r}: it was answered, timed out, or "
                                "never existed (`edgepilot daemon status` lists the open ones)")
        if not pending.settle(answer, by):
            raise AnswerRefused("answered", f"confirmation {confirm_id} was already answered "
                                f"({pending.answer}, by {pending.by}); the first answer wins")
        return pending

    def refuse_run(self, run: str, why: str) -> None:
        """Refuse every open confirmation of ``run`` at once (the run is being stopped)."""
        with self._lock:
            mine = [p for p in self._open.values() if p.run == run]
        for pending in mine:
            pending.settle("no", "stop", why)

    def open(self) -> list[dict]:
        with self._lock:
            return [p.summary() for p in self._open.values()]


class DaemonConfirmer:
    """The :class:`Confirmer` of one daemon run (what the policy gate calls)."""

    def __init__(self, confirmations: Confirmations, run: str, control: RunControl) -> None:
        self.confirmations = confirmations
        self.run = run
        self.control = control

    def ask(self, request: ConfirmRequest, timeout: float) -> ConfirmResult:
        return self.confirmations.ask(self.run, request, timeout, self.control)
