"""Every benchmark suite behind one registry: ``edgepilot bench --suite NAME`` looks the suite up here.

A :class:`Suite` is a name, a line of help, the :class:`BenchOptions` fields it
reads (with their defaults), a runner and a text formatter. The command line
parses options into a :class:`BenchOptions`, calls :func:`run_suite` and
prints; everything else (defaults, checks, progress lines, the report) is
here and in the suites' own modules.

    suite, report = run_suite("tasks", BenchOptions(agents=("oracle",), per_template=1))
    print(suite.format(report))          # or json.dumps(report): every switch is in report["options"]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgepilot.errors import ConfigError

Progress = Callable[[str], None]
"""Receives one line per finished episode, screen or trial (the command line prints them on stderr)."""


@dataclass(frozen=True)
class BenchOptions:
    """Every switch of ``edgepilot bench``; None (or empty) means the suite's default.

    Each suite reads the fields in its :attr:`Suite.options` and records them, defaults filled in, in its
    report's ``options``.
    """

    agents: tuple[str, ...] = ()
    model: str | None = None
    baseline: bool = False
    split: str | None = None
    per_template: int | None = None
    from_instance: int | None = None
    """Start at each template's Nth instance (1-based; tasks and desktop suites): later instances are ones no
    fix made after an earlier run was fitted to."""
    templates: tuple[str, ...] = ()
    task_dirs: tuple[Path, ...] = ()
    device: str | None = None
    max_steps: int | None = None
    perception: str | None = None
    sop: str | None = None
    memory: str | None = None
    """``on`` (default, as ``run``) or ``off``: routes from app memories where no procedure fits (tasks suite)."""
    calls: str | None = None
    """``needed`` (default for the model agent, as ``run``), ``every`` or ``both``: how the model agent spends
    model calls (tasks suite)."""
    policy: str | None = None
    goals: tuple[str, ...] = ()
    repeats: int | None = None
    save_to: Path | None = None
    workers: int | None = None
    """Worker processes for the episodes (a suite that :attr:`Suite.scales`); 1 or None: this process."""
    ray: str | None = None
    """Run the episodes as Ray tasks on this cluster (``local``, ``auto``, ``ray://HOST:10001``)."""
    dumps: tuple[Path, ...] = ()
    """Folders of uiautomator dumps (the screens suite)."""
    budget: int | None = None
    """Tokens a screen's text may take (the screens suite)."""

    def filled(self, **defaults: Any) -> BenchOptions:
        """These options with ``defaults`` where a field is None or empty."""
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) in (None, ())})

    def record(self, names: tuple[str, ...]) -> dict[str, Any]:
        """The named fields as JSON values (paths as strings, tuples as lists)."""
        def plain(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            return value

        return {name: plain(getattr(self, name)) for name in names}


FLAGS: dict[str, str] = {"agents": "--agent", "templates": "--template", "task_dirs": "--tasks", "goals": "--goal",
                         "repeats": "-n", "save_to": "--save"}
"""The command-line flag of each :class:`BenchOptions` field whose flag is not ``--field-name``."""


def flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


@dataclass(frozen=True)
class Suite:
    """One benchmark: how to fill in its defaults, run it and print its report."""

    name: str
    help: str
    options: tuple[str, ...]
    """The :class:`BenchOptions` fields it reads."""
    prepare: Callable[[BenchOptions], BenchOptions]
    """Fills in the suite's defaults and checks the options (ConfigError for what it cannot run)."""
    run: Callable[[BenchOptions, Progress | None], dict[str, Any]]
    format: Callable[[dict[str, Any]], str]
    scales: bool = False
    """It takes :data:`SCALE_OPTIONS` (its episodes can run on a worker pool, :mod:`edgepilot.bench.pool`)."""


SCALE_OPTIONS = ("workers", "ray")
"""The options of a suite that scales out; its report's ``options`` has them when the run was spread."""


# ---------------------------------------------------------------- the suites


def _one_agent(options: BenchOptions, allowed: tuple[str, ...] = ("oracle", "model", "baseline")) -> str:
    if len(options.agents) > 1 or any(a not in allowed for a in options.agents):
        raise ConfigError(f"--agent: one of {', '.join(allowed)} (attacker only with --suite injection)")
    return options.agents[0] if options.agents else "oracle"


def _episode_line(result: Any, done: int, total: int) -> str:
    mark = "ok  " if result.success else "FAIL"
    return (f"[{done:3d}/{total}] {result.agent:8} {mark} {result.instance:36} {len(result.steps):2d} steps "
            f"{result.seconds:7.2f} s  {result.status}")


def _episodes(progress: Progress | None) -> Callable[[Any, int, int], None] | None:
    if progress is None:
        return None
    return lambda result, done, total: progress(_episode_line(result, done, total))


def _task_policy(options: BenchOptions) -> str:
    policy = options.policy or "on"
    if policy not in ("on", "off"):
        raise ConfigError(f"--policy {policy}: the task suites run with the policy on or off (both: injection suite)")
    return policy


def _prepare_tasks(options: BenchOptions) -> BenchOptions:
    from edgepilot.bench.tasks import resolve_sop

    agent = _one_agent(options)
    return options.filled(agents=(agent,), split="test", per_template=3, from_instance=1, device="virtual",
                          perception="tree",
                          policy=_task_policy(options), sop=resolve_sop(options.sop, agent), workers=1,
                          memory=_task_memory(options.memory, agent), calls=_task_calls(options.calls, agent))


def _task_calls(calls: str | None, agent: str) -> str | None:
    """``--calls`` as a run uses it: ``needed`` for the model agent unless told otherwise; the oracle and the
    baseline make no role calls to skip (asking for a strategy is an error)."""
    if calls is None:
        return "needed" if agent == "model" else None
    if agent != "model":
        raise ConfigError("--calls is how the model agent spends model calls: use --agent model with --calls")
    return calls


def _task_memory(memory: str | None, agent: str) -> str:
    """``--memory`` as a run uses it: on for the model agent unless told off; the oracle and the baselines
    follow no routes (asking them to is an error)."""
    if memory is None:
        return "on" if agent == "model" else "off"
    if memory == "on" and agent != "model":
        raise ConfigError("memory routes are followed by the model agent: use --agent model with --memory on")
    return memory


def _run_tasks(options: BenchOptions, progress: Progress | None) -> dict[str, Any]:
    from edgepilot.bench.tasks import run_tasks

    return run_tasks(agent=options.agents[0], baseline=options.baseline, model=options.model, split=options.split,
                     per_template=options.per_template, templates=options.templates, task_dirs=options.task_dirs,
                     from_instance=options.from_instance or 1,
                     device=options.device, max_steps=options.max_steps, save_to=options.save_to, sop=options.sop,
                     policy=options.policy, perception=options.perception, progress=_episodes(progress),
                     workers=options.workers or 1, ray=options.ray, memory=options.memory or "on",
                     calls=options.calls or "needed")


def _format_tasks(report: dict[str, Any]) -> str:
    from edgepilot.bench.tasks import format_tasks

    return format_tasks(report)


def _prepare_desktop(options: BenchOptions) -> BenchOptions:
    from edgepilot.bench.tasks import resolve_sop

    agent = _one_agent(options)
    if options.sop == "both":
        raise ConfigError("--sop both: the desktop suite runs with procedures on or off")
    if options.split is not None and options.split not in ("train", "test-instances", "test"):
        raise ConfigError(f"--split {options.split}: the desktop suite takes train, test-instances or test "
                          "(none: each template once)")
    if options.split is None and (options.from_instance or 1) > 1:
        raise ConfigError("--from-instance needs a --split: without one, the desktop suite runs each template's "
                          "first instance once")
    return options.filled(agents=(agent,), device="desktop:xvfb", policy=_task_policy(options),
                          sop=resolve_sop(options.sop, agent), memory=_task_memory(options.memory, agent),
                          split="all", from_instance=1,
                          per_template=1 if options.split is None else 3)


def _run_desktop(options: BenchOptions, progress: Progress | None) -> dict[str, Any]:
    from edgepilot.bench.desktop import desktop_bench

    agent = options.agents[0]
    return desktop_bench(device=options.device, agent="reference" if agent == "oracle" else agent,
                         model=options.model, only=options.templates, split=options.split,
                         per_template=options.per_template, max_steps=options.max_steps,
                         save_to=options.save_to, sop=options.sop, policy=options.policy,
                         memory=options.memory or "off",
                         from_instance=options.from_instance or 1, progress=_episodes(progress))


def _format_desktop(report: dict[str, Any]) -> str:
    from edgepilot.bench.desktop import format_desktop

    return format_desktop(report)


def _prepare_observe(options: BenchOptions) -> BenchOptions:
    return options.filled(repeats=30, device="virtual")


def _run_observe(options: BenchOptions, progress: Progress | None) -> dict[str, Any]:
    from edgepilot.bench.tasks import run_observe

    return run_observe(n=options.repeats, device=options.device)


def _format_observe(report: dict[str, Any]) -> str:
    from edgepilot.bench.tasks import format_observe

    return format_observe(report)


def _prepare_ocr(options: BenchOptions) -> BenchOptions:
    return options.filled(repeats=23)


def _run_ocr(options: BenchOptions, progress: Progress | None) -> dict[str, Any]:
    from edgepilot.bench.ocr import ocr_bench

    shown = None if progress is None else (lambda name, row: progress(f"  {name:28} {row.get('ms', 0):6.0f} ms"))
    return ocr_bench(options.repeats, progress=shown)


def _format_ocr(report: dict[str, Any]) -> str:
    from edgepilot.bench.ocr import format_ocr

    return format_ocr(report)


def _prepare_injection(options: BenchOptions) -> BenchOptions:
    from edgepilot.bench.injection import AGENTS

    wrong = [a for a in options.agents if a not in AGENTS]
    if wrong:
        raise ConfigError(f"--agent {wrong[0]}: the injection suite runs {', '.join(AGENTS)}")
    policy = options.policy or "both"
    if policy not in ("both", "on", "off"):
        raise ConfigError(f"--policy takes both, on or off, not {policy!r}")
    return options.filled(agents=("oracle", "attacker"), policy=policy)


def _run_injection(options: BenchOptions, progress: Progress | None) -> dict[str, Any]:
    from edgepilot.bench.injection import run_injection

    def shown(row: dict[str, Any], done: int, total: int) -> None:
        if progress is not None:
            progress(f"[{done:3d}/{total}] {row['agent']:8} policy {'on ' if row['policy'] else 'off'} "
                     f"{'ok  ' if row['utility'] else 'FAIL'} {'ATTACKED' if row['attack'] else 'safe    '} "
                     f"asked {row['asked']} {row['case']}")

    policies = {"both": (False, True), "on": (True,), "off": (False,)}[options.policy or "both"]
    return run_injection(agents=options.agents, policies=policies, model=options.model, user_tasks=options.templates,
                         goals=options.goals, save_to=options.save_to, progress=shown)


def _format_injection(report: dict[str, Any]) -> str:
    from edgepilot.bench.injection import format_injection

    return format_injection(report)


def _prepare_stop(options: BenchOptions) -> BenchOptions:
    return options.filled(repeats=5)


def _run_stop(options: BenchOptions, progress: Progress | None) -> dict[str, Any]:
    from edgepilot.bench.stop import measure_stop

    shown = None if progress is None else (
        lambda row: progress(f"  after {row['after']}: {row['status']}, stop {row['stop_ms']:.0f} ms"))
    return measure_stop(options.repeats, model=options.model, progress=shown)


def _format_stop(report: dict[str, Any]) -> str:
    from edgepilot.bench.stop import format_stop

    return format_stop(report)


def _prepare_sop(options: BenchOptions) -> BenchOptions:
    from edgepilot.bench.sop import EVAL_SPLITS, PER_TEMPLATE

    options = options.filled(split="test", per_template=PER_TEMPLATE)
    if options.split not in EVAL_SPLITS:
        raise ConfigError(f"--split {options.split}: the sop suite takes {', '.join(EVAL_SPLITS)}")
    return options


def _run_sop(options: BenchOptions, progress: Progress | None) -> dict[str, Any]:
    from edgepilot.bench.sop import evaluate, evaluate_phrasings

    if options.split == "phrasings":
        return {"benchmark": "sop", **evaluate_phrasings()}
    return {"benchmark": "sop", **evaluate(options.split, per_template=options.per_template).to_dict()}


def _format_sop(report: dict[str, Any]) -> str:
    from edgepilot.bench.sop import format_eval, format_phrasings

    if report.get("split") == "phrasings":
        return "Goal understanding: " + format_phrasings(report)
    return "SOP retrieval: " + format_eval(report)


def _prepare_sop_learn(options: BenchOptions) -> BenchOptions:
    options = options.filled(per_template=3, device="virtual")
    if not options.device.startswith("virtual"):
        raise ConfigError("the sop-learn suite sets tasks up on the virtual phone; use --device virtual "
                          "or virtual-local")
    if options.per_template < 1:
        raise ConfigError("--per-template (variants per template) must be at least 1")
    return options


def _run_sop_learn(options: BenchOptions, progress: Progress | None) -> dict[str, Any]:
    from edgepilot.bench.sop import learn_eval

    def shown(template: str, inst: Any, result: Any) -> None:
        if progress is not None:
            progress(f"{'ok  ' if result.success else 'FAIL'} {inst.id:34} {inst.goal[:70]}")

    return learn_eval(templates=options.templates, variants=options.per_template, device=options.device,
                      keep=options.save_to, progress=shown)


def _format_sop_learn(report: dict[str, Any]) -> str:
    from edgepilot.bench.sop import format_learn_eval

    return format_learn_eval(report)


def _prepare_screens(options: BenchOptions) -> BenchOptions:
    from edgepilot.bench.screens import dump_files
    from edgepilot.perception.render import SCREEN_BUDGET

    dump_files(options.dumps)  # a clear error now, before anything loads
    return options.filled(budget=SCREEN_BUDGET)


def _run_screens(options: BenchOptions, progress: Progress | None) -> dict[str, Any]:
    from edgepilot.bench.screens import screens_bench

    return screens_bench(options.dumps, model=options.model, budget=options.budget, progress=progress)


def _format_screens(report: dict[str, Any]) -> str:
    from edgepilot.bench.screens import format_screens

    return format_screens(report)


_TASK_OPTIONS = ("agents", "model", "baseline", "split", "per_template", "from_instance", "templates", "task_dirs",
                 "device", "max_steps", "perception", "sop", "memory", "calls", "policy", "save_to")

SUITES: dict[str, Suite] = {s.name: s for s in (
    Suite("tasks", "task success and speed on the phone suite (SOPs and policy gate on, as `run`)",
          _TASK_OPTIONS, _prepare_tasks, _run_tasks, _format_tasks, scales=True),
    Suite("observe", "latency of one observation (dump + screenshot over adb)",
          ("device", "repeats"), _prepare_observe, _run_observe, _format_observe),
    Suite("screens", "real apps' screens (uiautomator dumps): elements, tokens listed whole and within the budget",
          ("dumps", "model", "budget"), _prepare_screens, _run_screens, _format_screens),
    Suite("ocr", "OCR time per screenshot, and how much of the tree's text it recovers",
          ("repeats",), _prepare_ocr, _run_ocr, _format_ocr),
    Suite("desktop", "the desktop suite (29 kinds of task, 6 applications) on an X display (or: --device desktop...)",
          ("agents", "model", "split", "per_template", "from_instance", "templates", "device", "max_steps", "sop",
           "policy", "save_to"),
          _prepare_desktop, _run_desktop, _format_desktop),
    Suite("injection", "utility and attack success under prompt injection, policy off and on",
          ("agents", "model", "templates", "goals", "policy", "save_to"),
          _prepare_injection, _run_injection, _format_injection),
    Suite("stop", "the daemon's safety-stop hotkey: from the key to the run's end (private Xvfb)",
          ("model", "repeats"), _prepare_stop, _run_stop, _format_stop),
    Suite("sop", "SOP retrieval top-1 accuracy on the suite's goals (as `edgepilot sop eval`)",
          ("split", "per_template"), _prepare_sop, _run_sop, _format_sop),
    Suite("sop-learn", "learned SOPs followed on held-out variants (as `edgepilot sop learn-eval`)",
          ("templates", "per_template", "device", "save_to"), _prepare_sop_learn, _run_sop_learn, _format_sop_learn),
)}
"""The suites ``edgepilot bench --suite`` offers, in the order its help lists them."""


def suite_names() -> list[str]:
    return list(SUITES)


def select(name: str, options: BenchOptions) -> Suite:
    """The suite to run: ``name``, except that the task suite on a desktop device (``--device desktop...``)
    is the desktop suite.

    Raises:
        ConfigError: no suite has that name.
    """
    if name not in SUITES:
        raise ConfigError(f"no benchmark suite {name!r}; available: {', '.join(SUITES)}")
    if name == "tasks" and options.device is not None:
        from edgepilot.devices import parse_desktop_spec

        if parse_desktop_spec(options.device) is not None:
            return SUITES["desktop"]
    return SUITES[name]


def run_suite(name: str, options: BenchOptions | None = None, *,
              progress: Progress | None = None) -> tuple[Suite, dict[str, Any]]:
    """Run a suite with ``options`` (defaults filled in); the suite that ran and its report.

    The report's ``benchmark`` names the suite, and its ``options`` record every switch the suite reads,
    defaults filled in (fields: docs/bench.md).

    Raises:
        ConfigError: unknown suite, an option the suite does not read, or options it cannot run with.
        EdgepilotError: whatever the suite raises (TaskError, ModelError, DeviceError, PolicyError...).
    """
    options = options or BenchOptions()
    suite = select(name, options)
    takes = suite.options + (SCALE_OPTIONS if suite.scales else ())
    unused = [f.name for f in fields(BenchOptions)
              if f.name not in takes and getattr(options, f.name) != f.default]
    if unused:
        raise ConfigError(f"{', '.join(map(flag, unused))}: not an option of the {suite.name} suite "
                          f"(it takes {', '.join(map(flag, takes)) or 'none'})")
    if options.workers is not None and options.workers < 1:
        raise ConfigError(f"--workers {options.workers}: at least 1 (1: the episodes run in this process)")
    resolved = suite.prepare(options)
    report = suite.run(resolved, progress)
    report.setdefault("benchmark", suite.name)
    spread = (resolved.workers or 1) > 1 or resolved.ray is not None
    report["options"] = {"suite": suite.name, **resolved.record(suite.options + (SCALE_OPTIONS if spread else ()))}
    return suite, report
