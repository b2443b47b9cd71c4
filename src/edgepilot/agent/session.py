"""One run of the agent on an open device, set up the same way for every front end.

``edgepilot run``, the TUI and the daemon all start runs here: the SOP is
retrieved, the agent built, the trajectory opened, the policy gate put in
front of the device (with the front end's own :class:`Confirmer`), and the
loop driven under a :class:`RunControl` that the front end can pause or stop.
The model and the device are opened by the caller, so a TUI or the daemon
keeps them warm between runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepilot.agent.agents import ReactAgent, RoleAgent
from edgepilot.agent.loop import RunControl, RunResult, StepReport, run_agent
from edgepilot.agent.trajectory import TrajectoryWriter
from edgepilot.config import Config
from edgepilot.errors import SopError
from edgepilot.policy import load_policy, policy_path
from edgepilot.policy.gate import Gate, allow_all
from edgepilot.sop import load_library, rank, retrieve


def load_run_policy(config: Config, policy_file: str | Path | None = None, *, off: bool = False):
    """The policy a run is checked against, or None when the user turned it off.

    Raises:
        PolicyError: the file is missing or invalid (the run must not start).
    """
    if off:
        return None

    return load_policy(policy_path(policy_file, config.policy))


def find_sop(task: str, name: str = "auto"):
    """The SOP for a run: ``auto`` (retrieved, or None when nothing is close enough), ``off``, or a name.

    Raises:
        SopError: no SOP has that name, or the library does not load.
    """
    if name == "off":
        return None

    library = load_library()
    if name == "auto":
        return retrieve(task, library)
    for found in rank(task, library, k=len(library.entries)):
        if found.sop.name == name:
            return found
    raise SopError(f"no SOP named {name!r}; see `edgepilot sop list`")


@dataclass
class PreparedRun:
    """Everything a run needs, built and not yet started."""

    task: str
    device: Any
    agent: Any
    writer: TrajectoryWriter
    gate: Gate
    max_steps: int
    meta: dict[str, Any]
    sop: Any = None
    backend: Any = None
    control: RunControl = field(default_factory=RunControl)

    @property
    def audit_path(self) -> Path | None:
        audit = getattr(self.gate, "audit", None)
        return audit.path if audit is not None else None


def prepare_run(task: str, opened, backend, *, config: Config, policy=None, confirmer=None,
                baseline: bool = False, sop: str = "auto", out: Path | None = None,
                max_steps: int | None = None, extra_meta: dict[str, Any] | None = None,
                run_id: str | None = None, control: RunControl | None = None) -> PreparedRun:
    """Build the agent, trajectory and gate for ``task`` on ``opened`` (a :class:`OpenDevice`).

    ``policy=None`` runs without checks (the caller has warned the user);
    ``confirmer`` asks the person (default: the terminal, which a stop also answers); ``run_id`` names the run
    in the audit log;
    ``control`` pauses and stops it from another thread (the TUI's stop key, the daemon's safety stop): a stop
    also ends the model call in progress.

    Raises:
        SopError: a named SOP does not exist.
        PolicyError / AuditError: the gate cannot be built (the run must not start).
    """

    if not task.strip():
        raise ValueError("the task is empty: say what to do, e.g. \"turn on airplane mode\"")
    budget = max_steps or config.max_steps
    info = opened.device.info
    match = None if baseline else find_sop(task, sop)
    control = control or RunControl()
    agent = (ReactAgent(task, backend, device_kind=info.kind, should_stop=control.stopped) if baseline
             else RoleAgent(task, backend, sop=match, device_kind=info.kind, should_stop=control.stopped))
    meta = {"agent": agent.name, "model": backend.name, "device": opened.description,
            "screen": [info.screen_width, info.screen_height], "max_steps": budget,
            "policy": policy.source if policy is not None else "off",
            "sop": match.sop.name if match is not None else None, **(extra_meta or {})}
    writer = (TrajectoryWriter(out, {"goal": task, **meta}) if out
              else TrajectoryWriter.new(task, meta, root=config.trajectories))
    gate: Gate = allow_all
    if policy is not None:
        from edgepilot.policy import TerminalConfirmer, gate_for

        confirmer = confirmer or TerminalConfirmer(should_stop=control.stopped)
        gate = gate_for(task, device=opened.device, config=config, policy=policy, confirmer=confirmer,
                        sensitive_step=getattr(agent, "sop_sensitive", None), run_id=run_id)
    return PreparedRun(task=task, device=opened.device, agent=agent, writer=writer, gate=gate, max_steps=budget,
                       meta=meta, sop=match, backend=backend, control=control)


def execute(run: PreparedRun, *, on_step: Callable[[StepReport], None] | None = None) -> RunResult:
    """Drive a prepared run to its end; ``run.control`` pauses or stops it from another thread."""
    return run_agent(run.device, run.agent, run.task, max_steps=run.max_steps, gate=run.gate,
                     writer=run.writer, on_step=on_step, control=run.control)
