"""Running desktop tasks: real Debian applications, started fresh, checked on what they leave behind.

The tasks themselves are templates (:mod:`edgepilot.sim.desktop.templates`,
``templates/*.yaml``). This module has what running one needs: the
:class:`TaskContext` (a fresh folder, the applications started for the task,
stopped after it), the :class:`DesktopTask` interface, and the reference's
building blocks. A reference is a list of steps, each turning the current
observation into one action, with elements found by class and name in the
accessibility tree (never pixels); a step that does not find what it needs
yet (a dialog still opening) waits. :class:`Script` runs it as an agent
through the same loop as the model (``FnAgent(name, script.next_action)``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepilot.actions import Action, Finish, Wait
from edgepilot.errors import TaskError
from edgepilot.perception.types import Observation, UINode

Step = Callable[[Observation], Action | None]
"""One step of a reference: the action for this screen, or None when the screen is not ready for it yet."""

APP_ENV = {"GSETTINGS_BACKEND": "memory"}


# ---------------------------------------------------------------- running one task


@dataclass
class TaskContext:
    """One run of a task: the device, a fresh folder, the applications started for it.

    The folder holds the task's files and the applications' settings
    (XDG_CONFIG_HOME and friends point into it), and is removed by :meth:`close`,
    which also stops what the agent opened with ``open_app`` during the task (a
    Mousepad left running would take the next task's file into its own window).
    """

    device: Any
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="edgepilot-task-")))
    procs: list[subprocess.Popen] = field(default_factory=list)
    _already: tuple[int, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        self._already = tuple(p.pid for p in self._launched())

    def _launched(self) -> list[subprocess.Popen]:
        launched = getattr(self.device, "launched", None)
        return launched if isinstance(launched, list) else []

    def launch(self, argv: list[str], cwd: Path | None = None) -> subprocess.Popen:
        """Start an application on the device's display, in the task's folder, with its own settings.

        Raises:
            TaskError: it cannot be started (not installed).
        """
        home = self.workdir / "home"
        for sub in (".config", ".local/share", ".cache"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        env = {**self.device.app_env(), **APP_ENV, "XDG_CONFIG_HOME": str(home / ".config"),
               "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache")}
        log = open(self.workdir / f"{Path(argv[0]).name}.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(argv, env=env, cwd=cwd or self.workdir, stdin=subprocess.DEVNULL,  # noqa: S603
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise TaskError(f"cannot start {argv[0]} ({exc}); install it (scripts/system-deps.sh installs "
                            "the desktop suite's applications)") from exc
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def wait_for(self, ready: Callable[[Observation], bool], what: str, timeout: float = 20.0) -> Observation:
        """Observe until ``ready`` holds.

        Raises:
            TaskError: it did not within ``timeout`` seconds (the message shows the last screen).
        """
        deadline = time.monotonic() + timeout
        while True:
            obs = self.device.observe()
            if ready(obs):
                self._hover(obs)
                return obs
            for proc in self.procs:
                if proc.poll() is not None and proc.returncode != 0:
                    raise TaskError(f"{proc.args[0]} exited with {proc.returncode} while waiting for {what}; "
                                    f"see {self.workdir}/{Path(proc.args[0]).name}.log")
            if time.monotonic() > deadline:
                raise TaskError(f"{what} did not show within {timeout:.0f} s; the screen was:\n{obs.to_text(30)}")
            time.sleep(0.2)

    def _hover(self, obs: Observation) -> None:
        """Put the pointer over the application's window: without a window manager the keyboard follows it."""
        window = find(obs, cls=("Window", "Dialog", "FileChooser"))
        if window is not None:
            self.device.move_pointer(*obs.elements[window].bounds.center)

    def close(self) -> None:
        """Stop every application this task or its agent started and remove its folder."""
        launched = self._launched()
        opened = [p for p in launched if p.pid not in self._already]
        for proc in [*reversed(self.procs), *opened]:
            _stop(proc)
        launched[:] = [p for p in launched if p not in opened]
        self.procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait(3)


@dataclass(frozen=True)
class CheckResult:
    """Whether a task succeeded, and what was found."""

    success: bool
    failed: tuple[str, ...] = ()
    found: str = ""


class DesktopTask(ABC):
    """A task on real applications: start them, say the goal, script the reference, check the world."""

    id: str
    app: str  # the program it needs (checked on PATH)
    split = "desktop"  # a template's split (train, test) where the task is an instance of one
    sensitive: tuple[str, ...] = ()  # the kinds of sensitive step the task needs (the simulated user approves them)

    @property
    def template(self) -> str:
        """The kind of task (a template's id; a task of its own kind: its id)."""
        return self.id

    @property
    def apps(self) -> tuple[str, ...]:
        """Every application the task uses."""
        return (self.app,)

    @abstractmethod
    def goal(self, ctx: TaskContext) -> str:
        """The task in a user's words (it may name the task's folder)."""

    @abstractmethod
    def start(self, ctx: TaskContext) -> None:
        """Prepare files and start the application; returns when it is ready to use.

        Raises:
            TaskError: the application cannot be started or does not show.
        """

    @abstractmethod
    def reference(self, ctx: TaskContext) -> list[Step]:
        """The scripted reference sequence."""

    @abstractmethod
    def check(self, ctx: TaskContext, answer: str | None) -> CheckResult:
        """Judge the task from the real world (files, the application's accessibility tree)."""

    def available(self) -> str | None:
        """Why this task cannot run here (its program is missing), or None."""
        if shutil.which(self.app) is None:
            return f"{self.app} is not installed (scripts/system-deps.sh installs it)"
        return None


# ---------------------------------------------------------------- finding things on screen


def _norm(text: str) -> str:
    return " ".join(text.replace("\u2026", "...").split()).casefold()


def find(obs: Observation, *, cls: str | Iterable[str] | None = None, label: str | None = None,
         after: str | None = None, enabled: bool | None = None, package: str | None = None,
         text_has: str | None = None) -> int | None:
    """The first element that fits: class name(s), label (whole, ignoring case and spacing), enabled,
    application, text holding ``text_has`` (a field's content, a terminal's screen; ignoring case and spacing).

    ``after`` finds the first fitting element that comes after the element
    labelled so (a field after its label: "Search for:").
    """
    classes = {cls} if isinstance(cls, str) else set(cls) if cls is not None else None
    start = 0
    if after is not None:
        anchor = find(obs, label=after)
        if anchor is None:
            return None
        start = anchor + 1
    for i, node in enumerate(obs.elements[start:], start):
        if classes is not None and node.class_name not in classes:
            continue
        if label is not None and _norm(node.label) != _norm(label):
            continue
        if enabled is not None and node.enabled != enabled:
            continue
        if package is not None and node.package != package:
            continue
        if text_has is not None and _norm(text_has) not in _norm(node.text):
            continue
        return i
    return None


class Script:
    """Runs a reference: each call gives the next step's action for the screen, or waits for it.

    Waits grow (0.1 s, 0.2 s...), so no two are the same action and the loop's
    stuck detector stays quiet; after ``patience`` waits for one step the
    script gives up with a failed ``finish`` saying which step.
    """

    def __init__(self, steps: list[Step], patience: int = 12) -> None:
        self.steps = steps
        self.patience = patience
        self.index = 0
        self.waits = 0

    def next_action(self, obs: Observation) -> Action:
        if self.index >= len(self.steps):
            return Finish(status="success")
        action = self.steps[self.index](obs)
        if action is None:
            self.waits += 1
            if self.waits > self.patience:
                return Finish(status="failure", answer=f"step {self.index + 1} never found what it needs")
            return Wait(seconds=round(0.1 * self.waits, 1))
        self.index += 1
        self.waits = 0
        return action


# ---------------------------------------------------------------- reading applications


def calculator_display(nodes: Iterable[UINode]) -> str | None:
    """Galculator's display: its first text node that reads as a number."""
    for node in nodes:
        if node.package == "galculator" and node.class_name in ("Text", "EditText") and _number(node.text) is not None:
            return node.text.strip()
    return None


def _number(text: str) -> float | None:
    try:
        return float(text.strip().replace(",", "").replace(" ", "").replace("\u2212", "-"))
    except ValueError:
        return None
