"""What the MCP server's tools do, in plain Python (no MCP SDK here): list, observe, act, run a task, replay.

Every action goes through the policy gate ``edgepilot run`` uses (:func:`edgepilot.policy.gate_for`), built for
the goal the client states: the task scope (the apps the goal names) derives from that sentence. ``act`` calls
with the same device and goal share one gate, as the steps of one run do, so an "always" answer and a refusal
hold for the rest of that goal. The gates ask through :class:`~edgepilot.mcp.consent.ClientConfirmer`.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from edgepilot import paths
from edgepilot.actions import Action
from edgepilot.agent.loop import RunControl, StepReport
from edgepilot.config import Config
from edgepilot.controllers.base import ActResult
from edgepilot.errors import ConfigError
from edgepilot.mcp.consent import ClientConfirmer
from edgepilot.mcp.devices import DeviceHub, HeldDevice
from edgepilot.perception.describe import describe_action
from edgepilot.perception.signature import describe_change
from edgepilot.perception.types import Observation
from edgepilot.policy import Confirmer, Policy, PolicyGate, gate_for
from edgepilot.policy.gate import GateDecision
from edgepilot.safetext import for_terminal

if TYPE_CHECKING:
    from edgepilot.agent.session import AskValue

MAX_GATES = 32
"""Gates kept for (device, goal) pairs; the least recently used is dropped past this (it only forgets answers)."""


@dataclass(frozen=True)
class ActOutcome:
    """One ``act``: whether it was carried out, what happened or why not, and the screen now."""

    done: bool
    message: str
    screen: Observation
    decision: GateDecision | None = None
    result: ActResult | None = None


class TaskSummary(BaseModel):
    """How a ``run_task`` ended (its text fields made safe: they hold the model's and the screen's words)."""

    status: str = Field(description="finished, gave_up, stuck, budget, stopped, interrupted or error")
    reason: str = Field(description="why it ended")
    steps: int = Field(description="steps taken")
    answer: str | None = Field(description="what the agent answered, for a question")
    seconds: float
    trajectory: str = Field(description="the trajectory folder")
    run_id: str = Field(description="the run's id, for read_trajectory")


def _safe(text: object, limit: int | None = None) -> str:
    return for_terminal(text, newlines=False, limit=limit)


def _names_elements(action: Action) -> bool:
    """Whether the action points at numbered elements (which refer to the screen the client was shown)."""
    return any(isinstance(getattr(action, name, None), int) for name in ("target", "to"))


class Toolbox:
    """The tools' work, shared by every session of one server.

    Args:
        config: settings (step budget, confirmation timeout, screen re-check, where trajectories go).
        policy: the policy every action is checked against.
        devices: the devices the server opened.
        confirmer: who answers the gates' questions (the client of the call in progress).
        model: the model ``run_task`` uses when the client names none (None: config.toml's).
        opener: opens a model from a spec (:func:`edgepilot.models.registry.open_model`); loaded on first use.
    """

    def __init__(self, config: Config, policy: Policy, *, devices: DeviceHub, confirmer: Confirmer | None = None,
                 model: str | None = None, opener: Callable[..., Any] | None = None) -> None:
        self.config = config
        self.policy = policy
        self.devices = devices
        self.confirmer = confirmer or ClientConfirmer()
        self.default_model = model
        self._opener = opener
        self._gates: OrderedDict[tuple[str, str], PolicyGate] = OrderedDict()
        self._models: dict[str, Any] = {}
        self._model_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._runs: set[RunControl] = set()

    # ------------------------------------------------------------ list, observe

    def list_devices(self) -> list[dict[str, str]]:
        """The built-in virtual phone, the devices open in this server, running virtual phones, adb devices and a
        local desktop; ``device`` is what the other tools take."""
        from edgepilot.devices import list_devices

        open_now = self.devices.open_specs()
        rows = [{"device": "virtual", "kind": "virtual phone (built in)",
                 "state": "open" if "virtual" in open_now else "started on first use",
                 "description": open_now.get("virtual", "a fresh virtual phone, kept for this server's session")}]
        rows += [{"device": spec, "kind": "open", "state": "open", "description": text}
                 for spec, text in open_now.items() if spec != "virtual"]
        for row in list_devices(self.devices.adb_port):
            if row["serial"] not in open_now:
                rows.append({"device": row["serial"], "kind": row["kind"], "state": row["state"],
                             "description": row["address"]})
        return [{k: _safe(v, 200) for k, v in row.items()} for row in rows]

    def observe(self, device: str) -> Observation:
        """The screen of ``device`` now; the element numbers an ``act`` then names refer to it.

        Raises:
            DeviceError / PerceptionError / ConfigError: the device cannot be opened or read.
        """
        held = self.devices.get(device)
        with held.use() as opened:
            obs = opened.device.observe()
            held.shown = obs
        return obs

    # ------------------------------------------------------------ act

    def act(self, device: str, action: Action, goal: str) -> ActOutcome:
        """Carry out one action on ``device`` if the policy, with ``goal`` as the task, lets it (asking the client
        when the policy says to ask); the screen after it, or the screen as it is when refused.

        Raises:
            ValueError: no goal.
            DeviceError / PerceptionError / ConfigError / PolicyError: the device, or the gate, fails.
        """
        if not goal.strip():
            raise ValueError("say the goal this action serves (e.g. \"turn on Bluetooth\"): the policy's scope "
                             "derives from it")
        held = self.devices.get(device)
        with held.use() as opened:
            now = opened.device.observe()
            stale = self._stale(held, action, now)
            held.shown = now
            if stale:
                return ActOutcome(False, stale, now)
            decision = self._gate(held, goal)(action, now)
            if not decision.allowed:
                return ActOutcome(False, f"not carried out: {decision.reason}", now, decision)
            result = opened.device.act(action)
            after = opened.device.observe()
            held.shown = after
        said = f" ({result.message})" if result.message else ""
        asked = " after the user approved it" if decision.asked else ""
        return ActOutcome(result.ok, f"{'done' if result.ok else 'failed'}{asked}: "
                                     f"{describe_action(action, now)}{said}", after, decision, result)

    @staticmethod
    def _stale(held: HeldDevice, action: Action, now: Observation) -> str:
        """Why the client's element numbers may not mean what it thinks ('' when they do)."""
        if not _names_elements(action):
            return ""
        if held.shown is None:
            return "not carried out: element numbers refer to a screen you were shown; here it is, decide on it"
        changed = describe_change(held.shown, now)
        if changed:
            return (f"not carried out: the screen changed since you last saw it ({changed}); here is the new one, "
                    "decide again on its numbers")
        return ""

    def _gate(self, held: HeldDevice, goal: str) -> PolicyGate:
        key = (held.spec, goal.strip())
        with self._lock:
            gate = self._gates.get(key)
            if gate is None:
                gate = gate_for(goal.strip(), device=held.opened.device, config=self.config, policy=self.policy,
                                confirmer=self.confirmer, run_id=f"mcp-{uuid.uuid4().hex[:8]}")
                self._gates[key] = gate
                while len(self._gates) > MAX_GATES:
                    self._gates.popitem(last=False)
            self._gates.move_to_end(key)
            return gate

    # ------------------------------------------------------------ run_task

    def run_task(self, goal: str, device: str = "virtual", model: str | None = None, max_steps: int | None = None,
                 *, control: RunControl | None = None,
                 on_step: Callable[[StepReport, int], None] | None = None,
                 ask_value: AskValue | None = None) -> TaskSummary:
        """Let the local agent do ``goal`` on ``device``, every action through the policy gate, its questions to
        the client; the trajectory is written as it goes.

        Args:
            control: stops the run from another thread (the client cancelled the call, the server shuts down).
            on_step: called after each step with the step and the step budget.
            ask_value: asks the client for a value the goal left out (``edgepilot.agent.session.AskValue``).

        Raises:
            ValueError: no goal.
            ConfigError / ModelError: the model is unknown or cannot be loaded.
            DeviceError / PolicyError / SopError: the run cannot start.
        """
        from edgepilot.agent.session import execute, prepare_run

        if not goal.strip():
            raise ValueError("say what to do, e.g. \"turn on airplane mode\"")
        backend, model_lock = self.model_for(model)
        held = self.devices.get(device)
        control = control or RunControl()
        with model_lock, held.use() as opened:
            prepared = prepare_run(goal, opened, backend, config=self.config, policy=self.policy,
                                   confirmer=self.confirmer, max_steps=max_steps, control=control,
                                   ask_value=ask_value,
                                   run_id=f"mcp-{uuid.uuid4().hex[:8]}", extra_meta={"front_end": "mcp"})
            with self._running(control):
                result = execute(prepared, on_step=(lambda step: on_step(step, prepared.max_steps))
                                 if on_step is not None else None)
            held.shown = None  # the run moved the screen: the client's numbers are stale
        folder = prepared.writer.folder
        return TaskSummary(status=result.status, reason=_safe(result.reason, 500), steps=len(result.steps),
                           answer=_safe(result.answer, 500) if result.answer is not None else None,
                           seconds=round(result.seconds, 2), trajectory=str(folder), run_id=folder.name)

    def model_for(self, spec: str | None) -> tuple[Any, threading.Lock]:
        """The backend for ``spec`` (default: the server's, else config.toml's), loaded on first use and kept for
        the server's life, with the lock a run holds on it (one run at a time per model).

        Raises:
            ConfigError: the spec names no model.
            ModelError: the model cannot be loaded.
        """
        from edgepilot.models.registry import resolve

        spec = spec or self.default_model
        key = resolve(spec, self.config).location
        with self._lock:
            lock = self._model_locks.setdefault(key, threading.Lock())
        with lock:
            backend = self._models.get(key)
            if backend is None:
                opener = self._opener
                if opener is None:
                    from edgepilot.models.registry import open_model as opener
                backend = self._models[key] = opener(spec, self.config)
        return backend, lock

    @contextmanager
    def _running(self, control: RunControl) -> Iterator[None]:
        """While inside, :meth:`close` stops the run."""
        with self._lock:
            self._runs.add(control)
        try:
            yield
        finally:
            with self._lock:
                self._runs.discard(control)

    # ------------------------------------------------------------ read_trajectory

    def read_trajectory(self, run: str, *, verbose: bool = False) -> str:
        """A saved run step by step (``edgepilot replay``), every text from the screen or a model made safe.

        Args:
            run: a trajectory folder's absolute path, or a run id (the folder's name under the trajectories folder,
                as ``run_task`` returns it).

        Raises:
            ConfigError: no such run, or the folder is not a trajectory.
        """
        from edgepilot.agent.report import format_replay
        from edgepilot.agent.trajectory import read_trajectory

        return format_replay(read_trajectory(self._trajectory_folder(run)), verbose=verbose)

    def _trajectory_folder(self, run: str) -> Path:
        run = run.strip()
        root = Path(self.config.trajectories) if self.config.trajectories else paths.trajectories_dir()
        path = Path(run).expanduser()
        if path.is_absolute():
            return path
        if not run or path.name != run or run in (".", ".."):
            raise ConfigError(f"{run!r} is neither an absolute path nor a run id (a folder name under {root})")
        if not (root / run).is_dir():
            recent = sorted((p.name for p in root.iterdir() if p.is_dir()), reverse=True)[:5] if root.is_dir() else []
            raise ConfigError(f"no run {run!r} under {root}" + (f"; recent runs: {', '.join(recent)}" if recent
                                                                  else ""))
        return root / run

    # ------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Stop the runs in progress, close the devices and the models."""
        with self._lock:
            runs = list(self._runs)
        for control in runs:
            control.stop("the MCP server is shutting down")
        self.devices.close()
        for backend in list(self._models.values()):
            close = getattr(backend, "close", None)
            if close is not None:
                close()
        self._models.clear()
