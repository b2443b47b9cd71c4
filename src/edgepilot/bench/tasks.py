"""Benchmarks: task success on the virtual phone, and observation latency.

Every benchmark returns a JSON-able report (fields in docs/bench.md) and can
print it as a table.
"""

from __future__ import annotations

import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepilot import __version__
from edgepilot.actions import Action, Swipe
from edgepilot.agent.agents import FnAgent, ReactAgent, RoleAgent
from edgepilot.agent.loop import StepReport
from edgepilot.bench.episode import AgentFactory, EpisodeResult, gate_record, run_episode
from edgepilot.bench.gate import BenchGates
from edgepilot.bench.pool import Unit, kept, run_units, worker_name
from edgepilot.config import Config, load_config
from edgepilot.devices import open_device
from edgepilot.errors import ConfigError
from edgepilot.models.base import ModelBackend
from edgepilot.models.registry import open_model, resolve
from edgepilot.perception.render import SCREEN_BUDGET
from edgepilot.perception.types import Observation
from edgepilot.policy import AuditLog, Policy
from edgepilot.sim.tasks.model import TaskInstance
from edgepilot.sim.tasks.oracle import Oracle
from edgepilot.sim.tasks.suite import SPLITS, after_first, instances, load_templates
from edgepilot.sop import load_library
from edgepilot.sop.library import SopLibrary


def procedures_for(kind: str, library: Any = None) -> Any:
    """The procedures a run on a device of ``kind`` is offered: a library's view for that device (default: the
    current directory's library); a retriever or SOPs as given."""
    library = load_library() if library is None else library
    return library.for_device(kind) if isinstance(library, SopLibrary) else library


def agent_factory(name: str, phone: Any, backend: ModelBackend | None = None,
                  sop_for: Callable[[TaskInstance], Any] | None = None, vote: int = 1,
                  calls: str = "needed", screen_budget: int = SCREEN_BUDGET) -> AgentFactory:
    """The agent to benchmark, by name: ``oracle``, ``model`` (the three roles) or ``baseline`` (plain ReAct).

    With ``sop_for`` (the SOP match retrieved for a task, or None), the model agent follows that SOP;
    with ``vote`` above 1 it votes over that many decider answers a step; ``calls`` is how it spends model calls
    (:data:`edgepilot.agent.agents.CALLS`).

    Raises:
        ConfigError: unknown agent, or one that lacks what it needs (a virtual phone, a model).
    """
    if name == "oracle":
        if phone is None:
            raise ConfigError("the oracle reads the virtual phone's state; use --device virtual")
        return lambda instance: FnAgent("oracle", Oracle(instance, phone.snapshot).next_action, instance.goal)
    if name in ("model", "baseline"):
        if backend is None:
            raise ConfigError(f"the {name} agent needs a model")
        if name == "model":
            return lambda instance: RoleAgent(instance.goal, backend, vote=vote, calls=calls,
                                              sop=sop_for(instance) if sop_for is not None else None,
                                              screen_budget=screen_budget)
        return lambda instance: ReactAgent(instance.goal, backend)
    raise ConfigError(f"unknown agent {name!r}; available: {', '.join(AGENTS)}")


AGENTS = ("oracle", "model", "baseline")

SOP_MODES: dict[str, tuple[bool, ...]] = {"off": (False,), "on": (True,), "both": (False, True),
                                         "train-only": (True,)}
"""``--sop``: whether the model agent runs without SOPs, with the SOP each goal retrieves, or both (in that order);
``train-only`` hides the procedures of held-out kinds (those that serve a test template), so held-out kinds are
measured as tasks nobody wrote a procedure for."""


def train_only_library(library: Any = None, kind: str = "android") -> Any:
    """The SOP library without the procedures that serve held-out (test) templates (bench/sop_eval_map.yaml):
    what a phone (``kind`` android) or a desktop has when nobody wrote a procedure for the held-out kinds.

    Raises:
        SopError: the evaluation map is missing or malformed.
    """
    from edgepilot.bench.evalmap import load_desktop_map, load_eval_map

    library = library if library is not None else load_library()
    if kind == "desktop":
        from edgepilot.sim.desktop.templates import desktop_templates

        mapping, suite = load_desktop_map(), desktop_templates()
    else:
        mapping, suite = load_eval_map()[0], load_templates()
    held = {mapping[t] for t, template in suite.items() if template.split == "test" and mapping.get(t)}
    trained = {mapping[t] for t, template in suite.items() if template.split == "train" and mapping.get(t)}
    hidden = held - trained
    return library.without(hidden)


def sop_runs(sop: str) -> tuple[bool, ...]:
    """The runs ``--sop`` asks for (:data:`SOP_MODES`); ConfigError for another word."""
    if sop not in SOP_MODES:
        raise ConfigError(f"--sop takes {', '.join(SOP_MODES)}, not {sop!r}")
    return SOP_MODES[sop]


CALL_MODES: dict[str, tuple[str, ...]] = {"needed": ("needed",), "every": ("every",), "both": ("needed", "every")}
"""``--calls``: how the model agent spends model calls (:data:`edgepilot.agent.agents.CALLS`), or ``both``: each
episode twice, the step strategy that skips what the runtime can tell and the one that asks every role, side by
side on the same instances (the report's ``every_call`` and ``calls_speedup``)."""
EVERY = "@every"
"""The suffix of an arm that asks every role (``model+sop@every``)."""


def call_runs(calls: str) -> tuple[str, ...]:
    """The runs ``--calls`` asks for (:data:`CALL_MODES`); ConfigError for another word."""
    if calls not in CALL_MODES:
        raise ConfigError(f"--calls takes {', '.join(CALL_MODES)}, not {calls!r}")
    return CALL_MODES[calls]


def _arm(name: str) -> tuple[str, str]:
    """An arm's name split into the agent's (``model+sop``) and its call strategy."""
    return (name[:-len(EVERY)], "every") if name.endswith(EVERY) else (name, "needed")


def retrieve_sops(todo: Iterable[TaskInstance], library: Any = None, *, procedures: bool = True,
                  memory: bool = False, memories: Any = None) -> dict[str, Any]:
    """The procedure each instance's goal is understood to ask for, as ``edgepilot run`` would (None where none
    fits); a value the goal leaves out is answered by the simulated user from the instance's own values, as
    the person at the terminal would be asked, and when the instance has none, the run follows no procedure
    rather than one with a hole. ``library`` defaults to :func:`edgepilot.sop.load_library`'s. With ``memory``,
    a goal no procedure fits (or every goal, without ``procedures``) follows the route the app memories
    suggest (``memories``: default, the shipped ones of the virtual phone's apps), as ``edgepilot run`` does."""
    from edgepilot.agent.session import fill_missing, memory_route, over_procedure
    from edgepilot.errors import GoalError
    from edgepilot.sop.understand import understand

    library = procedures_for("android", library)  # as `edgepilot run` on a phone
    if memory and memories is None:
        from edgepilot.memory.store import shipped

        memories = shipped("android")
    out: dict[str, Any] = {}
    for i in todo:
        match = None
        try:
            if procedures:
                match = understand(i.goal, library).match
                if match is not None and memory:  # as `edgepilot run`: a procedure for other apps loses
                    match = over_procedure(i.goal, match, None, memories)[0]
                match = fill_missing(match, lambda name, _d, _s, i=i: (str(i.params[name]) if name in i.params
                                                                       else None))
        except GoalError:
            match = None
        if match is None and memory:
            match = memory_route(i.goal, None, memories)[0]
        out[i.id] = match
    return out


PHRASING_SPLITS = ("phrasings", "phrasings-train", "phrasings-test")


def phrasing_instances(split: str, per_template: int, templates: dict[str, Any], only: Iterable[str] = (),
                       skip: int = 0) -> list[TaskInstance]:
    """Instances of the ``phrasings`` set (the suite's instances with a person's wording of their goal): up to
    ``per_template`` of each template, odd seeds first (the half whose misses are never listed, so never
    used for fixes), of every template or only of train or test ones; ``skip``: after the first ``skip`` picked
    of each template, in that order (``--from-instance``)."""
    from edgepilot.bench.phrasings import load_phrasings

    wanted = set(only)
    kind = split.partition("-")[2]
    goals = sorted(load_phrasings()["goals"], key=lambda g: (int(str(g["task"]).partition("#")[2]) % 2 == 0,
                                                               int(str(g["task"]).partition("#")[2])))
    counts: dict[str, int] = {}
    out: list[TaskInstance] = []
    for g in goals:
        tid, _, seed = str(g["task"]).partition("#")
        template = templates.get(tid)
        if template is None or (wanted and tid not in wanted) or (kind and template.split != kind):
            continue
        if counts.get(tid, 0) >= per_template + skip:
            continue
        counts[tid] = counts.get(tid, 0) + 1
        if counts[tid] <= skip:
            continue
        out.append(template.instance(int(seed)).model_copy(update={"goal": str(g["goal"])}))
    order = {tid: n for n, tid in enumerate(templates)}
    return sorted(out, key=lambda i: (order[i.template.id], i.seed))


def sop_report(sops: dict[str, Any]) -> dict[str, Any]:
    """What a report says of the SOPs its runs followed: how many were retrieved, and which."""
    return {"sop_retrieved": sum(m is not None for m in sops.values()),
            "sops": {tid: m.sop.name if m else None for tid, m in sops.items()}}


def ground(action: Action, tree: Observation, seen: Observation) -> Action | None:
    """``action``, decided on the tree, aimed at the element of ``seen`` that covers its target; None if none does.

    Candidates are the elements whose centre lies inside the tree target, or that contain the target's
    centre; one showing a line of the target's text wins (a button drawn over a card must not), then the
    largest overlap (intersection over union).
    """
    target = getattr(action, "target", None)
    if not isinstance(target, int) or isinstance(target, bool):
        return action
    if not 0 <= target < len(tree.elements):
        return None
    node_wanted = tree.elements[target]
    want = node_wanted.bounds
    cx, cy = want.center
    lines = {line.strip().casefold() for line in (node_wanted.text or node_wanted.content_desc).splitlines()} - {""}

    def iou(b) -> float:
        w = max(0, min(b.right, want.right) - max(b.left, want.left))
        h = max(0, min(b.bottom, want.bottom) - max(b.top, want.top))
        inter = w * h
        union = b.width * b.height + want.width * want.height - inter
        return inter / union if union else 0.0

    best, best_score = None, (False, 0.0)
    for i, node in enumerate(seen.elements):
        b = node.bounds
        inside = want.left <= b.center[0] <= want.right and want.top <= b.center[1] <= want.bottom
        covers = b.left <= cx <= b.right and b.top <= cy <= b.bottom
        score = (node.text.strip().casefold() in lines, iou(b))
        if (inside or covers) and score > best_score:
            best, best_score = i, score
    return None if best is None else action.model_copy(update={"target": best})


def grounded_oracle(phone: Any, tree_view: Any) -> AgentFactory:
    """The oracle deciding on the tree (read from ``tree_view``) and acting on the elements the agent sees."""

    def make(instance: TaskInstance):
        oracle = Oracle(instance, phone.snapshot)

        def next_action(seen: Observation) -> Action | None:
            tree = tree_view.observe()
            return ground(oracle.next_action(tree), tree, seen)

        return FnAgent("oracle", next_action, instance.goal)

    return make


def _median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else 0.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux and macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def resolve_sop(sop: str | None, agent: str) -> str:
    """``--sop`` as a run uses it: None means the default of ``edgepilot run`` (procedures on) for the model
    agent; the other agents (oracle, scripted reference, baseline) follow no procedures (off). ConfigError
    for another word, or for SOPs asked of an agent that does not follow them."""
    if sop is None:
        return "on" if agent == "model" else "off"
    sop_runs(sop)
    if sop != "off" and agent != "model":
        raise ConfigError("SOPs are followed by the model agent: use --agent model with --sop")
    return sop


def run_tasks(*, agent: str = "oracle", baseline: bool = False, model: str | None = None, split: str = "test",
              per_template: int = 3, templates: Iterable[str] = (), task_dirs: Iterable[Path] = (),
              from_instance: int = 1, device: str = "virtual", max_steps: int | None = None,
              save_to: Path | None = None,
              config: Config | None = None, sop: str | None = None, policy: str = "on", perception: str = "tree",
              progress: Callable[[EpisodeResult, int, int], None] | None = None, workers: int = 1,
              ray: str | None = None, memory: str = "on", calls: str = "needed") -> dict[str, Any]:
    """Run an agent (and with ``baseline``, the plain ReAct baseline too) on every instance of a split.

    The defaults are those of ``edgepilot run``:

    ``sop``: ``on`` (the model agent follows the SOP its goal retrieves; the default for the model agent),
    ``off`` (the default for the oracle and the baseline, which follow none) or ``both`` (the model agent
    twice, without and with SOPs, side by side: the report's ``with_sop``).
    ``policy``: ``on`` (every action passes the policy gate ``run`` builds; confirmations are answered by
    :class:`edgepilot.bench.gate.SimulatedUser`; decisions go to ``save_to/audit.jsonl`` or a temporary
    folder's) or ``off``.
    ``perception``: where the agents' element lists come from (``tree``, ``pixels``: OCR and the widget
    detector only, ``fused``). With ``pixels`` the oracle still decides on the tree (its privilege) but must
    act on the element list read from pixels: its success rate measures whether perception found what
    each step needs.
    ``sop="train-only"``: as ``on``, with the procedures of held-out kinds hidden (:func:`train_only_library`).
    ``memory``: ``on`` (the default, as ``run``): the model agent follows the route the app memories suggest
    where no procedure fits (every goal, with ``sop=off``); ``off``: never.
    ``calls``: ``needed`` (the default, as ``run``), ``every`` or ``both`` (:data:`CALL_MODES`).
    ``task_dirs``: folders of extra task templates, read after the built-in ones (docs/tasks.md).
    ``workers``, ``ray``: above 1, the episodes run on that many worker processes, each with its own phone
    and model; with ``ray``, as Ray tasks on that cluster (:func:`edgepilot.bench.pool.run_units`). Each
    episode is retried when its worker dies; trajectories and audit decisions come back to this process,
    which writes them under ``save_to``. The report's ``scale_out`` says how it ran.

    Raises:
        TaskError: unknown split or templates; an invalid extra template.
        ConfigError: unknown agent, model, ``sop`` or ``policy``; Ray asked for and not reachable.
        PolicyError: the policy file is missing or invalid.
        ModelError: the model cannot be loaded.
        DeviceError: the device cannot be reached.
    """

    if not device.startswith("virtual"):
        raise ConfigError(f"task benchmarks set tasks up on the virtual phone, not on {device!r}; "
                          "use --device virtual (or virtual-local)")
    if agent not in AGENTS:
        raise ConfigError(f"unknown agent {agent!r}; available: {', '.join(AGENTS)}")
    sop = resolve_sop(sop, agent)
    runs = sop_runs(sop)
    strategies = call_runs(calls)
    arms = ["model+sop" if with_sop else "model" for with_sop in runs] if agent == "model" else [agent]
    if agent == "model":
        arms = [arm + ("" if how == "needed" else EVERY) for arm in arms for how in strategies]
    agents = arms + (["baseline"] if baseline and agent != "baseline" else [])
    task_dirs = [Path(d) for d in task_dirs]
    suite = load_templates(extra_dirs=task_dirs)
    skip = max(0, from_instance - 1)
    if split in PHRASING_SPLITS:
        todo = phrasing_instances(split, per_template, suite, templates, skip=skip)  # skipped in their own order
    else:
        todo = after_first(instances(split, per_template + skip, templates=suite, only=templates),  # type: ignore[arg-type]
                           skip, lambda inst: inst.template.id)
    config = config or load_config()
    gates = BenchGates.open(policy, config=config, folder=save_to)
    backend, load_ms, model_name = None, 0.0, None
    if memory not in ("on", "off"):
        raise ConfigError(f"--memory takes on or off, not {memory!r}")
    remember = memory == "on" and agent == "model"
    library = train_only_library() if sop == "train-only" else None
    kinds = {_arm(a)[0] for a in agents}
    sops = retrieve_sops(todo, library, memory=remember) if "model+sop" in kinds else {}
    routes = retrieve_sops(todo, procedures=False, memory=True) if remember and "model" in kinds else {}
    pooled = workers > 1 or ray is not None
    if any(a != "oracle" for a in agents) and not pooled:  # a pool's workers open their own
        start = time.perf_counter()
        backend = open_model(model, config)
        load_ms = (time.perf_counter() - start) * 1000
        model_name = backend.name
    started = time.time()
    scale: dict[str, Any] | None = None
    workers_rss = 0.0
    if pooled:
        played = _run_pooled(agents, todo, sops, routes, model=model, gates=gates, device=device, perception=perception,
                             max_steps=max_steps, save_to=save_to, workers=workers, ray=ray, progress=progress)
        ran = {name: played.results[n * len(todo):(n + 1) * len(todo)] for n, name in enumerate(agents)}
        model_name, load_ms, scale = played.model(), played.load_ms(), played.scale_out(workers, ray)
        workers_rss = played.peak_rss_mb()
    else:
        ran = _run_here(agents, todo, sops, routes, backend, device=device, perception=perception, max_steps=max_steps,
                        save_to=save_to, gates=gates, meta={"model": model_name, "policy": gates.to_json()["policy"]},
                        progress=progress, screen_budget=config.screen_budget)
    reports: dict[str, dict[str, Any]] = {}
    for name in agents:
        kind, how = _arm(name)
        reports[name] = summarise(ran[name], agent=kind, split=split, per_template=per_template, started=started,
                                  calls=how if kind != "oracle" else None)
        reports[name]["from_instance"] = from_instance
        reports[name]["screen_budget"] = config.screen_budget
        if kind == "model+sop":
            reports[name].update(sop_report(sops))
        elif kind == "model" and routes:
            reports[name].update(sop_report(routes))
    for name in agents:  # the strategy asking every role beside the one skipping what the runtime can tell
        if name.endswith(EVERY) and name[:-len(EVERY)] in reports:
            lean = reports[name[:-len(EVERY)]]
            lean["every_call"] = reports[name]
            lean["calls_speedup"] = speedup(lean, reports[name])
    report = reports[agents[0]]
    report.update(perception=perception, sop=sop, memory=memory if agent == "model" else "off", **gates.to_json(),
                  max_steps=max_steps, only=list(templates), task_dirs=[str(d) for d in task_dirs], device=device,
                  model=model_name, model_load_ms=round(load_ms, 1),
                  peak_rss_mb=round(max(peak_rss_mb(), workers_rss), 1))
    if "baseline" in reports and agents[0] != "baseline":
        report["baseline"] = reports["baseline"]
    if sop == "both":
        report["with_sop"] = reports["model+sop"]
    report["calls_mode"] = calls if agent == "model" else None
    if scale is not None:
        report["scale_out"] = scale
    return report


def _guide(name: str, sops: dict[str, Any], routes: dict[str, Any]) -> dict[str, Any] | None:
    """What an arm follows: the procedures (with memory routes where none fits), memory routes alone, or none."""
    kind = _arm(name)[0]
    return sops if kind == "model+sop" else routes if kind == "model" and routes else None


def _run_here(agents: list[str], todo: list[TaskInstance], sops: dict[str, Any], routes: dict[str, Any],
              backend: ModelBackend | None, *,
              device: str, perception: str, max_steps: int | None, save_to: Path | None, gates: BenchGates,
              meta: dict[str, Any], progress: Callable[[EpisodeResult, int, int], None] | None,
              screen_budget: int = SCREEN_BUDGET) -> dict[str, list[EpisodeResult]]:
    """Every agent on every instance in this process, on one phone: the results by agent."""
    ran: dict[str, list[EpisodeResult]] = {}
    with open_device(device, perception=perception) as opened:  # type: ignore[arg-type]
        if opened.phone is None:
            raise ConfigError("task benchmarks set tasks up on the virtual phone; use --device virtual")
        tree_view = None
        if perception != "tree":
            from edgepilot.controllers.android import AndroidDevice

            tree_view = AndroidDevice(opened.device.transport, screenshot=False)  # the oracle's privileged view
        gate_for = gates.for_phone(opened.phone, opened.device)
        for name in agents:
            guide = _guide(name, sops, routes)
            factory = agent_factory(name.split("+")[0].removesuffix(EVERY), opened.phone, backend,
                                    (lambda i, guide=guide: guide[i.id]) if guide is not None else None,
                                    calls=_arm(name)[1], screen_budget=screen_budget)
            if name == "oracle" and tree_view is not None:
                factory = grounded_oracle(opened.phone, tree_view)
            results: list[EpisodeResult] = []
            for i, instance in enumerate(todo):
                result = run_episode(opened.device, opened.phone, instance, factory, max_steps=max_steps,
                                     gate_for=gate_for, save_to=save_to, meta=meta)
                results.append(result)
                if progress is not None:
                    progress(result, i + 1, len(todo))
            ran[name] = results
    return ran


def _run_pooled(agents: list[str], todo: list[TaskInstance], sops: dict[str, Any], routes: dict[str, Any], *,
                model: str | None,
                gates: BenchGates, device: str, perception: str, max_steps: int | None, save_to: Path | None,
                workers: int, ray: str | None, progress: Callable[[EpisodeResult, int, int], None] | None) -> Played:
    """Every agent on every instance on a worker pool, each episode on a worker's own phone and model."""
    if any(a != "oracle" for a in agents):
        resolve(model, gates.config)  # a spec that names nothing fails here, not on every worker
    context = EpisodeContext(config=gates.config, policy=gates.policy, device=device, perception=perception,
                             max_steps=max_steps, save=save_to is not None)
    units = [Unit(f"{name}/{i.id}", EpisodeJob(name.split("+")[0].removesuffix(EVERY), i,
                                               sop=(_guide(name, sops, routes) or {}).get(i.id), calls=_arm(name)[1],
                                               model=None if name == "oracle" else model,
                                               meta={"policy": gates.to_json()["policy"]}))
             for name in agents for i in todo]
    return play_pooled(units, context, workers=workers, ray=ray, dest=lambda index: save_to, audit=gates.audit,
                       on_result=None if progress is None else lambda index, result, done, total: progress(
                           result, done, total))


# ---------------------------------------------------------------- episodes on a worker pool


@dataclass(frozen=True)
class EpisodeContext:
    """What every episode of a pooled run shares; sent once to each worker."""

    config: Config
    policy: Policy | None
    """The policy the driver loaded (None: the policy is off)."""
    device: str = "virtual"
    perception: str = "tree"
    max_steps: int | None = None
    save: bool = False
    """Write each episode's trajectory (it comes back to the driver with the result)."""
    adapter: bytes | None = None
    """A LoRA adapter (GGUF) for the jobs that ask for it: the driver's file, so that workers need no copy."""


@dataclass(frozen=True)
class EpisodeJob:
    """One episode for a worker: which agent plays which task instance, with which model and SOP."""

    agent: str
    """``oracle``, ``model`` or ``baseline`` (:func:`agent_factory`)."""
    instance: TaskInstance
    sop: Any = None
    """The SOP match the model agent follows (retrieved by the driver)."""
    model: str | None = None
    lora: bool = False
    """Open the model with the context's adapter."""
    vote: int = 1
    calls: str = "needed"
    """How the model agent spends model calls (:data:`edgepilot.agent.agents.CALLS`)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Recorded in the trajectory's meta.json (the worker adds ``model`` and ``worker``)."""


class AuditRecords(AuditLog):
    """The audit log of a worker: decisions kept in memory and sent back, for the driver to append to the
    run's own (signed) log. Each keeps the time it was made."""

    def __init__(self) -> None:
        super().__init__(os.devnull)
        self.records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        self.records.append({"time": round(time.time(), 3), **record})
        return self.records[-1]


@contextmanager
def _adapter_file(adapter: bytes) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="edgepilot-adapter-"))
    try:
        (folder / "adapter.gguf").write_bytes(adapter)
        yield folder / "adapter.gguf"
    finally:
        (folder / "adapter.gguf").unlink(missing_ok=True)
        folder.rmdir()


def _worker_model(context: EpisodeContext, job: EpisodeJob) -> ModelBackend:
    lora = None
    if job.lora and context.adapter is not None:
        sha = hashlib.sha256(context.adapter).hexdigest()
        lora = str(kept("adapter", sha, lambda: _adapter_file(context.adapter)))  # type: ignore[arg-type]
    return kept("model", (job.model, lora, context.config),
                lambda: nullcontext(open_model(job.model, context.config, lora_path=lora)))


def play_episode(context: EpisodeContext, job: EpisodeJob, scratch: Path) -> dict[str, Any]:
    """One episode in a worker of :func:`edgepilot.bench.pool.run_units`, on the worker's own virtual phone and
    model (opened on its first episode and kept). The trajectory goes under ``scratch`` (named relative to
    it), the gate's decisions into the value: ``result`` (:meth:`EpisodeResult.shipped`), ``audit``,
    ``model``, ``load_ms``, ``peak_rss_mb``.
    """
    opened = kept("device", (context.device, context.perception),
                  lambda: open_device(context.device, perception=context.perception))  # type: ignore[arg-type]
    backend, load_ms = None, 0.0
    if job.agent != "oracle":
        start = time.perf_counter()
        backend = _worker_model(context, job)
        load_ms = (time.perf_counter() - start) * 1000
    audit = AuditRecords() if context.policy is not None else None
    gates = BenchGates(context.policy, context.config, audit)
    factory = agent_factory(job.agent, opened.phone, backend,
                            (lambda instance: job.sop) if job.sop is not None else None, vote=job.vote,
                            calls=job.calls, screen_budget=context.config.screen_budget)
    if job.agent == "oracle" and context.perception != "tree":
        from edgepilot.controllers.android import AndroidDevice

        factory = grounded_oracle(opened.phone, AndroidDevice(opened.device.transport, screenshot=False))
    result = run_episode(opened.device, opened.phone, job.instance, factory, max_steps=context.max_steps,
                         gate_for=gates.for_phone(opened.phone, opened.device),
                         save_to=scratch if context.save else None,
                         meta={**job.meta, "model": backend.name if backend else None, "worker": worker_name()})
    if result.trajectory is not None:
        result.trajectory = Path(result.trajectory).relative_to(scratch).as_posix()
    return {"result": result.shipped(), "audit": audit.records if audit else [],
            "model": backend.name if backend else None, "load_ms": load_ms, "peak_rss_mb": peak_rss_mb()}


@dataclass
class Played:
    """The episodes of a pooled run, in the order of its units, and what each unit's worker said of itself."""

    results: list[EpisodeResult]
    workers: list[dict[str, Any]]
    """Per unit: ``model``, ``load_ms``, ``peak_rss_mb``, ``worker`` (``host:pid``); empty when none finished it."""
    retried: list[dict[str, Any]]
    """:meth:`edgepilot.bench.pool.Done.record` of each unit that took more than one attempt, by unit."""

    def model(self, part: slice = slice(None)) -> str | None:
        """The model the units of ``part`` ran (None: the oracle)."""
        return next((w["model"] for w in self.workers[part] if w.get("model")), None)

    def load_ms(self, part: slice = slice(None)) -> float:
        """The slowest model load of a worker among the units of ``part`` (each worker loads its own)."""
        return max((w.get("load_ms", 0.0) for w in self.workers[part]), default=0.0)

    def peak_rss_mb(self) -> float:
        """The peak memory of the largest worker."""
        return max((w.get("peak_rss_mb", 0.0) for w in self.workers), default=0.0)

    def scale_out(self, workers: int, ray: str | None) -> dict[str, Any]:
        """What a report says of how the run was spread (``scale_out``)."""
        return {"workers": workers, "ray": ray, "worker_processes": len({w["worker"] for w in self.workers if w}),
                "retried": self.retried}


def play_pooled(units: Sequence[Unit], context: EpisodeContext, *, workers: int, ray: str | None,
                dest: Callable[[int], Path | None], audit: AuditLog | None,
                on_result: Callable[[int, EpisodeResult, int, int], None] | None = None) -> Played:
    """Play :class:`EpisodeJob` units on a worker pool, streaming each back as it finishes: its trajectory is
    unpacked under ``dest(index)``, its gate decisions appended to ``audit``, and ``on_result`` called with
    the unit's index, its result, how many units are done and how many in all.

    Raises:
        ConfigError, ModelError, PolicyError, TaskError: from a worker, for a setting every try would fail on.
    """
    results: list[EpisodeResult | None] = [None] * len(units)
    said: list[dict[str, Any]] = [{} for _ in units]
    retried = []
    for count, done in enumerate(run_units(play_episode, units, context=context, workers=workers, ray=ray), 1):
        job: EpisodeJob = units[done.index].job
        if done.failed:
            result = EpisodeResult.not_played(job.instance, job.agent, f"no worker finished it: {done.errors[-1]}",
                                              done.attempts)
        else:
            result = done.value["result"]
            result.attempts = done.attempts
            folder = dest(done.index)
            if result.trajectory is not None and folder is not None:
                result.trajectory = str(done.unpack(folder)[result.trajectory])
            for record in done.value["audit"] if audit is not None else ():
                audit.append(record)
            said[done.index] = {"model": done.value["model"], "load_ms": done.value["load_ms"],
                                "peak_rss_mb": done.value["peak_rss_mb"], "worker": done.worker}
        if done.attempts > 1:
            retried.append(done.record())
        results[done.index] = result
        if on_result is not None:
            on_result(done.index, result, count, len(units))
    return Played([r for r in results if r is not None], said, sorted(retried, key=lambda r: r["unit"]))


def _rate(calls: list[Any]) -> float | None:
    """Decode speed over a role's calls: generated tokens per second of decoding."""
    timed = [c for c in calls if c.decode_ms]
    ms = sum(c.decode_ms for c in timed)
    return round(sum(c.tokens_out for c in timed) / ms * 1000, 1) if ms else None


def _step_figures(steps: list[StepReport]) -> dict[str, Any]:
    """Medians of where a step's time went, tokens per role, and the share spent outside the model."""
    roles = sorted({c.role for s in steps for c in s.calls})
    total = sum(s.ms.get("total", 0.0) for s in steps)
    model = sum(s.model_ms for s in steps)
    per_role = {}
    for role in roles:
        calls = [c for s in steps for c in s.calls if c.role == role]
        per_role[role] = {"calls": len(calls), "median_ms": round(_median(c.ms for c in calls), 1),
                          "median_tokens_in": _median(c.tokens_in for c in calls),
                          "median_tokens_out": _median(c.tokens_out for c in calls),
                          "median_prompt_evaluated": _median(c.prompt_evaluated for c in calls
                                                             if c.prompt_evaluated is not None),
                          "median_prefill_ms": round(_median(c.prefill_ms for c in calls
                                                             if c.prefill_ms is not None), 1),
                          "median_decode_ms": round(_median(c.decode_ms for c in calls if c.decode_ms is not None), 1),
                          "decode_tokens_per_s": _rate(calls),
                          "parse_failures": sum(c.error is not None for c in calls)}
    count = max(1, len(steps))
    every = [c for s in steps for c in s.calls]
    parts = ("perceive", "planner", "decider", "reflector", "policy", "act")
    by_part = {part: round(sum(s.ms.get(part, 0.0) for s in steps) / count, 1) for part in parts}
    by_part["reflect_outside_model"] = round(sum(max(0.0, s.ms.get("reflect", 0.0) - s.ms.get("reflector", 0.0))
                                                 for s in steps) / count, 1)
    return {
        "model_calls_per_step": round(len(every) / count, 3),
        "prompt_tokens_evaluated_per_step": round(sum(
            c.prompt_evaluated if c.prompt_evaluated is not None else (c.tokens_in or 0) for c in every) / count, 1),
        "without_model": {role: sum(role in s.without for s in steps) for role in ("planner", "decider", "reflector")},
        "mean_ms_by_part": by_part,
        "median_ms": {
            "step": round(_median(s.ms.get("total", 0.0) for s in steps), 1),
            "perceive": round(_median(s.ms.get("perceive", 0.0) for s in steps), 1),
            "model": round(_median(s.model_ms for s in steps), 1),
            "act": round(_median(s.ms["act"] for s in steps if "act" in s.ms), 1),
        },
        "roles": per_role,
        "outside_model_share": round((total - model) / total, 4) if total else 0.0,
        "valid_action_rate": round(sum(s.action is not None for s in steps) / len(steps), 4) if steps else 0.0,
    }


def speedup(lean: dict[str, Any], every: dict[str, Any]) -> dict[str, Any]:
    """How the step strategy that skips what the runtime can tell (``lean``) compares with asking every role
    (``every``), both summaries of the same instances in one run: ratios of the old to the new (above 1: faster)."""
    def ratio(old: float | None, new: float | None) -> float | None:
        return round(old / new, 2) if old and new else None

    return {"seconds_per_step": ratio(every["seconds_per_step"], lean["seconds_per_step"]),
            "median_step_ms": ratio(every["median_ms"]["step"], lean["median_ms"]["step"]),
            "model_calls_per_step": ratio(every["model_calls_per_step"], lean["model_calls_per_step"]),
            "episode_seconds": ratio(every["seconds_per_step"] * every["mean_steps"],
                                     lean["seconds_per_step"] * lean["mean_steps"]),
            "successes": [round(report["success_rate"] * report["episodes"]) for report in (lean, every)]}


def false_success(result: EpisodeResult) -> bool:
    """An episode the agent ended as done (status ``finished``) whose task checks failed: a success it
    reported that is not one."""
    return result.status == "finished" and not result.success


def summarise(results: list[EpisodeResult], **meta: Any) -> dict[str, Any]:
    by_template: dict[str, list[EpisodeResult]] = defaultdict(list)
    for r in results:
        by_template[r.template].append(r)
    steps = [s for r in results for s in r.steps]
    templates = {}
    for tid, rs in sorted(by_template.items()):
        t_steps = [s for r in rs for s in r.steps]
        templates[tid] = {
            "episodes": len(rs),
            "success_rate": sum(r.success for r in rs) / len(rs),
            "mean_steps": statistics.mean(len(r.steps) for r in rs),
            "seconds_per_step": sum(r.seconds for r in rs) / max(1, len(t_steps)),
        }
    statuses: dict[str, int] = defaultdict(int)
    for r in results:
        statuses[r.status] += 1
    gated = [gate_record(r.steps) for r in results]
    answers = [c["answer"] for g in gated for c in g["confirmations"]]
    return {
        "benchmark": "tasks",
        "edgepilot": __version__,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        **meta,
        "episodes": len(results),
        "success_rate": sum(r.success for r in results) / len(results) if results else 0.0,
        "false_successes": sum(false_success(r) for r in results),
        "false_success_rate": sum(false_success(r) for r in results) / len(results) if results else 0.0,
        "mean_steps": statistics.mean(len(r.steps) for r in results) if results else 0.0,
        "seconds_per_step": sum(r.seconds for r in results) / max(1, len(steps)),
        "first_step_ms": round(results[0].steps[0].ms.get("total", 0.0), 1) if results and results[0].steps else None,
        "statuses": dict(statuses),
        "gate": {"asked": len(answers), "approved": sum(a in ("yes", "always") for a in answers),
                 "refused": sum(a == "no" for a in answers),
                 "refused_unasked": sum(g["refused_unasked"] for g in gated),
                 "confirmations_per_task": round(len(answers) / len(results), 2) if results else 0.0},
        **_step_figures(steps),
        "templates": templates,
        "results": [r.to_json() for r in results],
    }


def _format_one(report: dict[str, Any]) -> list[str]:
    lines = [f"agent={report['agent']} model={report.get('model') or '-'} split={report['split']} "
             f"episodes={report['episodes']}", "",
             f"{'template':32} {'success':>8} {'steps':>6} {'s/step':>7}"]
    for tid, t in report["templates"].items():
        lines.append(f"{tid:32} {t['success_rate']:>7.0%} {t['mean_steps']:>6.1f} {t['seconds_per_step']:>7.3f}")
    m = report["median_ms"]
    lines += ["", f"{'total':32} {report['success_rate']:>7.0%} {report['mean_steps']:>6.1f} "
                  f"{report['seconds_per_step']:>7.3f}",
              "ended: " + ", ".join(f"{k} {v}" for k, v in sorted(report["statuses"].items())),
              f"false_success_rate {report['false_success_rate']:.0%} ({report['false_successes']} reported done "
              "whose checks failed)",
              f"median per step: {m['step']:.0f} ms = perceive {m['perceive']:.1f} ms, model {m['model']:.0f} ms, "
              f"act {m['act']:.1f} ms; outside the model {report['outside_model_share']:.1%}; "
              f"valid actions {report['valid_action_rate']:.0%}"]
    if "model_calls_per_step" in report:
        skipped = report["without_model"]
        parts = ", ".join(f"{k} {v:.0f}" for k, v in report["mean_ms_by_part"].items())
        lines += [f"model calls {report['model_calls_per_step']:.2f} a step, prompt tokens evaluated "
                  f"{report['prompt_tokens_evaluated_per_step']:.0f} a step (calls: {report.get('calls') or '-'}); "
                  f"decided without the model: planner {skipped['planner']}, decider {skipped['decider']}, "
                  f"reflector {skipped['reflector']} steps", f"mean ms a step by part: {parts}"]
    for role, r in report["roles"].items():
        lines.append(f"  {role:10} {r['calls']:4d} calls, median {r['median_ms']:5.0f} ms, tokens in "
                     f"{r['median_tokens_in']:.0f} (evaluated {r['median_prompt_evaluated']:.0f}, "
                     f"{r['median_prefill_ms']:.0f} ms) / out {r['median_tokens_out']:.0f} "
                     f"({r['median_decode_ms']:.0f} ms, {r['decode_tokens_per_s'] or 0:.0f} tok/s), "
                     f"unparseable {r['parse_failures']}")
    if report.get("first_step_ms") is not None:
        roles = set(report["roles"])
        included = ("" if not roles else " (model warm-up included)" if roles == {"react"}
                    else " (model warm-up and grammar compilation included)")
        lines.append(f"first step {report['first_step_ms']:.0f} ms{included}")
    return lines


def format_switches(report: dict[str, Any]) -> str:
    """The header line of a task benchmark: every switch it ran with."""
    policy = report.get("policy", "off")
    if policy == "on":
        policy += f" ({report.get('policy_file')}; answered by the {report.get('confirmer')}; audit log " \
                  f"{report.get('audit_log')})"
    parts = [f"sop={report.get('sop', 'off')}", f"policy={policy}", f"perception={report.get('perception', 'tree')}",
             f"model={report.get('model') or '-'}", f"split={report.get('split')}",
             f"per_template={report.get('per_template')}", f"max_steps={report.get('max_steps') or 'default'}"]
    if report.get("only"):
        parts.append("templates=" + ",".join(report["only"]))
    if report.get("task_dirs"):
        parts.append("tasks=" + ",".join(report["task_dirs"]))
    scale = report.get("scale_out")
    if scale:
        parts.append(f"ray={scale['ray']}" if scale["ray"] else f"workers={scale['workers']}")
    return "switches: " + " ".join(parts)


def _format_gate(report: dict[str, Any]) -> str:
    g = report.get("gate") or {}
    return (f"policy gate: {g.get('asked', 0)} confirmations asked ({g.get('approved', 0)} approved, "
            f"{g.get('refused', 0)} refused), {g.get('refused_unasked', 0)} actions refused without asking")


def format_tasks(report: dict[str, Any]) -> str:
    """The task benchmark as a plain-text table (and the baseline's, when it ran)."""
    lines = [format_switches(report), *_format_one(report)]
    if report.get("policy") == "on":
        lines.append(_format_gate(report))
    if report.get("perception", "tree") != "tree":
        lines.append(f"perception: {report['perception']} (the accessibility tree is not shown to the agent)"
                     if report["perception"] == "pixels" else "perception: tree fused with OCR")
    if report.get("model"):
        lines.append(f"model load {report['model_load_ms']:.0f} ms, peak memory {report['peak_rss_mb']:.0f} MiB")
    if "with_sop" in report:
        lines += ["", f"--- the same agent following retrieved SOPs ({report['with_sop']['sop_retrieved']} of "
                      f"{len(report['with_sop']['results'])} tasks had one) ---"] + _format_one(report["with_sop"])
    if "baseline" in report:
        lines += ["", "--- baseline: plain ReAct, same model, no grammar ---"] + _format_one(report["baseline"])
    for lean in (report, report.get("with_sop") or {}):
        if "every_call" in lean:
            ratio = lean["calls_speedup"]
            lines += ["", f"--- the same tasks asking every role at every step (--calls every), {lean['agent']} ---",
                      *_format_one(lean["every_call"]),
                      f"speed-up of --calls needed over every: {ratio['seconds_per_step']}x a step (median "
                      f"{ratio['median_step_ms']}x), {ratio['model_calls_per_step']}x fewer model calls, "
                      f"{ratio['episode_seconds']}x an episode; successes {ratio['successes'][0]} vs "
                      f"{ratio['successes'][1]}"]
    for retried in (report.get("scale_out") or {}).get("retried", []):
        lines.append(f"RETRIED {retried['unit']}: {retried['attempts']} attempts"
                     f"{' (all failed)' if retried['failed'] else ''}: {'; '.join(retried['errors'])}"[:300])
    failures = [r for r in report["results"] if not r["success"]]
    for r in failures[:20]:
        why = r["reason"] if r["status"] not in ("finished",) else "wrong end state: " + ", ".join(r["failed_checks"])
        lines.append(f"FAILED {r['instance']}: {r['status']}: {why}"[:200])
    return "\n".join(lines)


def run_observe(*, n: int = 30, device: str = "virtual", screenshot: bool = True) -> dict[str, Any]:
    """Time ``observe()`` (dump + screenshot through adb) and working out its elements right after an action,
    ``n`` times."""

    times, dump_sizes, png_sizes = [], [], []
    with open_device(device, screenshot=screenshot) as opened:
        dev = opened.device
        dev.observe()
        for i in range(n):
            if opened.phone is not None:  # change the screen so nothing is cached
                if i % 2:
                    opened.phone.go_home()
                else:
                    opened.phone.start_app("com.android.settings")
                opened.phone.changed()
            else:
                dev.act(Swipe(direction="up" if i % 2 else "down"))
            t0 = time.perf_counter()
            obs = dev.observe()
            obs.elements  # noqa: B018 - what the agent reads first: hidden nodes, the keyboard, names
            times.append((time.perf_counter() - t0) * 1000)
            dump_sizes.append(len(obs.nodes))
            png_sizes.append(len(obs.screenshot_png or b""))
        description = opened.description
    return {
        "benchmark": "observe", "edgepilot": __version__, "device": description, "n": n, "screenshot": screenshot,
        "median_ms": _median(times), "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))],
        "min_ms": min(times), "max_ms": max(times), "median_nodes": _median(dump_sizes),
        "median_png_bytes": _median(png_sizes),
    }


def format_observe(report: dict[str, Any]) -> str:
    return (f"observe() on {report['device']}, {report['n']} times, screenshot={report['screenshot']}:\n"
            f"median {report['median_ms']:.1f} ms, p90 {report['p90_ms']:.1f} ms, "
            f"min {report['min_ms']:.1f} ms, max {report['max_ms']:.1f} ms "
            f"({report['median_nodes']:.0f} nodes, {report['median_png_bytes'] / 1024:.0f} KiB PNG)")


def check_tasks(templates: tuple[str, ...] = (), seeds: int = 3, *, device: str = "virtual-local",
                on_failure: Callable[[str, TaskInstance, EpisodeResult], None] | None = None) -> tuple[int, int]:
    """The oracle on ``seeds`` instances of every split of ``templates`` (all when empty): how many episodes ran
    and how many failed. A failure is a bug in a task or in the virtual phone.

    Raises:
        TaskError: an unknown template.
        DeviceError: the virtual phone cannot be reached.
    """
    failures = total = 0
    with open_device(device) as opened:
        factory = agent_factory("oracle", opened.phone)
        for split in SPLITS:
            for instance in instances(split, seeds, only=templates):  # type: ignore[arg-type]
                result = run_episode(opened.device, opened.phone, instance, factory)
                total += 1
                if not result.success:
                    failures += 1
                    if on_failure is not None:
                        on_failure(split, instance, result)
    return total, failures
