"""The task suite: templates from YAML files, and the seeded instance splits.

Splits:

- ``train``: instances of train templates with seeds ``0..n-1``;
- ``test-instances``: other instances of train templates (seeds from
  :data:`HELD_OUT_SEED_BASE`), never equal in goal to a train instance;
- ``test``: instances of test templates (kinds of task never seen in training).

Nothing from ``test`` or ``test-instances`` is used for training, SOPs or
prompt examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

import yaml
from pydantic import ValidationError

from edgepilot.errors import TaskError
from edgepilot.sim.tasks.model import TaskInstance, TaskTemplate

BUILTIN_DIR = Path(__file__).with_name("templates")
HELD_OUT_SEED_BASE = 100_000
TRAIN_POOL = 200  # train instances that held-out ones must differ from

Split = Literal["train", "test-instances", "test"]
SPLITS: tuple[str, ...] = ("train", "test-instances", "test")


def _load_file(path: Path) -> list[TaskTemplate]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TaskError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise TaskError(f"{path}: expected a list of task templates")
    templates = []
    for i, entry in enumerate(raw):
        try:
            templates.append(TaskTemplate.model_validate({**entry, "source": str(path)}))
        except (ValidationError, TypeError) as exc:
            name = entry.get("id", f"#{i}") if isinstance(entry, dict) else f"#{i}"
            raise TaskError(f"{path}: template {name}: {exc}") from exc
    return templates


def load_templates(extra_dirs: Iterable[Path] = ()) -> dict[str, TaskTemplate]:
    """All templates: the built-in ones, then those in ``extra_dirs``.

    Raises:
        TaskError: a file is invalid, or two templates share an id.
    """
    found: dict[str, TaskTemplate] = {}
    for folder in (BUILTIN_DIR, *map(Path, extra_dirs)):
        if not folder.is_dir():
            raise TaskError(f"task folder {folder} does not exist")
        for path in sorted(folder.glob("*.y*ml")):
            for template in _load_file(path):
                if template.id in found:
                    raise TaskError(f"template id {template.id!r} is defined twice ({found[template.id].source}, {path})")
                found[template.id] = template
    return found


def instances(split: Split, per_template: int = 3, *, templates: dict[str, TaskTemplate] | None = None,
              only: Iterable[str] = ()) -> list[TaskInstance]:
    """The instances of one split, ``per_template`` of each template, in a stable order.

    Raises:
        TaskError: unknown split or template id.
    """
    if split not in SPLITS:
        raise TaskError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    templates = templates if templates is not None else load_templates()
    wanted = set(only)
    unknown = wanted - set(templates)
    if unknown:
        raise TaskError(f"unknown template(s) {sorted(unknown)}; `edgepilot tasks list` shows them")
    out: list[TaskInstance] = []
    for template in templates.values():
        if wanted and template.id not in wanted:
            continue
        if split == "test" and template.split != "test":
            continue
        if split != "test" and template.split != "train":
            continue
        if split == "test-instances":
            out.extend(_held_out(template, per_template))
        else:
            out.extend(template.instance(seed) for seed in range(per_template))
    return out


def _held_out(template: TaskTemplate, n: int) -> list[TaskInstance]:
    train_goals = {template.instance(seed).goal for seed in range(TRAIN_POOL)}
    out: list[TaskInstance] = []
    seed = HELD_OUT_SEED_BASE
    while len(out) < n and seed < HELD_OUT_SEED_BASE + 10_000:
        inst = template.instance(seed)
        if inst.goal not in train_goals:
            out.append(inst)
        seed += 1
    if len(out) < n:  # a template with few distinct goals: held-out seeds still differ in set-up
        out.extend(template.instance(HELD_OUT_SEED_BASE + 10_000 + i) for i in range(n - len(out)))
    return out
