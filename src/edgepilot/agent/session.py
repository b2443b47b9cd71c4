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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgepilot.agent.agents import ReactAgent, RoleAgent
from edgepilot.agent.loop import RunControl, RunResult, StepReport, run_agent
from edgepilot.agent.trajectory import TrajectoryWriter
from edgepilot.config import Config
from edgepilot.errors import MissingInput, SopError
from edgepilot.policy import load_policy, policy_path
from edgepilot.policy.gate import Gate, allow_all
from edgepilot.sop import load_library, rank
from edgepilot.sop.format import is_secret
from edgepilot.sop.understand import clean_goal, understand


def load_run_policy(config: Config, policy_file: str | Path | None = None, *, off: bool = False):
    """The policy a run is checked against, or None when the user turned it off.

    Raises:
        PolicyError: the file is missing or invalid (the run must not start).
    """
    if off:
        return None

    return load_policy(policy_path(policy_file, config.policy))


def find_sop(task: str, name: str = "auto"):
    """The SOP for a run: ``auto`` (understood from the goal, or None when no procedure fits), ``off``, or a
    name (its parameters filled from the goal).

    Raises:
        SopError: no SOP has that name, or the library does not load.
        GoalError: the goal is empty, far too long, or has no words.
    """
    return understand_goal(task, name)[0]


def understand_goal(task: str, name: str = "auto", device_kind: str = "android"):
    """The procedure for a run and the understanding behind it (None with ``off`` or a named SOP), among the
    procedures for this kind of device.

    Raises:
        SopError: no SOP has that name, or the library does not load.
        GoalError: the goal is empty, far too long, or has no words.
    """
    if name == "off":
        clean_goal(task)
        return None, None
    library = load_library().for_device(device_kind)
    if name == "auto":
        understood = understand(task, library)
        return understood.match, understood
    for found in rank(task, library, k=len(library.entries)):
        if found.sop.name == name:
            return found, None
    raise SopError(f"no SOP named {name!r}; see `edgepilot sop list`")


def memory_route(task: str, device, memories=None):
    """The route the app memories suggest for ``task`` when no procedure fits: (a procedure written from the
    route, what was recalled for the record), or (None, the record) when nothing remembered fits.

    ``memories`` defaults to those fitting ``device`` (:func:`edgepilot.memory.store.for_device`)."""
    from edgepilot.memory import recall, route_procedure
    from edgepilot.memory.routes import two_app_route
    from edgepilot.memory.store import for_device

    notes: list[str] = []
    if memories is None:
        memories, notes = for_device(device)
    targets = recall(task, memories)
    record = {"apps": sorted(m.app for m in memories), "notes": notes,
              "candidates": [{"target": t.describe(), "score": t.score} for t in targets]}
    match = two_app_route(task, memories)  # a value read in one app and used in another
    if match is not None:
        record["candidates"].insert(0, {"target": match.sop.description, "score": match.score})
    elif not targets:
        return None, record
    else:
        match = route_procedure(task, targets[0])
    record["route"] = [s.text for s in match.sop.steps]
    return match, record


def over_procedure(task: str, match, device, memories=None):
    """The procedure understood for ``task``, or the memory's route where it goes to apps the procedure never
    opens (:func:`edgepilot.memory.routes.overrides`), with what was recalled (None when the procedure stays)."""
    from edgepilot.memory.routes import overrides

    route, recalled = memory_route(task, device, memories)
    if route is None or not overrides(match, route):
        return match, None
    recalled["over"] = match.sop.name
    return route, recalled


AskValue = Callable[[str, str, bool], "str | None"]
"""Asks the person for a value the goal left out: (parameter, its description, secret?) → the value or None."""


def fill_missing(match, ask: AskValue | None):
    """The procedure with the values the goal left out asked of the person.

    Raises:
        MissingInput: a value is still missing (no one to ask, or no answer); the message says which.
    """
    if match is None or not match.missing:
        return match
    params = dict(match.params)
    for name in match.missing:
        param = match.sop.params[name]
        value = ask(name, param.description, is_secret(name)) if ask is not None else None
        if value is not None and value.strip():
            params[name] = value.strip()
    still = [n for n in match.sop.params if n not in params]
    if still:
        described = "; ".join(f"{n} ({match.sop.params[n].description})" for n in still)
        raise MissingInput(f"the goal does not say {described}, which {match.sop.name} needs; say it in the goal "
                           f"(the procedure's example: \"{_example(match)}\")", missing=tuple(still))
    return replace(match, params=params)


def _example(match) -> str:
    phrasing = next((p for p in match.sop.phrasings if all("{" + n + "}" in p for n in match.sop.params)),
                    match.sop.phrasings[0] if match.sop.phrasings else match.sop.description)
    for name, param in match.sop.params.items():
        phrasing = phrasing.replace("{" + name + "}", param.example or name)
    return phrasing


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
                run_id: str | None = None, control: RunControl | None = None,
                ask_value: AskValue | None = None, memory: bool = True) -> PreparedRun:
    """Build the agent, trajectory and gate for ``task`` on ``opened`` (a :class:`OpenDevice`).

    ``policy=None`` runs without checks (the caller has warned the user);
    ``confirmer`` asks the person (default: the terminal, which a stop also answers); ``run_id`` names the run
    in the audit log;
    ``control`` pauses and stops it from another thread (the TUI's stop key, the daemon's safety stop): a stop
    also ends the model call in progress; ``ask_value`` asks the person for a value the goal left out (without
    it, such a goal raises :class:`~edgepilot.errors.MissingInput`); ``memory``: when no procedure fits, follow
    the route the app memories suggest (docs/memory.md).

    Raises:
        SopError: a named SOP does not exist.
        GoalError: the goal is empty, far too long, or has no words.
        MissingInput: the goal leaves out a value the procedure needs, and no one gave it.
        PolicyError / AuditError: the gate cannot be built (the run must not start).
    """

    if not task.strip():
        raise ValueError("the task is empty: say what to do, e.g. \"turn on airplane mode\"")
    budget = max_steps or config.max_steps
    info = opened.device.info
    match, understood = (None, None) if baseline else understand_goal(task, sop, info.kind)
    recalled = None
    if memory and not baseline and (sop == "off" or (sop == "auto" and match is None)):
        match, recalled = memory_route(task, opened.device)
    elif memory and not baseline and sop == "auto" and info.kind == "android":
        # a procedure for another app's task gives way to the memory's route (measured on the phone; a desktop's
        # memories do not route well yet: docs/memory.md)
        match, recalled = over_procedure(task, match, opened.device)
    match = fill_missing(match, ask_value)
    control = control or RunControl()
    agent = (ReactAgent(task, backend, device_kind=info.kind, should_stop=control.stopped) if baseline
             else RoleAgent(task, backend, sop=match, device_kind=info.kind, should_stop=control.stopped,
                            calls=config.calls, screen_budget=config.screen_budget))
    meta = {"agent": agent.name, "model": backend.name, "device": opened.description, "calls": config.calls,
            "screen_budget": config.screen_budget,
            "screen": [info.screen_width, info.screen_height], "max_steps": budget,
            "policy": policy.source if policy is not None else "off",
            "sop": match.sop.name if match is not None else None,
            **({"understanding": understood.record()} if understood is not None else {}),
            **({"memory": recalled} if recalled is not None else {}), **(extra_meta or {})}
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
