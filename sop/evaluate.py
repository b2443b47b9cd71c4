"""Retrieval top-1 accuracy on the task suite's goal sentences (``edgepilot sop eval``).

Each template of the suite maps to the SOP that should serve it (``eval_map.yaml``,
null when none should). For every distinct goal sentence of a split, the
retrieved SOP (or nothing, below the threshold) is compared with that map. This
module is the one place ``edgepilot.sop`` reads the task suite, and it imports it
only when called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgepilot import yamltext
from edgepilot.errors import SopError
from edgepilot.sop.retrieve import Retriever, _retriever

EVAL_MAP = Path(__file__).with_name("eval_map.yaml")
EVAL_SPLITS = ("test", "test-instances", "train", "unrelated")
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
        lines = [f"split={self.split} goals={self.n} (distinct, up to {self.per_template} per template) "
                 f"threshold={self.threshold}",
                 f"top-1 accuracy: {self.correct}/{self.n} = {self.accuracy:.1%}"]
        for c in self.misses:
            lines.append(f"  miss {c.template}: {c.goal!r}\n       expected {c.expected or 'nothing'}, "
                         f"got {c.got or 'nothing'} (score {c.score:.2f})")
        return "\n".join(lines)


def load_eval_map(path: Path = EVAL_MAP) -> tuple[dict[str, str | None], list[str]]:
    """The template → SOP map and the unrelated sentences of an evaluation file.

    Raises:
        SopError: the file is missing or malformed.
    """
    try:
        data = yamltext.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SopError(f"cannot read the evaluation map {path}: {exc}") from exc
    templates = data.get("templates") if isinstance(data, dict) else None
    unrelated = data.get("unrelated", []) if isinstance(data, dict) else None
    if not isinstance(templates, dict) or not isinstance(unrelated, list):
        raise SopError(f"{path}: expected a mapping `templates: {{id: sop-name or null}}` and a list `unrelated`")
    return {str(k): (str(v) if v is not None else None) for k, v in templates.items()}, [str(u) for u in unrelated]


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
    if split not in EVAL_SPLITS:
        raise SopError(f"unknown split {split!r}; use one of {', '.join(EVAL_SPLITS)}")
    retriever: Retriever = _retriever(library)
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
        match = retriever.retrieve(goal, threshold=limit)
        best = match or next(iter(retriever.rank(goal, k=1)), None)
        cases.append(EvalCase(template, goal, expected[template], match.sop.name if match else None,
                              best.score if best else 0.0, dict(match.params) if match else {}))
    return EvalReport(split, per_template if split != "unrelated" else 1, limit, tuple(cases))


def _suite_goals(split: str, per_template: int, mapping: dict[str, str | None],
                 eval_map: Path) -> list[tuple[str, str]]:
    from edgepilot.sim.tasks.suite import instances, load_templates

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
