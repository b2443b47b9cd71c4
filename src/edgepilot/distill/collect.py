"""``edgepilot distill collect``: teacher rollouts on train templates, in parallel worker processes.

Each instance runs on its own in-process virtual phone (no adb socket: the
teacher's loop needs speed, not the adb path) inside the runtime's own agent
(:mod:`edgepilot.distill.teacher`), and is written as a runtime trajectory
under ``RUN/trajectories/``. A share of the instances carries the retrieved
SOP in its prompts (``sop_share``), the rest none, so that the student works
either way. A share of the train instances (``paraphrase_share``) plays a
paraphrase of its goal (:mod:`edgepilot.distill.paraphrase`: worded the way
people type, every value kept), so that the student sees goals beyond the
templates' phrasings; held-out splits are never paraphrased. When every
instance is done, the examples of the kept (successful) trajectories are
written to ``RUN/dataset.jsonl``.

Resumable: ``RUN/collect/manifest.jsonl`` gets one line per finished
instance, and a second run skips those.

With ``workers`` above 1 or a Ray cluster, the roll-outs run on a worker pool
(:mod:`edgepilot.bench.pool`): the driver draws each instance and its SOP, a
worker plays it and sends the row and the trajectory back, and the driver
writes both under ``RUN``; a roll-out whose worker dies is tried again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgepilot.agent.agents import RoleAgent
from edgepilot.bench.episode import run_episode
from edgepilot.bench.pool import Unit, run_units, worker_name
from edgepilot.controllers.android import AndroidDevice
from edgepilot.distill.dataset import examples_from_folders, read_jsonl, write_jsonl
from edgepilot.distill.paraphrase import STYLES, paraphrase_instance
from edgepilot.distill.teacher import OracleTeacher
from edgepilot.errors import TaskError
from edgepilot.models.registry import open_model
from edgepilot.sim.local import LocalTransport
from edgepilot.sim.phone import VirtualPhone
from edgepilot.sim.tasks.model import TaskInstance
from edgepilot.sim.tasks.suite import instances, load_templates

MANIFEST = "collect/manifest.jsonl"
DATASET = "dataset.jsonl"


@dataclass(frozen=True)
class Job:
    """One instance to roll out."""

    template: str
    seed: int
    instance: str
    goal: str
    sop: bool
    run_dir: str
    task_dirs: tuple[str, ...] = ()
    inject_at: int | None = None
    """Self-reflection roll-out: a wrong step is injected at this step (then diagnosed and undone)."""
    teacher_url: str | None = None
    """A model behind an OpenAI-compatible server plays the task in the runtime's agent instead of the oracle."""
    step_refs: bool = False
    """The oracle's planner points at the procedure's current step (``next step``) where that does what it says."""
    paraphrase_style: str | None = None
    """``goal`` is a paraphrase of the template's goal in this style (:mod:`edgepilot.distill.paraphrase`)."""

    @property
    def key(self) -> str:
        return self.instance + (f"+wrong@{self.inject_at}" if self.inject_at is not None else "")


def _draw(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") / 2**32


def wants_sop(instance_id: str, share: float) -> bool:
    """Whether an instance's prompts carry its SOP: a stable draw by the instance id."""
    return _draw(instance_id) < share


def paraphrased_goal(instance: TaskInstance, share: float, split: str = "train") -> tuple[str, str | None]:
    """The goal an instance is rolled out with, and the paraphrase style (None: the template's goal).

    For ``share`` of the train instances (a stable draw by the instance id) a paraphrase in a style drawn from
    the instance id too (:func:`edgepilot.distill.paraphrase.paraphrase_instance`; where that style changes
    nothing, the next that does). Never for a held-out split or a template that is not a train template.
    """
    if split != "train" or instance.template.split != "train" or _draw(instance.id + "+paraphrase") >= share:
        return instance.goal, None
    style = STYLES[int(_draw(instance.id + "+style") * len(STYLES))]
    return paraphrase_instance(instance, style)


_TEMPLATES: dict[tuple[str, ...], Any] = {}
_LIBRARY: list[Any] = []
_BACKENDS: dict[str, Any] = {}


def _url_teacher(url: str) -> Any:
    """The runtime's agent on a model behind an OpenAI-compatible server (one backend per process)."""

    if url not in _BACKENDS:
        _BACKENDS[url] = open_model(url)
    backend = _BACKENDS[url]

    class UrlTeacher:
        name = f"url:{url}"

        def agent(self, instance: Any, phone: Any, sop: Any = None, *, inject_at: int | None = None,
                  step_refs: bool = False) -> Any:
            return RoleAgent(instance.goal, backend, sop=sop, calls="every")  # the student learns every role

    return UrlTeacher()


def _instance(job: Job) -> TaskInstance:
    """The job's instance, with the job's goal (a paraphrase, where the job has one)."""
    if job.task_dirs not in _TEMPLATES:
        _TEMPLATES[job.task_dirs] = load_templates([Path(d) for d in job.task_dirs])
    instance = _TEMPLATES[job.task_dirs][job.template].instance(job.seed)
    return instance.model_copy(update={"goal": job.goal}) if job.goal != instance.goal else instance


def _match(job: Job, instance: TaskInstance) -> Any:
    """The SOP the instance's prompts carry (None: none), retrieved from its (possibly paraphrased) goal."""
    if not job.sop:
        return None
    from edgepilot.sop import load_library, retrieve

    if not _LIBRARY:
        _LIBRARY.append(load_library())
    return retrieve(instance.goal, _LIBRARY[0])


def roll_out(job: Job) -> dict[str, Any]:
    """Play one instance with the oracle teacher and write its trajectory under ``RUN/trajectories``; returns its
    manifest row."""
    instance = _instance(job)
    return _play(job, instance, _match(job, instance), Path(job.run_dir) / "trajectories")


def roll_out_unit(context: Any, unit: tuple[Job, TaskInstance, Any], scratch: Path) -> dict[str, Any]:
    """:func:`roll_out` in a worker of :func:`edgepilot.bench.pool.run_units`: the driver drew the instance and
    its SOP; the trajectory goes under ``scratch``, and the row names it relative to that folder."""
    job, instance, match = unit
    row = _play(job, instance, match, scratch, worker=worker_name())
    if row["trajectory"] is not None:
        row["trajectory"] = Path(row["trajectory"]).relative_to(scratch).as_posix()
    return row


def _play(job: Job, instance: TaskInstance, match: Any, root: Path, worker: str | None = None) -> dict[str, Any]:
    phone = VirtualPhone(serial="virtual-1")
    device = AndroidDevice(LocalTransport(phone), screenshot=True)
    teacher = _url_teacher(job.teacher_url) if job.teacher_url else OracleTeacher()
    start = time.perf_counter()
    where = {"worker": worker} if worker is not None else {}
    try:
        made: list[Any] = []

        def make(i: Any) -> Any:
            made.append(teacher.agent(i, phone, match, inject_at=job.inject_at,  # type: ignore[attr-defined]
                                      step_refs=job.step_refs))
            return made[-1]

        variant = f"wrong@{job.inject_at}" if job.inject_at is not None else None
        result = run_episode(device, phone, instance, make, save_to=root,
                             meta={"model": job.teacher_url, "teacher": teacher.name, "variant": variant,
                                   "sop": match.sop.name if match is not None else None, **where})
    except TaskError as exc:
        return {**asdict(job), "key": job.key, "success": False, "status": "error", "reason": str(exc), "steps": 0,
                "trajectory": None, "seconds": round(time.perf_counter() - start, 3), **where}
    injected = getattr(made[0], "injected", 0) if made else 0
    return {**asdict(job), "key": job.key, "injected": injected,
            "sop": match is not None, "sop_name": match.sop.name if match is not None else None,
            "success": result.success and (job.inject_at is None or injected > 0),
            "status": result.status, "reason": result.reason,
            "steps": len(result.steps), "trajectory": result.trajectory, "seconds": round(result.seconds, 3),
            **where}


def plan_jobs(run_dir: Path, *, per_template: int, templates: Iterable[str] = (), sop_share: float = 0.5,
              task_dirs: Iterable[Path] = (), reflection_share: float = 0.0,
              teacher_url: str | None = None, split: str = "train", step_refs: bool = False,
              paraphrase_share: float = 0.0) -> list[Job]:
    """The train instances to roll out (``per_template`` of each template), in a stable order.

    With ``reflection_share``, that share of the instances is rolled out a second time with a wrong
    step injected (at a step drawn from the instance id), for self-reflection examples.

    With ``paraphrase_share``, that share of the instances (of the ``train`` split only) plays a paraphrase
    of its goal (:func:`paraphrased_goal`); its self-reflection roll-out plays the same one.

    Raises:
        TaskError: unknown template ids or invalid task files.
    """

    dirs = tuple(str(Path(d).resolve()) for d in task_dirs)
    todo = instances(split, per_template, templates=load_templates([Path(d) for d in dirs]),  # type: ignore[arg-type]
                     only=templates)
    goals = {i.id: paraphrased_goal(i, paraphrase_share, split) for i in todo}
    jobs = [Job(i.template.id, i.seed, i.id, goals[i.id][0], wants_sop(i.id, sop_share), str(run_dir), dirs,
                teacher_url=teacher_url, step_refs=step_refs, paraphrase_style=goals[i.id][1]) for i in todo]
    for i in todo:
        if teacher_url is None and _draw(i.id + "+wrong") < reflection_share:
            at = 1 + int(_draw(i.id + "@") * max(1, i.template.steps - 2))
            jobs.append(Job(i.template.id, i.seed, i.id, goals[i.id][0], wants_sop(i.id, sop_share), str(run_dir),
                            dirs, at, step_refs=step_refs, paraphrase_style=goals[i.id][1]))
    return jobs


def done_rows(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Manifest rows of the instances already rolled out, by instance id."""
    path = run_dir / MANIFEST
    return {row.get("key", row["instance"]): row for row in read_jsonl(path)} if path.is_file() else {}


def _run_pooled(jobs: list[Job], run_dir: Path, workers: int, ray_address: str | None,
                on_done: Callable[[dict[str, Any], bool], None]) -> None:
    """The roll-outs on a worker pool; each row and trajectory comes back here as it finishes."""
    units = []
    for job in jobs:
        instance = _instance(job)
        units.append(Unit(job.key, (job, instance, _match(job, instance))))
    for done in run_units(roll_out_unit, units, workers=workers, ray=ray_address):
        job = units[done.index].job[0]
        if done.failed:  # not in the manifest: the next run tries it again
            on_done({**asdict(job), "key": job.key, "success": False, "status": "error",
                     "reason": f"no worker finished it: {done.errors[-1]}", "steps": 0, "trajectory": None,
                     "seconds": 0.0, "attempts": done.attempts, "errors": done.errors}, False)
            continue
        row = {**done.value, "attempts": done.attempts, **({"errors": done.errors} if done.errors else {})}
        if row["trajectory"] is not None:
            row["trajectory"] = str(done.unpack(run_dir / "trajectories")[row["trajectory"]])
        on_done(row, True)


def collect(run_dir: Path, *, per_template: int = 3, templates: Iterable[str] = (), sop_share: float = 0.5,
            reflection_share: float = 0.0, teacher_url: str | None = None, split: str = "train", workers: int = 2,
            ray_address: str | None = None, task_dirs: Iterable[Path] = (), step_refs: bool = False,
            paraphrase_share: float = 0.0,
            progress: Callable[[dict[str, Any], int, int], None] | None = None) -> dict[str, Any]:
    """Roll out the train instances not yet done, then (re)write the dataset of the kept trajectories.

    Args:
        run_dir: the run folder (created).
        per_template: instances of each train template.
        templates: only these template ids (default: all train templates).
        sop_share: share of the instances whose prompts carry their retrieved SOP.
        teacher_url: instead of the oracle, the runtime's agent on the model behind this OpenAI-compatible
            URL (``http://host:port/v1#model``) plays each task; only its successful runs are kept.
        reflection_share: share of the instances rolled out again with a wrong step injected, then
            diagnosed by the reflector (``wrong_screen``) and undone (``back``); the wrong step's
            answer is masked in training.
        workers: worker processes (1: in this process). A roll-out whose worker dies or fails is tried again
            (:data:`edgepilot.bench.pool.RETRIES` times); its row says how many ``attempts`` it took.
        ray_address: run the roll-outs as Ray tasks on this cluster instead (``local``, ``auto``,
            ``ray://HOST:10001``); rows and trajectories come back to this process, which writes them.
        task_dirs: extra folders of task templates (your own apps' tasks).
        step_refs: the oracle's planner answers ``next step`` where the procedure's current step, pointed at,
            does what the oracle does (docs/distill.md, "Steps by number"); else it says the step.
        paraphrase_share: share of the train instances whose goal is a paraphrase, worded the way people type
            (:mod:`edgepilot.distill.paraphrase`; its style in the manifest row's ``paraphrase_style``); a
            held-out ``split`` is never paraphrased.
        split: ``train``; a held-out split only for step-level evaluation data
            (:func:`edgepilot.distill.evaluate.step_accuracy`): ``train`` refuses such a dataset.
        progress: called with each finished row, how many are done, and how many in all.

    Returns:
        The summary also written to ``RUN/collect.json``.

    Raises:
        TaskError: unknown templates or invalid task files.
        ConfigError: the run folder cannot be written, or Ray is asked for and missing.
    """
    run_dir = Path(run_dir)
    (run_dir / "collect").mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(run_dir, per_template=per_template, templates=templates, sop_share=sop_share,
                     task_dirs=task_dirs, reflection_share=reflection_share, teacher_url=teacher_url, split=split,
                     step_refs=step_refs, paraphrase_share=paraphrase_share)
    done = done_rows(run_dir)
    todo = [j for j in jobs if j.key not in done]
    start = time.perf_counter()
    manifest = open(run_dir / MANIFEST, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    count = len(jobs) - len(todo)

    def on_done(row: dict[str, Any], keep: bool = True) -> None:
        nonlocal count
        if keep:
            manifest.write(json.dumps(row, ensure_ascii=False) + "\n")
            manifest.flush()
            os.fsync(manifest.fileno())
        done[row["key"]] = row
        count += 1
        if progress is not None:
            progress(row, count, len(jobs))

    try:
        if ray_address or workers > 1:
            _run_pooled(todo, run_dir, workers, ray_address, on_done)
        else:
            for job in todo:
                on_done(roll_out(job))
    finally:
        manifest.close()
    seconds = time.perf_counter() - start
    return write_dataset(run_dir, [done[j.key] for j in jobs if j.key in done], seconds=seconds,
                         rolled_out=len(todo), split=split)


def write_dataset(run_dir: Path, rows: list[dict[str, Any]], *, seconds: float = 0.0,
                  rolled_out: int = 0, split: str = "train") -> dict[str, Any]:
    """Write ``RUN/dataset.jsonl`` from the kept trajectories of ``rows`` and ``RUN/collect.json``."""
    kept = [r for r in rows if r["success"] and r.get("trajectory")]
    examples = list(examples_from_folders(Path(r["trajectory"]) for r in kept))
    write_jsonl(run_dir / DATASET, examples)
    kinds: dict[str, int] = {}
    for ex in examples:
        kinds[ex["kind"]] = kinds.get(ex["kind"], 0) + 1
    untrained = sum(1 for ex in examples for m in ex["messages"] if m["role"] == "assistant" and not m["train"])
    summary = {
        "split": split, "instances": len(rows), "rolled_out_now": rolled_out, "kept": len(kept),
        "failed": [{"instance": r.get("key", r["instance"]), "status": r["status"], "reason": r["reason"]}
                   for r in rows if not r["success"]],
        "self_reflection": sum(1 for r in kept if r.get("inject_at") is not None),
        "templates": len({r["template"] for r in kept}),
        "with_sop": sum(1 for r in kept if r.get("sop")),
        "paraphrased": sum(1 for r in kept if r.get("paraphrase_style")),
        "steps": sum(r["steps"] for r in kept),
        "examples": len(examples), "by_kind": kinds, "answers_left_out": untrained,
        "seconds": round(seconds, 2), "dataset": str(run_dir / DATASET),
        "retried": [{"instance": r["key"], "attempts": r["attempts"], "errors": r.get("errors", [])}
                    for r in rows if r.get("attempts", 1) > 1],
    }
    (run_dir / "collect.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
