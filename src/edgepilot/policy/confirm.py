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
from dataclasses import dataclass, field
from typing import Literal, Protocol, TextIO

Answer = Literal["yes", "no", "always"]


@dataclass(frozen=True)
class ConfirmRequest:
    """What the user is shown: the action, what it presses, why the policy asks, and where."""

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

    def to_json(self, *, screenshot: bool = False) -> dict:
        """The request as JSON (for the daemon's clients); the screenshot as base64 PNG only when asked for."""
        out = {"task": self.task, "action": self.action, "target": self.target, "rule": self.rule,
               "category": self.category, "reason": self.reason, "app": self.app, "screen": self.screen,
               "opens": self.opens, "target_bounds": list(self.target_bounds) if self.target_bounds else None}
        if screenshot and self.screenshot_png:
            out["screenshot_png"] = base64.b64encode(self.screenshot_png).decode("ascii")
        return out

    @classmethod
    def from_json(cls, data: dict) -> ConfirmRequest:
        png = data.get("screenshot_png")
        bounds = data.get("target_bounds")
        return cls(task=str(data.get("task", "")), action=str(data.get("action", "")), target=str(data.get("target", "")),
                   rule=str(data.get("rule", "")), category=str(data.get("category", "")),
                   reason=str(data.get("reason", "")), app=str(data.get("app", "")), screen=str(data.get("screen", "")),
                   opens=str(data.get("opens", "")), screenshot_png=base64.b64decode(png) if png else None,
                   target_bounds=tuple(int(v) for v in bounds) if bounds else None)

    def lines(self) -> list[str]:
        out = [f"The agent wants to: {self.action}"]
        if self.target:
            out.append(f"  on:     {self.target}")
        out.append(f"  app:    {self.app or 'unknown'}" + (f" (opens {self.opens})" if self.opens else ""))
        out.append(f"  why it asks: {self.reason or self.category or 'no rule allows this'} (rule {self.rule})")
        out.append(f"  task:   {self.task}")
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
    at once (a run piped into a file must not hang, nor proceed).
    """

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stderr

    def ask(self, request: ConfirmRequest, timeout: float) -> ConfirmResult:
        if not _is_tty(self.stdin):
            return ConfirmResult("no", "no terminal to ask on (stdin is not a terminal)")
        out = self.stdout
        out.write("\n" + "\n".join(request.lines()) + "\n")
        out.write(f"Allow? [y]es / [n]o / [a]lways for this task ({int(timeout)} s, then no): ")
        out.flush()
        ready, _, _ = select.select([self.stdin], [], [], timeout)
        if not ready:
            out.write("\nno answer in time: refused\n")
            return ConfirmResult("no", f"no answer within {int(timeout)} s")
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
