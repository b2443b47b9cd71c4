"""The desktop suite as a benchmark: real applications on an X display, by the scripted reference or a model agent.

Every episode starts its application fresh (:mod:`edgepilot.sim.desktop.tasks`),
runs an agent through the same loop as ``edgepilot run`` and judges the
task from the real world. The report has the task benchmark's fields
(:func:`edgepilot.bench.tasks.summarise`, docs/bench.md) with
``benchmark: "desktop"``, plus ``observe``: how long observations took and
where their elements came from.

    report = desktop_bench(device="desktop:xvfb", agent="reference")
    print(format_desktop(report))
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from edgepilot.actions import Action
from edgepilot.agent.agents import FnAgent, ReactAgent, RoleAgent, StepAgent
from edgepilot.agent.loop import run_agent
from edgepilot.agent.trajectory import TrajectoryWriter
from edgepilot.bench.episode import EpisodeResult
from edgepilot.bench.gate import POLICY_OFF, BenchGates, SimulatedUser
from edgepilot.bench.tasks import (
    format_tasks,
    peak_rss_mb,
    procedures_for,
    resolve_sop,
    summarise,
    train_only_library,
)
from edgepilot.config import load_config
from edgepilot.controllers.base import ActResult, DeviceInfo
from edgepilot.devices import open_device, parse_desktop_spec
from edgepilot.errors import ConfigError, EdgepilotError
from edgepilot.perception.types import Observation
from edgepilot.policy.gate import Gate, allow_all
from edgepilot.sim.desktop.tasks import DesktopTask, Script, TaskContext
from edgepilot.sim.desktop.templates import desktop_tasks
from edgepilot.sim.tasks.suite import after_first

DesktopAgentFactory = Callable[[str], StepAgent]
"""Makes the agent for one episode from its goal sentence."""
DesktopGateFactory = Callable[[DesktopTask, str, StepAgent], Gate]
"""Makes the policy gate of one episode from its task, its goal sentence and its agent."""
DESKTOP_AGENTS = ("reference", "model", "baseline")
MAX_STEPS = 30


def model_factory(backend: Any, *, baseline: bool = False, sop: str = "off",
                  memories: Sequence[Any] = ()) -> DesktopAgentFactory:
    """The model agent (planner, decider, reflector) or the ReAct baseline, set up for a desktop. ``sop`` is the
    run's ``--sop``: ``on``, the model agent follows the SOP its goal retrieves; ``train-only``, the same without
    those that serve a held-out kind; ``off``, none. Where none fits, it follows the route ``memories`` suggest,
    as ``edgepilot run`` does."""
    if baseline:
        return lambda goal: ReactAgent(goal, backend, device_kind="desktop")
    library = None if sop == "off" else procedures_for(
        "desktop", train_only_library(kind="desktop") if sop == "train-only" else None)

    def make(goal: str) -> StepAgent:
        match = desktop_procedure(goal, library) if library is not None else None
        if match is None and memories:
            from edgepilot.agent.session import memory_route

            match = memory_route(goal, None, list(memories))[0]
        return RoleAgent(goal, backend, device_kind="desktop", sop=match)

    return make


def desktop_procedure(goal: str, library: Any) -> Any:
    """The procedure ``edgepilot run`` would follow for ``goal`` (:func:`~edgepilot.sop.understand.understand`:
    the goal as typed, its values typed), or None: no procedure fits, the goal is not one, or it leaves a value
    out (a run would ask the person; the bench has no one to ask, so the agent goes without)."""
    from edgepilot.sop.understand import understand

    try:
        match = understand(goal, library).match
    except EdgepilotError:  # GoalError
        return None
    return match if match is not None and not match.missing else None


def desktop_gates(gates: BenchGates, device: Any) -> DesktopGateFactory | None:
    """The policy gate of desktop episodes (None with the policy off): confirmations answered by a
    :class:`SimulatedUser` whose task uses the task's applications and approves its template's sensitive kinds."""
    if not gates.on:
        return None
    def user(task: DesktopTask) -> SimulatedUser:
        return SimulatedUser(task.sensitive, set(task.apps), set(task.apps))

    return lambda task, goal, agent: gates.gate(goal, user(task), device=device,
                                                agent=agent)


CHECK_GRACE_S = 2.0
"""How long the checks of an episode's end state wait for the applications to finish what the agent started:
Ristretto writes a saved copy about half a second after the Enter that closes its dialog."""


def settled_check(task: DesktopTask, ctx: TaskContext, answer: str | None, grace: float = CHECK_GRACE_S) -> Any:
    """The task's checks on the state the agent left, read again every 0.25 s for up to ``grace`` seconds while
    they fail: the agent's actions are over, and only what the applications were still doing is waited for."""
    deadline = time.monotonic() + grace
    while True:
        check = task.check(ctx, answer)
        if check.success or time.monotonic() >= deadline:
            return check
        time.sleep(0.25)


class _Timed:
    """The device, with the timings of every observation kept (for the report)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.observations: list[dict[str, Any]] = []

    @property
    def info(self) -> DeviceInfo:
        return self.device.info

    def observe(self) -> Observation:
        obs = self.device.observe()
        t = self.device.timings
        self.observations.append({"total_ms": t.total_ms, "screenshot_ms": t.screenshot_ms, "tree_ms": t.tree_ms,
                                  "pixels_ms": t.pixels_ms, "source": t.source, "elements": len(obs.elements)})
        return obs

    def act(self, action: Action) -> ActResult:
        return self.device.act(action)

    def close(self) -> None:
        self.device.close()

    def __getattr__(self, name: str) -> Any:  # app_env, move_pointer, a11y_address... of the desktop device
        return getattr(self.device, name)


def run_desktop_episode(device: Any, task: DesktopTask, factory: DesktopAgentFactory | None = None, *,
                        max_steps: int | None = None, save_to: Path | None = None,
                        meta: dict[str, Any] | None = None,
                        gate_for: DesktopGateFactory | None = None) -> EpisodeResult:
    """Start ``task``'s application, let an agent work (the scripted reference when ``factory`` is None), check.

    Every action passes the gate ``gate_for`` makes for the episode (none when it is None).

    Errors of the set-up, the device or the agent end the episode as a failure with the reason recorded;
    the applications are stopped and the task's folder removed either way.
    """
    ctx = TaskContext(device.device if isinstance(device, _Timed) else device)  # set-up looks are not timed
    name = "reference" if factory is None else "agent"
    try:
        try:
            task.start(ctx)
            goal = task.goal(ctx)
            agent = FnAgent("reference", Script(task.reference(ctx)).next_action, goal) if factory is None \
                else factory(goal)
        except EdgepilotError as exc:
            return EpisodeResult(instance=task.id, template=task.template, split=task.split, goal=task.id,
                                 agent=name,
                                 success=False, failed_checks=[], status="error", reason=f"set-up failed: {exc}",
                                 answer=None)
        budget = max_steps or MAX_STEPS
        writer = None
        if save_to is not None:
            info = device.info
            writer = TrajectoryWriter.new(goal, {"agent": agent.name, "task": task.id, "template": task.template,
                                                 "device": info.serial, "screen": [info.screen_width,
                                                                                   info.screen_height],
                                                 "max_steps": budget, **(meta or {})}, root=save_to)
        gate = gate_for(task, goal, agent) if gate_for is not None else allow_all
        run = run_agent(device, agent, goal, max_steps=budget, gate=gate, writer=writer)
        try:
            check = settled_check(task, ctx, run.answer)
            success, failed = check.success and run.status != "error", list(check.failed)
        except EdgepilotError as exc:
            success, failed = False, [f"check failed: {exc}"]
        if writer is not None:
            writer.amend_result({"success": success, "failed_checks": failed})
        return EpisodeResult(instance=task.id, template=task.template, split=task.split, goal=goal,
                             agent=agent.name,
                             success=success, failed_checks=failed, status=run.status, reason=run.reason,
                             answer=run.answer, steps=run.steps, seconds=run.seconds,
                             trajectory=str(writer.folder) if writer else None)
    finally:
        ctx.close()


def run_desktop_suite(device: Any, *, agent: str = "reference", factory: DesktopAgentFactory | None = None,
                      only: Iterable[str] = (), split: str = "all", per_template: int = 1,
                      from_instance: int = 1, todo: list[DesktopTask] | None = None, max_steps: int | None = None,
                      save_to: Path | None = None,
                      meta: dict[str, Any] | None = None, gates: BenchGates | None = None,
                      progress: Callable[[EpisodeResult, int, int], None] | None = None) -> dict[str, Any]:
    """Run the desktop suite on an open desktop device; the report (see module docs).

    Which tasks: ``todo`` when given, else :func:`desktop_tasks` of ``split`` (``all``: each template's
    first instance; ``train``, ``test-instances``, ``test``: as the phone's splits), ``per_template`` of
    each from its ``from_instance``-th on, only the templates in ``only`` when it names some.

    ``agent`` names the agent in the report; ``factory`` makes it per goal
    (None: the scripted reference). Tasks whose application is not installed
    are not run and are listed under ``unavailable``. With ``gates`` (on),
    every action passes the policy gate (:func:`desktop_gates`).

    Raises:
        TaskError: ``only`` names a task that does not exist.
    """

    timed = _Timed(device)
    gate_for = desktop_gates(gates, device) if gates is not None else None  # its re-checks are not timed
    skip = max(0, from_instance - 1) if split != "all" else 0  # "all" is each template's first instance
    if todo is None:
        todo = after_first(list(desktop_tasks(split, per_template + skip, only=only)), skip, lambda t: t.template)
    unavailable = {t.id: why for t in todo if (why := t.available())}
    runnable = [t for t in todo if t.id not in unavailable]
    started = time.time()
    results = []
    for i, task in enumerate(runnable):
        result = run_desktop_episode(timed, task, factory, max_steps=max_steps, save_to=save_to, meta=meta,
                                     gate_for=gate_for)
        results.append(result)
        if progress is not None:
            progress(result, i + 1, len(runnable))
    report = summarise(results, agent=agent, split=split, per_template=per_template, started=started)
    report["from_instance"] = from_instance if split != "all" else 1
    info = device.info
    report.update(benchmark="desktop", perception="pixels" if getattr(device, "perception", "") == "pixels"
                  else "tree", device={"serial": info.serial, "model": info.model,
                                       "screen": [info.screen_width, info.screen_height]},
                  observe=_observe_figures(timed.observations), unavailable=unavailable,
                  peak_rss_mb=round(peak_rss_mb(), 1), max_steps=max_steps, only=list(only),
                  **(gates.to_json() if gates is not None else POLICY_OFF), **(meta or {}))
    return report


def _observe_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def median(key: str, where: Callable[[dict[str, Any]], bool] = lambda r: True) -> float | None:
        values = [r[key] for r in rows if where(r)]
        return round(statistics.median(values), 1) if values else None

    return {"observations": len(rows), "median_ms": median("total_ms"),
            "median_screenshot_ms": median("screenshot_ms"),
            "median_tree_ms": median("tree_ms", lambda r: r["source"] == "tree"),
            "median_pixels_ms": median("pixels_ms", lambda r: r["source"] == "pixels"),
            "median_elements": median("elements"), "sources": dict(Counter(r["source"] for r in rows))}


def desktop_bench(*, device: str = "desktop:xvfb", agent: str = "reference", model: str | None = None,
                  config: Any = None, only: Iterable[str] = (), split: str = "all", per_template: int = 1,
                  from_instance: int = 1, max_steps: int | None = None,
                  save_to: Path | None = None, factory: DesktopAgentFactory | None = None,
                  sop: str | None = None, policy: str = "on", memory: str = "on",
                  progress: Callable[[EpisodeResult, int, int], None] | None = None) -> dict[str, Any]:
    """Open a desktop (``desktop``, ``desktop:DISPLAY``, ``desktop:xvfb``) and run the suite with an agent.

    ``agent``: ``reference`` (scripted), ``model`` (planner, decider,
    reflector on ``model``) or ``baseline`` (plain ReAct on ``model``);
    ``factory`` replaces the agent ``model``/``baseline`` would build (tests
    pass one with a scripted backend). As in ``edgepilot run``: ``sop``
    ``on`` (the default for the model agent: it follows the SOP its goal
    retrieves) or ``off``; ``memory`` ``on`` (the default for the model
    agent: where no procedure fits, it follows the route the shipped desktop
    memories suggest, docs/memory.md) or ``off``; ``policy`` ``on`` (the default: every action
    passes the policy gate, the simulated user answers; the audit log goes to
    ``save_to`` or a temporary folder) or ``off``.

    Raises:
        ConfigError: unknown agent, ``sop`` or ``policy``, or a device spec that is no desktop.
        PolicyError: the policy file is missing or invalid.
        ModelError: the model cannot be loaded.
        DeviceError: the display cannot be reached.
        SimError: ``desktop:xvfb`` cannot start its session.
    """

    if agent not in DESKTOP_AGENTS:
        raise ConfigError(f"unknown desktop agent {agent!r}; available: {', '.join(DESKTOP_AGENTS)}")
    if parse_desktop_spec(device) is None:
        raise ConfigError(f"the desktop suite runs on a desktop, not on {device!r}; use --device desktop "
                          "(this display), desktop:DISPLAY or desktop:xvfb (a private Xvfb)")

    sop = resolve_sop(sop, agent)
    if sop == "both":
        raise ConfigError("the desktop suite runs --sop on or off, not both")
    config = config or load_config()
    gates = BenchGates.open(policy, config=config, folder=save_to)
    if memory not in ("on", "off"):
        raise ConfigError(f"--memory takes on or off, not {memory!r}")
    remember = memory == "on" and agent == "model"
    meta: dict[str, Any] = {"model": None, "model_load_ms": 0.0, "sop": sop, "memory": "on" if remember else "off"}
    memories: list[Any] = []
    if remember:
        from edgepilot.memory.store import shipped

        memories = shipped("desktop")
        meta["memory_apps"] = sorted(m.app for m in memories)
    if agent != "reference" and factory is None:
        from edgepilot.models.registry import open_model

        start = time.perf_counter()
        backend = open_model(model, config)
        meta.update(model=backend.name, model_load_ms=round((time.perf_counter() - start) * 1000, 1))
        factory = model_factory(backend, baseline=agent == "baseline", sop=sop, memories=memories)
    with open_device(device) as opened:
        report = run_desktop_suite(opened.device, agent=agent, factory=None if agent == "reference" else factory,
                                   only=only, split=split, per_template=per_template,
                                   from_instance=from_instance, max_steps=max_steps,
                                   save_to=save_to, meta=meta, gates=gates, progress=progress)
        report["device"]["description"] = opened.description
    return report


def format_desktop(report: dict[str, Any]) -> str:
    """The desktop benchmark as plain text: the task table, then how observations went."""

    lines = [f"desktop: {report['device'].get('description') or report['device']['serial']}", format_tasks(report)]
    o = report["observe"]
    if o["observations"]:
        sources = ", ".join(f"{k or '?'} {v}" for k, v in sorted(o["sources"].items()))
        lines.append(f"observe: median {o['median_ms']:.0f} ms over {o['observations']} (screenshot "
                     f"{o['median_screenshot_ms']:.0f} ms, accessibility tree "
                     f"{o['median_tree_ms'] if o['median_tree_ms'] is not None else '-'} ms, pixels "
                     f"{o['median_pixels_ms'] if o['median_pixels_ms'] is not None else '-'} ms); "
                     f"median {o['median_elements']:.0f} elements; from: {sources}")
    for tid, why in report.get("unavailable", {}).items():
        lines.append(f"NOT RUN {tid}: {why}")
    return "\n".join(lines)
