"""Asking the user before a sensitive step: the ``Confirmer`` seam and the terminal prompt.

Whatever asks (this terminal prompt, the TUI's modal, the daemon's
notification) answers ``yes``, ``no`` or ``always`` (yes, and do not ask
again for this rule during this task). No answer in time is ``no``.
"""

from __future__ import annotations

import base64
import os
import select
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TextIO

from edgepilot.safetext import for_terminal

Answer = Literal["yes", "no", "always"]


@dataclass(frozen=True)
class ConfirmRequest:
    """What the user is shown: the action, what it presses, what that will do, why the policy asks, and where.

    ``consequence`` is one plain sentence naming what will happen (``this deletes the note "Packing list" (the
    task names "groceries")``), shown first where there is one. Every field can hold text from the screen or
    the task: whoever shows them makes them safe (:meth:`lines` does, for a terminal).
    """

    task: str
    action: str
    target: str
    rule: str
    category: str
    reason: str
    app: str
    screen: str = ""
    opens: str = ""  # the app an open_app action would bring to the front
    screenshot_png: bytes | None = field(default=None, repr=False)
    target_bounds: tuple[int, int, int, int] | None = None  # left, top, right, bottom of the target on the screenshot
    consequence: str = ""

    def to_json(self, *, screenshot: bool = False) -> dict:
        """The request as JSON (for the daemon's clients); the screenshot as base64 PNG only when asked for."""
        out = {"task": self.task, "action": self.action, "target": self.target, "rule": self.rule,
               "category": self.category, "reason": self.reason, "app": self.app, "screen": self.screen,
               "opens": self.opens, "target_bounds": list(self.target_bounds) if self.target_bounds else None,
               "consequence": self.consequence}
        if screenshot and self.screenshot_png:
            out["screenshot_png"] = base64.b64encode(self.screenshot_png).decode("ascii")
        return out

    @classmethod
    def from_json(cls, data: dict) -> ConfirmRequest:
        png = data.get("screenshot_png")
        bounds = data.get("target_bounds")
        return cls(task=str(data.get("task", "")), action=str(data.get("action", "")),
                   target=str(data.get("target", "")), rule=str(data.get("rule", "")),
                   category=str(data.get("category", "")),
                   reason=str(data.get("reason", "")), app=str(data.get("app", "")), screen=str(data.get("screen", "")),
                   opens=str(data.get("opens", "")), screenshot_png=base64.b64decode(png) if png else None,
                   target_bounds=tuple(int(v) for v in bounds) if bounds else None,
                   consequence=str(data.get("consequence") or ""))

    def lines(self) -> list[str]:
        """The request as lines for a terminal or a notification: what will happen first (when known), every
        value on one line with control and invisible characters shown as escapes."""

        def safe(value: str, limit: int = 300) -> str:
            return for_terminal(value, newlines=False, limit=limit)

        out = [f"The agent wants to: {safe(self.action, 200)}"]
        if self.consequence:
            out.append(f"  effect: {safe(self.consequence)}")
        if self.target:
            out.append(f"  on:     {safe(self.target, 200)}")
        out.append(f"  app:    {safe(self.app, 120) or 'unknown'}" + (f" (opens {safe(self.opens, 120)})"
                                                                      if self.opens else ""))
        out.append(f"  why it asks: {safe(self.reason or self.category) or 'no rule allows this'} "
                   f"(rule {safe(self.rule, 80)})")
        out.append(f"  task:   {safe(self.task)}")
        return out


@dataclass(frozen=True)
class ConfirmResult:
    answer: Answer
    note: str = ""


class Confirmer(Protocol):
    """Asks a person; anything but a clear yes within ``timeout`` seconds is a refusal."""

    def ask(self, request: ConfirmRequest, timeout: float) -> ConfirmResult: ...


class RefuseAll:
    """No one to ask (a pipe, a benchmark with no simulated user): every request is refused."""

    def __init__(self, why: str = "no one is there to confirm") -> None:
        self.why = why

    def ask(self, request: ConfirmRequest, timeout: float) -> ConfirmResult:
        return ConfirmResult("no", self.why)


class TerminalConfirmer:
    """A prompt on the controlling terminal: ``y`` yes, ``a`` always for this task, anything else no.

    When stdin is not a terminal nobody can answer, so the request is refused
    at once (a run piped into a file must not hang, nor proceed). A run
    stopped while the question waits (``should_stop``: SIGTERM) refuses it.
    """

    POLL_S = 0.2

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stderr
        self.should_stop = should_stop

    def ask(self, request: ConfirmRequest, timeout: float) -> ConfirmResult:
        if not _is_tty(self.stdin):
            return ConfirmResult("no", "no terminal to ask on (stdin is not a terminal)")
        out = self.stdout
        out.write("\n" + "\n".join(request.lines()) + "\n")
        out.write(f"Allow? [y]es / [n]o / [a]lways for this task ({int(timeout)} s, then no): ")
        out.flush()
        deadline = time.monotonic() + timeout
        while True:
            if self.should_stop is not None and self.should_stop():
                out.write("\nthe run was stopped: refused\n")
                return ConfirmResult("no", "the run was stopped")
            left = deadline - time.monotonic()
            if left <= 0:
                out.write("\nno answer in time: refused\n")
                return ConfirmResult("no", f"no answer within {int(timeout)} s")
            ready, _, _ = select.select([self.stdin], [], [], min(left, self.POLL_S))
            if ready:
                break
        reply = self.stdin.readline().strip().lower()
        if reply in ("y", "yes"):
            return ConfirmResult("yes")
        if reply in ("a", "always"):
            return ConfirmResult("always")
        return ConfirmResult("no", "refused by the user")


def _is_tty(stream: TextIO) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
