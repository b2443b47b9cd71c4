"""A benchmark's saved episodes as one HTML page (``edgepilot report DIR`` on an ``edgepilot bench --save DIR``).

    is_bench_folder(folder)      whether a folder holds saved episodes below it rather than being a trajectory
    read_bench(folder)           the episodes, read back from their trajectories
    render_bench(bench, links)   the page: success per template, where a step's time went, the episodes
    write_bench_report(folder)   the page, and each episode's own report (:mod:`edgepilot.agent.report`) it links to

Everything comes from the trajectories (``meta.json``, ``steps.jsonl``, ``result.json``; docs/trajectories.md):
``bench --save`` writes one per episode, with the template in its meta and the verdict in its result, so the
page needs no report JSON. The charts are inline SVG drawn here, with their labels and numbers as HTML text
beside them; the page runs no script and fetches nothing (the same content security policy as a trajectory's).
"""

from __future__ import annotations

import html
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from edgepilot.agent.records import StepRecord
from edgepilot.agent.report import escape, model_name, page_html, write_page, write_report
from edgepilot.agent.trajectory import Trajectory, read_trajectory
from edgepilot.errors import ConfigError

BAR_WIDTH = 240
TIME_WIDTH = 640
PHASES = ("perceive", "planner", "decider", "react", "act", "policy", "reflector", "reflect", "other")
"""The order of a step's phases in the time breakdown; a role not named here goes before ``act``."""
COLORS = {"perceive": "#4e79a7", "planner": "#f28e2b", "decider": "#e15759", "react": "#76b7b2", "act": "#59a14f",
          "policy": "#edc948", "reflector": "#b07aa1", "reflect": "#ff9da7", "other": "#bab0ac"}
SPARE_COLORS = ("#9c755f", "#86bcb6", "#d37295", "#8cd17d")

_CSS = """
.bars td{vertical-align:middle}.bars .pct{font-variant-numeric:tabular-nums;white-space:nowrap}
svg.bar,svg.swatch{display:block}.num{text-align:right;font-variant-numeric:tabular-nums}
.episodes td,.episodes th{padding-right:14px}.note{color:#666;font-size:.9em}
.won{color:#2e7d32;font-weight:600}.lost{color:#c62828;font-weight:600}
"""


@dataclass(frozen=True)
class Episode:
    """One saved episode: its trajectory, and the template and agent it ran."""

    traj: Trajectory
    template: str
    agent: str

    @property
    def success(self) -> bool:
        return bool(self.traj.result is not None and self.traj.result.success)


@dataclass
class Bench:
    """The episodes saved under a benchmark's folder, and what could not be read there."""

    folder: Path
    episodes: list[Episode] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _trajectory_folders(folder: Path) -> list[Path]:
    return sorted(p.parent for p in folder.rglob("steps.jsonl") if p.parent != folder)


def is_bench_folder(folder: Path) -> bool:
    """Whether ``folder`` holds saved episodes (trajectories in folders below it) and is not a trajectory itself."""
    folder = Path(folder)
    return folder.is_dir() and not (folder / "steps.jsonl").is_file() and bool(_trajectory_folders(folder))


def _template(traj: Trajectory) -> str:
    """The template an episode ran: its meta's ``template``, else its task id's (``template#seed``), else its goal."""
    template, task = getattr(traj.meta, "template", None), getattr(traj.meta, "task", None)
    if isinstance(template, str) and template:
        return template
    if isinstance(task, str) and task:
        return task.split("#", 1)[0]
    return traj.meta.goal or "?"


def read_bench(folder: Path) -> Bench:
    """The episodes saved under ``folder`` (``edgepilot bench --save``), in folder order.

    Raises:
        ConfigError: no trajectory is saved under ``folder``.
    """
    folder = Path(folder)
    bench = Bench(folder)
    for path in _trajectory_folders(folder) if folder.is_dir() else []:
        try:
            traj = read_trajectory(path)
        except ConfigError as exc:
            bench.warnings.append(str(exc))
            continue
        bench.episodes.append(Episode(traj, _template(traj), traj.meta.agent or "?"))
    if not bench.episodes:
        raise ConfigError(f"{folder} holds no saved episodes; `edgepilot bench --save DIR` writes them")
    return bench


# ---------------------------------------------------------------- figures


def step_phases(step: StepRecord) -> dict[str, float]:
    """Where a step's time went, in ms, by phase: each part once, so that the phases add up to the total.

    The step's ``ms`` has ``perceive``, one entry per model role, ``act``, ``reflect`` (which includes the
    reflector's model call) and ``total``; ``reflect`` here is what the reflection took outside the model,
    and ``other`` what no phase accounts for (the policy gate where it is not timed on its own, reading the
    screen after the action, the loop itself).
    """
    ms = {k: v for k, v in step.ms.items() if v >= 0}
    total = ms.pop("total", None)
    if "reflect" in ms:
        ms["reflect"] = max(0.0, ms["reflect"] - ms.get("reflector", 0.0))
    if total is not None:
        ms["other"] = max(0.0, total - sum(ms.values()))
    return ms


def _order(phases: set[str]) -> list[str]:
    known = [p for p in PHASES if p in phases]
    extra = sorted(phases - set(PHASES))
    cut = known.index("act") if "act" in known else len(known)
    return known[:cut] + extra + known[cut:]


def mean_phases(episodes: list[Episode]) -> tuple[int, dict[str, float]]:
    """The number of steps over ``episodes`` and the mean ms per step of each phase, in display order."""
    sums: dict[str, float] = defaultdict(float)
    steps = 0
    for episode in episodes:
        for step in episode.traj.steps:
            steps += 1
            for phase, ms in step_phases(step).items():
                sums[phase] += ms
    return steps, {p: sums[p] / steps for p in _order(set(sums))} if steps else {}


def _color(phase: str) -> str:
    return COLORS.get(phase) or SPARE_COLORS[sum(map(ord, phase)) % len(SPARE_COLORS)]


# ---------------------------------------------------------------- HTML


def _pct(ok: int, n: int) -> str:
    return f"{round(100 * ok / n)}%" if n else "-"


def _bar(ok: int, n: int) -> str:
    """A success bar: the track, and the filled share (labels are HTML text beside it)."""
    filled = round(BAR_WIDTH * ok / n) if n else 0
    return (f'<svg class="bar" width="{BAR_WIDTH}" height="16" viewBox="0 0 {BAR_WIDTH} 16" aria-hidden="true">'
            f'<rect class="track" width="{BAR_WIDTH}" height="16" rx="3" fill="#e4e4e8"/>'
            f'<rect class="fill" width="{filled}" height="16" rx="3" fill="#2e7d32"/></svg>')


def _by_agent(episodes: list[Episode]) -> dict[str, list[Episode]]:
    groups: dict[str, list[Episode]] = defaultdict(list)
    for episode in episodes:
        groups[episode.agent].append(episode)
    return dict(groups)


def _success_html(agent: str, episodes: list[Episode]) -> str:
    templates: dict[str, list[Episode]] = defaultdict(list)
    for episode in episodes:
        templates[episode.template].append(episode)
    rows = []
    for template in sorted(templates):
        runs = templates[template]
        ok = sum(e.success for e in runs)
        rows.append(f"<tr><th>{escape(template)}</th><td>{_bar(ok, len(runs))}</td>"
                    f'<td class="pct">{_pct(ok, len(runs))} ({ok} of {len(runs)})</td></tr>')
    ok = sum(e.success for e in episodes)
    rows.append(f"<tr><th>all templates</th><td>{_bar(ok, len(episodes))}</td>"
                f'<td class="pct">{_pct(ok, len(episodes))} ({ok} of {len(episodes)})</td></tr>')
    return (f'<section class="card"><h2>success by template: {escape(agent)}</h2>'
            f'<table class="bars">{"".join(rows)}</table></section>')


def _time_html(agent: str, episodes: list[Episode]) -> str:
    steps, phases = mean_phases(episodes)
    total = sum(phases.values())
    if not steps or total <= 0:
        return ""
    x, rects, rows = 0.0, [], []
    for phase, ms in phases.items():
        width = TIME_WIDTH * ms / total
        rects.append(f'<rect class="phase" data-phase="{escape(phase)}" x="{x:.1f}" width="{width:.1f}" '
                     f'height="22" fill="{_color(phase)}"/>')
        x += width
        swatch = (f'<svg class="swatch" width="12" height="12" aria-hidden="true">'
                  f'<rect width="12" height="12" rx="2" fill="{_color(phase)}"/></svg>')
        rows.append(f'<tr><td>{swatch}</td><th>{escape(phase)}</th><td class="num">{ms:.1f} ms</td>'
                    f'<td class="num">{_pct(ms, total)}</td></tr>')
    chart = (f'<svg class="time" width="{TIME_WIDTH}" height="22" viewBox="0 0 {TIME_WIDTH} 22" '
             f'aria-hidden="true">{"".join(rects)}</svg>')
    return (f'<section class="card"><h2>time per step: {escape(agent)}</h2>'
            f"<p>{total:.0f} ms a step on average, over {steps} steps</p>{chart}"
            f'<table class="phases"><tr><td></td><th>phase</th><th class="num">mean per step</th>'
            f'<th class="num">share</th></tr>{"".join(rows)}</table>'
            '<p class="note">Each model role is its calls\' time; reflect is the reflection outside the model; '
            "other is what no phase times on its own: the policy gate, reading the screen after the action, the "
            "loop itself.</p></section>")


def _episodes_html(episodes: list[Episode], links: dict[Path, str]) -> str:
    rows = []
    for n, episode in enumerate(episodes, 1):
        traj, result = episode.traj, episode.traj.result
        verdict = ("success" if episode.success else "failure" if result is not None and result.success is False
                   else result.status if result is not None else "interrupted")
        asked = sum(1 for s in traj.steps if s.gate is not None and s.gate.asked)
        task = getattr(traj.meta, "task", None)
        name = task if isinstance(task, str) and task else Path(traj.folder).name
        href = links.get(Path(traj.folder))
        link = f'<a href="{html.escape(href)}">{escape(name)}</a>' if href else escape(name)
        rows.append(f'<tr><td class="num">{n}</td><td>{link}</td><td>{escape(episode.template)}</td>'
                    f"<td>{escape(episode.agent)}</td><td>{escape(model_name(traj.meta) or '?')}</td>"
                    f'<td class="{"won" if episode.success else "lost"}">{escape(verdict)}</td>'
                    f'<td class="num">{len(traj.steps)}</td>'
                    f'<td class="num">{"" if result is None or result.seconds is None else f"{result.seconds:.1f}"}'
                    f'</td><td class="num">{asked}</td><td>{escape(traj.meta.goal)}</td></tr>')
    head = ("<tr><th>#</th><th>episode</th><th>template</th><th>agent</th><th>model</th><th>result</th>"
            '<th class="num">steps</th><th class="num">seconds</th><th class="num">asked</th><th>goal</th></tr>')
    return (f'<section class="card"><h2>episodes</h2><table class="episodes">{head}{"".join(rows)}</table>'
            "</section>")


def render_bench(bench: Bench, links: dict[Path, str] | None = None) -> str:
    """The benchmark's page; ``links`` maps an episode's folder to the href of its report."""
    links = links or {}
    episodes = bench.episodes
    ok = sum(e.success for e in episodes)
    values = {
        "episodes": str(len(episodes)),
        "success": f"{_pct(ok, len(episodes))} ({ok} of {len(episodes)})",
        "agents": ", ".join(sorted({e.agent for e in episodes})),
        "models": ", ".join(sorted({model_name(e.traj.meta) or "?" for e in episodes})),
        "policy": ", ".join(sorted({str(p) for e in episodes if (p := getattr(e.traj.meta, "policy", None))
                                    is not None})),
        "folder": str(bench.folder),
    }
    if (bench.folder / "audit.jsonl").is_file():
        values["audit log"] = str(bench.folder / "audit.jsonl")
    head = "".join(f"<tr><th>{html.escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in values.items() if v)
    groups = _by_agent(episodes)
    charts = "".join(_success_html(agent, runs) + _time_html(agent, runs) for agent, runs in groups.items())
    warn = ("" if not bench.warnings else '<section class="card warn"><h2>warnings</h2><ul>'
            + "".join(f"<li>{escape(w)}</li>" for w in bench.warnings) + "</ul></section>")
    title = f"benchmark: {bench.folder.name}"
    return page_html(f"edgepilot {title}", f'<header class="card"><h1>{escape(title)}</h1><table>{head}</table>'
                     f"</header>{warn}{charts}{_episodes_html(episodes, links)}", css=_CSS)


def write_bench_report(folder: Path, out: Path | None = None) -> Path:
    """Write the benchmark's page, and each episode's report (``EPISODE/report.html``, linking back to it).

    Args:
        folder: what ``edgepilot bench --save`` wrote.
        out: the page to write; default ``FOLDER/report.html``.

    Returns:
        The page written.

    Raises:
        ConfigError: no episode is saved under ``folder``, or a page cannot be written.
    """
    bench = read_bench(folder)
    out = Path(out) if out is not None else Path(folder) / "report.html"
    links = {}
    for episode in bench.episodes:
        page = write_report(episode.traj, back=out)
        links[Path(episode.traj.folder)] = quote(Path(os.path.relpath(page, out.parent)).as_posix())
    return write_page(out, render_bench(bench, links))
