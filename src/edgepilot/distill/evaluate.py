"""``edgepilot distill eval``: task success on held-out splits for the base model, the student and the teacher.

Each arm runs the task benchmark's own pieces (:func:`edgepilot.bench.tasks.agent_factory`,
:func:`edgepilot.bench.episode.run_episode`, :func:`edgepilot.bench.tasks.summarise`) on a
fresh virtual phone behind its adb endpoint, as ``edgepilot bench`` does; the
student is the same model opened with the LoRA (``open_model(spec, config,
lora_path=...)``). Prints a table and writes ``eval.json`` (each arm's full
benchmark report) and, when matplotlib is installed, ``eval.png``.

With ``workers`` above 1 or a Ray cluster, every episode of every arm and split
is a unit of one worker pool (:func:`edgepilot.bench.tasks.play_pooled`): each
worker opens its own phone and model (the adapter's bytes travel with the run),
and results and trajectories come back to this process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edgepilot.actions import parse_action
from edgepilot.agent.roles import DECIDER, PLANNER
from edgepilot.bench.episode import run_episode
from edgepilot.bench.pool import Unit
from edgepilot.bench.tasks import (
    EpisodeContext,
    EpisodeJob,
    agent_factory,
    play_pooled,
    retrieve_sops,
    sop_report,
    sop_runs,
    summarise,
)
from edgepilot.config import Config, load_config
from edgepilot.devices import open_device
from edgepilot.distill.dataset import file_sha256, read_jsonl
from edgepilot.errors import ConfigError, EdgepilotError
from edgepilot.models.base import Message
from edgepilot.models.registry import base_of, open_model
from edgepilot.sim.tasks.suite import instances

ARMS = ("base", "student", "student-vote", "teacher")
DEFAULT_VOTE = 5


def _run_arm(arm: str, split: str, *, per_template: int, templates: Iterable[str], model: str | None,
             lora: Path | None, max_steps: int | None, save_to: Path | None, backend: Any,
             progress: Callable[[str, str, Any, int, int], None] | None, vote: int = 1,
             library: Any = None) -> dict[str, Any]:
    todo = instances(split, per_template, only=templates)  # type: ignore[arg-type]
    sops = retrieve_sops(todo, library) if library is not None else {}
    results = []
    started = time.time()
    with open_device("virtual") as opened:
        factory = agent_factory("oracle" if arm == "teacher" else "model", opened.phone, backend,
                                sop_for=(lambda instance: sops[instance.id]) if library is not None else None,
                                vote=vote)
        for i, instance in enumerate(todo):
            result = run_episode(opened.device, opened.phone, instance, factory, max_steps=max_steps,
                                 save_to=save_to / arm / split if save_to else None,
                                 meta={"model": getattr(backend, "name", None), "lora": str(lora) if lora else None})
            results.append(result)
            if progress is not None:
                progress(arm, split, result, i + 1, len(todo))
    report = summarise(results, agent=arm, split=split, per_template=per_template, started=started)
    report["model"] = None if arm == "teacher" else getattr(backend, "name", None)
    report["lora"] = str(lora) if arm.startswith("student") and lora else None
    report["vote"] = vote
    if library is not None:
        report.update(sop_report(sops))
    return report


def evaluate(*, lora: Path | None, arms: Iterable[str] = ("base", "student"),
             splits: Iterable[str] = ("test-instances", "test"), per_template: int = 1,
             templates: Iterable[str] = (), model: str | None = None, max_steps: int | None = None,
             out: Path | None = None, save_trajectories: bool = False,
             progress: Callable[[str, str, Any, int, int], None] | None = None,
             vote: int = DEFAULT_VOTE, sop: str = "off", workers: int = 1, ray: str | None = None) -> dict[str, Any]:
    """Run each arm on each split; returns (and writes to ``out/eval.json``) the comparison.

    ``student-vote`` is the student with self-consistent action voting over ``vote`` answers a step.
    ``sop``: ``off`` (no SOP in the prompts), ``on`` (each model arm follows the bundled SOP its goal
    retrieves, as ``edgepilot run`` does; its reports are keyed ``ARM+sop/SPLIT``) or ``both``.
    ``workers`` (above 1), ``ray``: the episodes run on that many worker processes, or as Ray tasks on that
    cluster, and come back here (the summary's ``scale_out`` says how; an episode whose worker dies is
    retried).

    Raises:
        ConfigError: unknown arm, or the student asked for without an adapter; Ray not reachable.
        ModelError: the model or the adapter does not load.
    """

    arms, splits, templates = list(arms), list(splits), list(templates)
    unknown = set(arms) - set(ARMS)
    if unknown:
        raise ConfigError(f"unknown arm(s) {sorted(unknown)}; use {', '.join(ARMS)}")

    runs = sop_runs(sop)
    library = None
    if True in runs:  # loaded once, for every arm and split
        from edgepilot.sop import load_library

        library = load_library()
    students = {"student", "student-vote"} & set(arms)
    if students and lora is None:
        raise ConfigError("the student arms need --lora PATH (the GGUF adapter `edgepilot distill export` wrote)")
    if not students and lora is not None and not Path(lora).is_file():
        lora = None  # (kept when it is there: earlier student reports in the folder hold for it)
    if lora is not None and not Path(lora).is_file():
        raise ConfigError(f"no adapter at {lora}; `edgepilot distill export` writes it")
    config = load_config()
    reports: dict[str, dict[str, Any]] = {}
    scale: dict[str, Any] | None = None
    if workers > 1 or ray is not None:
        plan = [(arm, split, with_sop) for arm in arms for split in splits
                for with_sop in ((False,) if arm == "teacher" else runs)]
        reports, scale = _run_pooled(plan, config=config, per_template=per_template, templates=templates,
                                     model=model, lora=lora if students else None, max_steps=max_steps,
                                     save_to=out / "trajectories" if out and save_trajectories else None,
                                     vote=vote, library=library, workers=workers, ray=ray, progress=progress)
    for arm in arms if scale is None else ():
        backend, load_ms = None, 0.0
        if arm != "teacher":
            start = time.perf_counter()
            # the base arm is the model without any adapter, also when ``model`` is a built-in base + LoRA
            student = arm in students
            backend = open_model(model if student else base_of(model, config), config,
                                 lora_path=str(lora) if student else None)
            load_ms = (time.perf_counter() - start) * 1000
        # the teacher plays from the task's state, never from a prompt: SOPs do not apply to it
        for split in splits:
            for with_sop in (False,) if arm == "teacher" else runs:
                name = f"{arm}+sop" if with_sop else arm
                report = _run_arm(name, split, per_template=per_template, templates=templates, model=model,
                                  lora=lora if arm in students else None, max_steps=max_steps,
                                  save_to=out / "trajectories" if out and save_trajectories else None,
                                  backend=backend, progress=progress, vote=vote if arm == "student-vote" else 1,
                                  library=library if with_sop else None)
                report["model_load_ms"] = round(load_ms, 1)
                reports[f"{name}/{split}"] = report
        del backend

    lora_sha256 = file_sha256(Path(lora)) if lora else None
    if out is not None:
        reports = _earlier(out / "eval.json", lora_sha256, model) | reports
    table = [{"arm": key.split("/")[0], "split": key.split("/")[1], "episodes": r["episodes"],
              "success_rate": round(r["success_rate"], 4), "successes": sum(x["success"] for x in r["results"]),
              "mean_steps": round(r["mean_steps"], 2), "seconds_per_step": round(r["seconds_per_step"], 3),
              "valid_action_rate": r["valid_action_rate"], "statuses": r["statuses"],
              "false_success_rate": round(r.get("false_success_rate", 0.0), 4)}
             for key, r in reports.items()]
    summary = {"benchmark": "distill-eval", "lora": str(lora) if lora else None,
               "lora_sha256": lora_sha256, "model": model, "vote": vote,
               "per_template": per_template, "templates": templates, "table": table, "reports": reports}
    if scale is not None:
        summary["scale_out"] = scale
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        summary["plot"] = plot(table, out / "eval.png")
    return summary


def _run_pooled(plan: list[tuple[str, str, bool]], *, config: Config, per_template: int, templates: list[str],
                model: str | None, lora: Path | None, max_steps: int | None, save_to: Path | None, vote: int,
                library: Any, workers: int, ray: str | None,
                progress: Callable[[str, str, Any, int, int], None] | None,
                ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every episode of ``plan`` (arm, split, with SOPs) on one worker pool: the reports by ``ARM/SPLIT``, and
    the ``scale_out`` record."""
    units: list[Unit] = []
    groups: list[tuple[str, str, str, slice, dict[str, Any]]] = []
    for arm, split, with_sop in plan:
        name = f"{arm}+sop" if with_sop else arm
        todo = instances(split, per_template, only=templates)  # type: ignore[arg-type]
        sops = retrieve_sops(todo, library) if with_sop else {}
        student = arm.startswith("student")
        spec = None if arm == "teacher" else model if student else base_of(model, config)
        meta = {"lora": str(lora) if student and lora else None}
        groups.append((arm, name, split, slice(len(units), len(units) + len(todo)), sops))
        units += [Unit(f"{name}/{split}/{i.id}",
                       EpisodeJob("oracle" if arm == "teacher" else "model", i, sop=sops.get(i.id), model=spec,
                                  lora=student, vote=vote if arm == "student-vote" else 1, meta=meta))
                  for i in todo]
    context = EpisodeContext(config=config, policy=None, max_steps=max_steps, save=save_to is not None,
                             adapter=Path(lora).read_bytes() if lora else None)
    group_of = {index: g for g in groups for index in range(g[3].start, g[3].stop)}
    counts: dict[str, int] = {}

    def shown(index: int, result: Any, done: int, total: int) -> None:
        _, name, split, part, _ = group_of[index]
        counts[f"{name}/{split}"] = counts.get(f"{name}/{split}", 0) + 1
        if progress is not None:
            progress(name, split, result, counts[f"{name}/{split}"], part.stop - part.start)

    started = time.time()
    played = play_pooled(units, context, workers=workers, ray=ray, audit=None, on_result=shown,
                         dest=lambda index: save_to / group_of[index][1] / group_of[index][2] if save_to else None)
    reports = {}
    for arm, name, split, part, sops in groups:
        report = summarise(played.results[part], agent=name, split=split, per_template=per_template,
                           started=started)
        report.update(model=played.model(part), lora=str(lora) if arm.startswith("student") and lora else None,
                      vote=vote if arm == "student-vote" else 1, model_load_ms=round(played.load_ms(part), 1))
        if name.endswith("+sop"):
            report.update(sop_report(sops))
        reports[f"{name}/{split}"] = report
    return reports, played.scale_out(workers, ray)


def _earlier(path: Path, lora_sha256: str | None, model: str | None) -> dict[str, dict[str, Any]]:
    """The arm/split reports of an earlier ``eval`` in the same folder that still hold.

    Arms run one at a time (a slow machine evaluates the base on one split, the student on
    another); a student report holds while the adapter is the same file, by sha256, and every
    report while the model is the same.
    """
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("model") != model:
        return {}
    same_adapter = lora_sha256 is not None and earlier.get("lora_sha256") == lora_sha256
    return {key: r for key, r in earlier.get("reports", {}).items()
            if isinstance(r, dict) and (not key.startswith("student") or same_adapter)}


def format_table(summary: dict[str, Any]) -> str:
    lines = [f"{'arm':16} {'split':15} {'success':>12} {'false':>6} {'steps':>6} {'s/step':>7} {'valid':>6}  ended"]
    for row in summary["table"]:
        ended = ", ".join(f"{k} {v}" for k, v in sorted(row["statuses"].items()))
        lines.append(f"{row['arm']:16} {row['split']:15} {row['success_rate']:>6.0%} ({row['successes']:>2}/"
                     f"{row['episodes']:<2}) {row.get('false_success_rate', 0):>6.0%} {row['mean_steps']:>6.1f} "
                     f"{row['seconds_per_step']:>7.2f} {row['valid_action_rate']:>6.0%}  {ended}")
    return "\n".join(lines)


def plot(table: list[dict[str, Any]], path: Path) -> str | None:
    """A bar chart of success by split and arm; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    splits = list(dict.fromkeys(r["split"] for r in table))
    arms = list(dict.fromkeys(r["arm"] for r in table))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(1, len(arms))
    for a, arm in enumerate(arms):
        values = [next((r["success_rate"] * 100 for r in table if r["arm"] == arm and r["split"] == s), 0)
                  for s in splits]
        bars = ax.bar([i + a * width for i in range(len(splits))], values, width, label=arm)
        ax.bar_label(bars, fmt="%.0f%%", fontsize=8)
    ax.set_xticks([i + width * (len(arms) - 1) / 2 for i in range(len(splits))], splits)
    ax.set_ylabel("task success (%)")
    ax.set_ylim(0, 110)
    ax.legend()
    ax.set_title("edgepilot distill eval")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def step_accuracy(dataset: Path, *, lora: Path | None, model: str | None = None, limit: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Teacher-forced step accuracy on held-out steps: does the model answer the runtime's prompt as the oracle did?

    ``dataset`` is collected on a held-out split (``collect(..., split="test")``). For each decider
    example, the model (with the adapter when ``lora``) answers the decider's prompt under the action
    grammar (the schema of every phone action, not narrowed: the screen object is not in the
    trajectory) and the action must equal the oracle's; for each planner example, the subgoal must.
    Much cheaper than episodes (one call a step, no wandering), and it isolates each decision.
    """

    rows = [r for r in read_jsonl(dataset) if r["kind"] in ("decider", "planner")]
    if limit is not None and len(rows) > limit:  # an even spread over the split's templates
        rows = [rows[i * len(rows) // limit] for i in range(limit)]
    config = load_config()
    backend = open_model(model if lora else base_of(model, config), config, lora_path=str(lora) if lora else None)
    hits = {"decider": 0, "planner": 0}
    counts = {"decider": 0, "planner": 0}
    ms: list[float] = []
    wrong: list[dict[str, Any]] = []
    for n, row in enumerate(rows, 1):
        messages = row["messages"]
        first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
        role = PLANNER if row["kind"] == "planner" else DECIDER
        asked = [Message(role=m["role"], content=m["content"]) for m in messages[:first]]
        answer = backend.complete(asked, schema=role.schema, max_tokens=role.max_tokens)
        ms.append(answer.ms)
        want = messages[first]["content"]
        try:
            if row["kind"] == "decider":
                ok = parse_action(answer.text).model_dump() == parse_action(want).model_dump()
            else:
                ok = json.loads(answer.text)["subgoal"].strip().casefold() == \
                    json.loads(want)["subgoal"].strip().casefold()
        except (ValueError, KeyError, EdgepilotError):
            ok = False
        counts[row["kind"]] += 1
        hits[row["kind"]] += ok
        if not ok and len(wrong) < 20:
            wrong.append({"id": row["id"], "want": want, "got": answer.text})
        if progress is not None:
            progress(n, len(rows))
    return {"dataset": str(dataset), "lora": str(lora) if lora else None, "model": backend.name,
            "steps": counts, "accuracy": {k: round(hits[k] / counts[k], 4) if counts[k] else None for k in counts},
            "median_ms": round(sorted(ms)[len(ms) // 2], 1) if ms else None, "wrong": wrong}
