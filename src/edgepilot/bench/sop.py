"""Retrieval top-1 accuracy on the task suite's goal sentences (``edgepilot sop eval``).

Each template of the suite maps to the SOP that should serve it (``eval_map.yaml``,
null when none should). For every distinct goal sentence of a split, the
retrieved SOP (or nothing, below the threshold) is compared with that map. This
module is the one place ``edgepilot.sop`` reads the task suite, and it imports it
only when called.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepilot.agent.agents import FnAgent
from edgepilot.agent.learn import demo_from_trajectory, policy_classifier
from edgepilot.agent.roles import answer_choices
from edgepilot.agent.trajectory import read_trajectory
from edgepilot.bench.episode import run_episode
from edgepilot.bench.evalmap import EVAL_MAP, load_eval_map
from edgepilot.bench.phrasings import PHRASINGS, load_phrasings
from edgepilot.bench.tasks import agent_factory, procedures_for
from edgepilot.devices import open_device
from edgepilot.errors import EdgepilotError, GoalError, SopError
from edgepilot.sim.tasks.suite import instances, load_templates
from edgepilot.sop.carry import keeps, kept_choices
from edgepilot.sop.follow import SopFollower
from edgepilot.sop.learn import learn_sop
from edgepilot.sop.library import load_library
from edgepilot.sop.retrieve import Retriever, retriever_for
from edgepilot.sop.understand import understand

EVAL_SPLITS = ("test", "test-instances", "train", "unrelated", "phrasings")
PER_TEMPLATE = 20


@dataclass(frozen=True)
class EvalCase:
    """One goal sentence: which SOP it should get, which it got, with what score and parameters."""

    template: str
    goal: str
    expected: str | None
    got: str | None
    score: float
    params: dict[str, str] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.expected == self.got


@dataclass(frozen=True)
class EvalReport:
    """Top-1 accuracy of retrieval on one split."""

    split: str
    per_template: int
    threshold: float
    cases: tuple[EvalCase, ...]

    @property
    def n(self) -> int:
        return len(self.cases)

    @property
    def correct(self) -> int:
        return sum(c.correct for c in self.cases)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def misses(self) -> list[EvalCase]:
        return [c for c in self.cases if not c.correct]

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "per_template": self.per_template, "threshold": self.threshold,
                "n": self.n, "correct": self.correct, "accuracy": round(self.accuracy, 4),
                "misses": [{"template": c.template, "goal": c.goal, "expected": c.expected, "got": c.got,
                            "score": c.score} for c in self.misses]}

    def format(self) -> str:
        return format_eval(self.to_dict())


def format_eval(report: dict[str, Any]) -> str:
    """A retrieval evaluation (:meth:`EvalReport.to_dict`) as text: the accuracy, then every miss."""
    lines = [f"split={report['split']} goals={report['n']} (distinct, up to {report['per_template']} per template) "
             f"threshold={report['threshold']}",
             f"top-1 accuracy: {report['correct']}/{report['n']} = "
             f"{report['correct'] / report['n'] if report['n'] else 0.0:.1%}"]
    for c in report["misses"]:
        lines.append(f"  miss {c['template']}: {c['goal']!r}\n       expected {c['expected'] or 'nothing'}, "
                     f"got {c['got'] or 'nothing'} (score {c['score']:.2f})")
    return "\n".join(lines)


def evaluate(split: str = "test", *, library: object | None = None, per_template: int = PER_TEMPLATE,
             eval_map: Path = EVAL_MAP, threshold: float | None = None) -> EvalReport:
    """Retrieve an SOP for every distinct goal of a split and compare with the evaluation map.

    Args:
        split: ``test`` (held-out templates), ``test-instances`` (held-out goals of train templates, chosen
            as ``edgepilot bench --split test-instances`` chooses them), ``train``, or ``unrelated`` (the
            map's sentences that no SOP serves).
        library: a library, retriever or SOPs (default: the library of the current directory).
        per_template: instances drawn per template (distinct goals are kept).
        threshold: override the retriever's threshold.

    Raises:
        SopError: unknown split; the map misses a template of the suite or names an SOP the library lacks.
    """
    if split not in EVAL_SPLITS or split == "phrasings":
        raise SopError(f"unknown split {split!r}; use one of {', '.join(EVAL_SPLITS)}")
    retriever: Retriever = retriever_for(procedures_for("android", library))  # the suite's goals are a phone's
    limit = retriever.threshold if threshold is None else threshold
    mapping, unrelated = load_eval_map(eval_map)
    known = {s.name for s in retriever.sops}
    wrong = sorted({v for v in mapping.values() if v is not None and v not in known})
    if wrong:
        raise SopError(f"{eval_map} names SOPs the library does not have: {', '.join(wrong)}")
    if split == "unrelated":
        goals = [("unrelated", sentence) for sentence in dict.fromkeys(unrelated)]
        expected: dict[str, str | None] = {"unrelated": None}
    else:
        goals, expected = _suite_goals(split, per_template, mapping, eval_map), mapping
    cases = []
    for template, goal in goals:
        understood = understand(goal, retriever, threshold=limit)
        score = understood.match.score if understood.match else (understood.candidates or (("", 0.0),))[0][1]
        cases.append(EvalCase(template, goal, expected[template], understood.sop, score, understood.params))
    return EvalReport(split, per_template if split != "unrelated" else 1, limit, tuple(cases))


def same_value(expected: Any, got: Any) -> bool:
    """Whether a parameter value is the one expected: both missing, or equal ignoring case, surrounding
    quotes and final punctuation."""
    if expected is None or got is None:
        return expected is None and got is None

    def norm(v: Any) -> str:
        return " ".join(str(v).strip().strip("\"'“”‘’").rstrip(".!?,;").split()).casefold()

    return norm(expected) == norm(got)


def evaluate_phrasings(*, library: object | None = None, path: Path = PHRASINGS,
                       threshold: float | None = None) -> dict[str, Any]:
    """The understanding step on the ``phrasings`` set: procedure top-1 and parameter exact match on the
    goals of train and test templates, ``none`` precision and recall, the share of out-of-scope goals given
    a procedure anyway, and the milliseconds the step takes per goal.

    Raises:
        SopError: the set is missing or names procedures the library lacks.
    """
    data = load_phrasings(path)
    retriever: Retriever = retriever_for(procedures_for("android", library))  # the suite's goals are a phone's
    limit = retriever.threshold if threshold is None else threshold
    templates = load_templates()
    known = {s.name for s in retriever.sops}
    wrong = sorted({str(g.get("sop")) for g in data["goals"] if g.get("sop") not in known})
    if wrong:
        raise SopError(f"{path} names procedures the library does not have: {', '.join(wrong)}")
    understand("warm up the caches", retriever)
    rows: list[dict[str, Any]] = []
    for g in data["goals"]:
        template = str(g["task"]).partition("#")[0]
        u = understand(str(g["goal"]), retriever, threshold=limit)
        expected = dict(g.get("params") or {})
        params_ok = u.sop == g["sop"] and all(same_value(v, u.params.get(k)) for k, v in expected.items())
        seed = str(g["task"]).partition("#")[2]
        rows.append({"kind": "goal", "task": g["task"], "half": "dev" if seed.isdigit() and int(seed) % 2 == 0
                     else "held", "split": templates[template].split if template in templates
                     else "?", "style": g.get("style"), "goal": g["goal"], "expected": g["sop"], "got": u.sop,
                     "params": u.params, "expected_params": expected, "params_ok": params_ok, "ms": u.ms,
                     "reason": u.reason})
    for n, g in enumerate(data["none"]):
        start = time.perf_counter()
        try:
            u = understand(str(g["goal"]), retriever, threshold=limit)
            got, params, reason, ms = u.sop, u.params, u.reason, u.ms
        except GoalError as exc:  # refused outright (no words...): no procedure, which is right
            got, params, reason, ms = None, {}, str(exc), (time.perf_counter() - start) * 1000
        rows.append({"kind": "none", "half": "dev" if n % 2 == 0 else "held", "why": g.get("why"),
                     "goal": g["goal"], "expected": None, "got": got, "params": params, "ms": ms, "reason": reason})
    return phrasings_report(rows, limit)


def phrasings_report(rows: list[dict[str, Any]], threshold: float, *, halves: bool = True) -> dict[str, Any]:
    """The figures of :func:`evaluate_phrasings` from its rows; with ``halves``, also for each half of the set
    (``dev``: even seeds and even-numbered none-goals, whose misses are listed; ``held``: the rest, whose
    misses are only counted, so that fixing what the dev half shows cannot fit the held half)."""
    goals = [r for r in rows if r["kind"] == "goal"]
    nones = [r for r in rows if r["kind"] == "none"]
    said_none = [r for r in rows if r["got"] is None]

    def share(part: int, whole: int) -> float:
        return round(part / whole, 4) if whole else 0.0

    def figures(subset: list[dict[str, Any]]) -> dict[str, Any]:
        return {"n": len(subset), "top1": share(sum(r["got"] == r["expected"] for r in subset), len(subset)),
                "params_exact": share(sum(r["params_ok"] for r in subset), len(subset))}

    times = sorted(r["ms"] for r in rows)
    return {
        "split": "phrasings", "threshold": threshold, "goals": len(goals), "none_goals": len(nones),
        **{k: v for k, v in figures(goals).items() if k != "n"},
        "by_split": {s: figures([r for r in goals if r["split"] == s]) for s in ("train", "test")},
        "by_style": {s: figures([r for r in goals if r["style"] == s])
                     for s in sorted({str(r["style"]) for r in goals})},
        "none_precision": share(sum(r["expected"] is None for r in said_none), len(said_none)),
        "none_recall": share(sum(r["got"] is None for r in nones), len(nones)),
        "forced_on_none": share(sum(r["got"] is not None for r in nones), len(nones)),
        "ms_median": round(times[len(times) // 2], 2) if times else 0.0,
        "ms_p90": round(times[int(len(times) * 0.9)], 2) if times else 0.0,
        "ms_max": round(times[-1], 2) if times else 0.0,
        **({"halves": {h: {k: v for k, v in phrasings_report([r for r in rows if r["half"] == h], threshold,
                                                                halves=False).items()
                               if k in ("goals", "none_goals", "top1", "params_exact", "none_precision",
                                        "none_recall", "forced_on_none", "by_split")}
                           for h in ("dev", "held")}} if halves else {}),
        "misses": [{k: r.get(k) for k in ("task", "why", "style", "goal", "expected", "got", "params",
                                           "expected_params", "reason")}
                   for r in rows if r["half"] == "dev" and (r["got"] != r["expected"]
                                                           or (r["kind"] == "goal" and not r["params_ok"]))],
        "held_misses": sum(1 for r in rows if r["half"] == "held" and (
            r["got"] != r["expected"] or (r["kind"] == "goal" and not r["params_ok"]))),
    }


def format_phrasings(report: dict[str, Any]) -> str:
    """The phrasings report as text: the figures, then every miss."""
    split = report["by_split"]
    lines = [f"split=phrasings goals={report['goals']} (train templates {split['train']['n']}, test templates "
             f"{split['test']['n']}) none-goals={report['none_goals']} threshold={report['threshold']}",
             f"procedure top-1: {report['top1']:.1%} (train {split['train']['top1']:.1%}, "
             f"test {split['test']['top1']:.1%})",
             f"parameter exact match: {report['params_exact']:.1%} (train {split['train']['params_exact']:.1%}, "
             f"test {split['test']['params_exact']:.1%})",
             f"none: precision {report['none_precision']:.1%}, recall {report['none_recall']:.1%}; "
             f"a procedure forced on an out-of-scope goal: {report['forced_on_none']:.1%}",
             f"understanding time per goal: median {report['ms_median']:.1f} ms, p90 {report['ms_p90']:.1f} ms, "
             f"max {report['ms_max']:.1f} ms"]
    for half, f in report.get("halves", {}).items():
        lines.append(f"  {half} half ({'misses listed below' if half == 'dev' else 'misses not shown'}): "
                     f"top-1 {f['top1']:.1%} (train {f['by_split']['train']['top1']:.1%}, test "
                     f"{f['by_split']['test']['top1']:.1%}), parameters {f['params_exact']:.1%} (train "
                     f"{f['by_split']['train']['params_exact']:.1%}, test {f['by_split']['test']['params_exact']:.1%}"
                     f"), forced on none {f['forced_on_none']:.1%}")
    for m in report["misses"]:
        want = m["expected"] or "none"
        lines.append(f"  miss [{m.get('style') or m.get('why')}] {m['goal']!r}\n       expected {want} "
                     f"{m.get('expected_params') or ''}, got {m['got'] or 'none'} {m['params'] or ''}")
    return "\n".join(lines)


def _suite_goals(split: str, per_template: int, mapping: dict[str, str | None],
                 eval_map: Path) -> list[tuple[str, str]]:

    templates = load_templates()
    missing = sorted(set(templates) - set(mapping))
    if missing:
        raise SopError(f"{eval_map} has no entry for the template(s) {', '.join(missing)}; map each to the SOP "
                       "that should serve it, or to null")
    seen: set[str] = set()
    goals = []
    for inst in instances(split, per_template, templates=templates):  # type: ignore[arg-type]
        if inst.goal not in seen:
            seen.add(inst.goal)
            goals.append((inst.template.id, inst.goal))
    return goals


def follower_factory(sop, library=(), *, keep: bool = False):
    """The episode runner's agent factory for the SOP checker: a fresh :class:`SopFollower` per task. With
    ``keep``, a step that reads a value to keep takes it as :func:`keep_first` does."""

    def make(instance):
        follower = SopFollower(sop, instance.goal, library=library)
        if not keep:
            return FnAgent(follower.name, follower.next_action, instance.goal)

        def next_action(obs):
            keep_first(follower, obs)
            return follower.next_action(obs)

        return FnAgent(follower.name, next_action, instance.goal)

    return make


def keep_first(follower: SopFollower, obs) -> bool:
    """Where ``follower`` is on a step that reads a value to keep, keep the first value the agent would be
    offered on ``obs`` (:func:`~edgepilot.sop.carry.kept_choices`; with one, the agent takes it without a model
    call); whether one was kept (not where the screen shows none)."""
    step = follower.step
    if step is None or not keeps(step.text):
        return False
    kept = kept_choices(obs, step.text, answer_choices(obs, step.text))
    if kept:
        follower.keep(kept[0])
    return bool(kept)


def learn_eval(*, templates: tuple[str, ...] = (), demos: int = 1, variants: int = 3, device: str = "virtual",
               keep: Path | None = None,
               progress: Callable[[str, Any, Any], None] | None = None) -> dict[str, Any]:
    """Learned SOPs on held-out variants: for each train template, the oracle's runs of its first ``demos``
    train instances are the demonstrations; the SOP learned from them is followed by the SOP checker (no
    oracle, no model) on ``variants`` other instances, from the held-out goals of the template
    (``test-instances``) first, then further train instances.

    Raises:
        TaskError: unknown templates.
        DeviceError: the virtual phone cannot be reached.
    """

    chosen = [t for t in load_templates().values() if t.split == "train" and (not templates or t.id in templates)]
    if templates:
        instances("train", 1, only=templates)  # unknown ids: TaskError

    classify = policy_classifier()
    library = load_library().sops
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgepilot-learn-eval-") as scratch, open_device(device) as opened:
        root = keep if keep is not None else Path(scratch)
        for template in chosen:
            row: dict[str, Any] = {"template": template.id, "demos": [], "variants": []}
            rows.append(row)
            train = instances("train", demos + variants, only=[template.id])
            shown, rest = train[:demos], train[demos:]
            held = instances("test-instances", variants, only=[template.id])
            checks = (held + rest)[:variants]
            if len(shown) < demos or not checks:
                row["error"] = "the suite has too few distinct instances of this template"
                continue
            learned_from = []
            for inst in shown:
                result = run_episode(opened.device, opened.phone, inst, agent_factory("oracle", opened.phone),
                                     save_to=root / "demos" / template.id)
                row["demos"].append({"instance": inst.id, "goal": inst.goal, "success": result.success})
                learned_from.append(demo_from_trajectory(read_trajectory(result.trajectory)))
            try:
                learned = learn_sop(learned_from, name="learned-" + template.id.replace("_", "-"), classify=classify)
            except EdgepilotError as exc:
                row["error"] = f"learning failed: {exc}"
                continue
            row.update(sop=learned.sop.name, steps=len(learned.sop.steps), params=list(learned.sop.params),
                       notes=list(learned.notes))
            if keep is not None:
                row["path"] = str(learned.write(keep / f"{learned.sop.name}.md"))
            factory = follower_factory(learned.sop, library)
            for inst in checks:
                result = run_episode(opened.device, opened.phone, inst, factory,
                                     save_to=root / "variants" / template.id if keep is not None else None)
                row["variants"].append({"instance": inst.id, "held_out": inst in held, "goal": inst.goal,
                                        "success": result.success, "status": result.status,
                                        "reason": result.reason if not result.success else "",
                                        "failed_checks": result.failed_checks})
                if progress is not None:
                    progress(template.id, inst, result)
    done = [v for row in rows for v in row["variants"]]
    held_out = [v for v in done if v["held_out"]]
    return {
        "benchmark": "sop-learn", "demos_per_template": demos, "variants_per_template": variants,
        "device": device, "templates": len(rows),
        "learned": sum(1 for row in rows if "sop" in row),
        "variants": len(done), "succeeded": sum(v["success"] for v in done),
        "success_rate": round(sum(v["success"] for v in done) / len(done), 4) if done else 0.0,
        "held_out_variants": len(held_out), "held_out_succeeded": sum(v["success"] for v in held_out),
        "rows": rows,
    }


def format_learn_eval(report: dict[str, Any]) -> str:
    """The learn-eval report as a table, with why each failure failed."""
    lines = [f"{'template':28} {'learned':8} {'variants':>9}  why runs failed"]
    for row in report["rows"]:
        vs = row["variants"]
        ok = sum(v["success"] for v in vs)
        why = row.get("error") or "; ".join(sorted({_failure(v) for v in vs if not v["success"]}))
        lines.append(f"{row['template']:28} {'yes' if 'sop' in row else 'no':8} {ok:>4}/{len(vs):<4}  {why}")
    lines.append(f"\nlearned {report['learned']}/{report['templates']} SOPs from {report['demos_per_template']} "
                 f"oracle demonstration(s) each; SOP checker on held-out variants: {report['succeeded']}/"
                 f"{report['variants']} = {report['success_rate']:.1%} (held-out goals of the templates: "
                 f"{report['held_out_succeeded']}/{report['held_out_variants']}; the rest are further train "
                 "instances)")
    return "\n".join(lines)


def _failure(variant: dict[str, Any]) -> str:
    """Why one run failed, in a few words: the SOP step that could not be followed, or the failed check."""
    if variant["status"] == "finished":  # the check without this run's values, so that runs group
        checks = [re.sub(r"\[\w+=[^\]]*\]", "[…]", re.sub(r"'[^']*'", "…", c)) for c in variant["failed_checks"]]
        return "wrong end state: " + ", ".join(checks)[:90]
    m = re.search(r"step (\d+) \(.*\): (.*?)(?: \(filled from.*)?$", variant["reason"])
    return f"step {m.group(1)}: {m.group(2)}"[:100] if m else variant["reason"][:100]
