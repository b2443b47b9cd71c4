"""Benchmarks: task success on the virtual phone, and observation latency.

Every benchmark returns a JSON-able report (fields in docs/bench.md) and can
print it as a table.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections import defaultdict
from typing import Any, Callable, Iterable

from edgepilot import __version__
from edgepilot.errors import ConfigError
from edgepilot.runtime.devices import open_device
from edgepilot.runtime.episode import AgentFactory, EpisodeResult, run_episode
from edgepilot.sim.tasks.model import TaskInstance
from edgepilot.sim.tasks.oracle import Oracle
from edgepilot.sim.tasks.suite import instances


def agent_factory(name: str, phone: Any) -> AgentFactory:
    """The agent to benchmark, by name.

    Raises:
        ConfigError: unknown agent, or one that needs a virtual phone without one.
    """
    if name == "oracle":
        if phone is None:
            raise ConfigError("the oracle reads the virtual phone's state; use --device virtual")
        return lambda instance: Oracle(instance, phone.snapshot)
    raise ConfigError(f"unknown agent {name!r}; available: oracle")


def _median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else 0.0


def run_tasks(*, agent: str = "oracle", split: str = "test", per_template: int = 3, templates: Iterable[str] = (),
              device: str = "virtual", max_steps: int | None = None,
              progress: Callable[[EpisodeResult, int, int], None] | None = None) -> dict[str, Any]:
    """Run an agent on every instance of a split and summarise.

    Raises:
        TaskError: unknown split or templates.
        ConfigError: unknown agent.
        DeviceError: the device cannot be reached.
    """
    if not device.startswith("virtual"):
        raise ConfigError(f"task benchmarks set tasks up on the virtual phone, not on {device!r}; "
                          "use --device virtual (or virtual-local)")
    todo: list[TaskInstance] = instances(split, per_template, only=templates)  # type: ignore[arg-type]
    results: list[EpisodeResult] = []
    started = time.time()
    with open_device(device) as opened:
        if opened.phone is None:
            raise ConfigError("task benchmarks set tasks up on the virtual phone; use --device virtual")
        factory = agent_factory(agent, opened.phone)
        for i, instance in enumerate(todo):
            result = run_episode(opened.device, opened.phone, instance, factory, max_steps=max_steps)
            results.append(result)
            if progress is not None:
                progress(result, i + 1, len(todo))
    return summarise(results, agent=agent, split=split, per_template=per_template, started=started)


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
    return {
        "benchmark": "tasks",
        "edgepilot": __version__,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        **meta,
        "episodes": len(results),
        "success_rate": sum(r.success for r in results) / len(results) if results else 0.0,
        "mean_steps": statistics.mean(len(r.steps) for r in results) if results else 0.0,
        "seconds_per_step": sum(r.seconds for r in results) / max(1, len(steps)),
        "median_ms": {
            "perceive": _median(s.perceive_ms for s in steps),
            "decide": _median(s.decide_ms for s in steps),
            "act": _median(s.act_ms for s in steps),
        },
        "templates": templates,
        "results": [r.to_json() for r in results],
    }


def format_tasks(report: dict[str, Any]) -> str:
    """The task benchmark as a plain-text table."""
    lines = [f"agent={report['agent']} split={report['split']} episodes={report['episodes']}", "",
             f"{'template':32} {'success':>8} {'steps':>6} {'s/step':>7}"]
    for tid, t in report["templates"].items():
        lines.append(f"{tid:32} {t['success_rate']:>7.0%} {t['mean_steps']:>6.1f} {t['seconds_per_step']:>7.3f}")
    m = report["median_ms"]
    lines += ["", f"{'total':32} {report['success_rate']:>7.0%} {report['mean_steps']:>6.1f} "
                  f"{report['seconds_per_step']:>7.3f}",
              f"median per step: perceive {m['perceive']:.1f} ms, decide {m['decide']:.1f} ms, act {m['act']:.1f} ms"]
    failures = [r for r in report["results"] if not r["success"]]
    for r in failures[:20]:
        lines.append(f"FAILED {r['instance']}: {r['error'] or ', '.join(r['failed_checks'])}")
    return "\n".join(lines)


def run_observe(*, n: int = 30, device: str = "virtual", screenshot: bool = True) -> dict[str, Any]:
    """Time ``observe()`` (dump + screenshot through adb) right after an action, ``n`` times."""
    from edgepilot.actions import Swipe

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
