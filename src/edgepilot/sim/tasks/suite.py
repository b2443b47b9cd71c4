"""The task suite: templates from YAML files, and the seeded instance splits.

Splits:

- ``train``: instances of train templates whose goal sentence is not held out;
- ``test-instances``: instances of train templates whose goal sentence is held
  out (one goal in :data:`HELD_OUT_BUCKETS`, by a stable hash of the sentence),
  so no held-out goal is ever a train goal;
- ``test``: instances of test templates (kinds of task never seen in training).

Nothing from ``test`` or ``test-instances`` is used for training, SOPs or
prompt examples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from edgepilot import yamltext
from edgepilot.errors import TaskError
from edgepilot.sim.tasks.model import TaskInstance, TaskTemplate

BUILTIN_DIR = Path(__file__).with_name("templates")
HELD_OUT_BUCKETS = 5  # one goal in five of a train template is held out
MAX_SEED_SCAN = 5_000

Split = Literal["train", "test-instances", "test"]
SPLITS: tuple[str, ...] = ("train", "test-instances", "test")


def _load_file(path: Path) -> list[TaskTemplate]:
    try:
        raw = yamltext.safe_load(path.read_text(encoding="utf-8"))
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
        except ValidationError as exc:
            name = entry.get("id", f"#{i}") if isinstance(entry, dict) else f"#{i}"
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'template'}: {e['msg']}" for e in exc.errors())
            raise TaskError(f"{path}: template {name}: {problems}") from exc
        except TypeError as exc:
            raise TaskError(f"{path}: entry #{i} is not a mapping of template fields") from exc
    return templates


def load_templates(extra_dirs: Iterable[Path] = (), *, builtin: Path = BUILTIN_DIR,
                   device: str = "phone") -> dict[str, TaskTemplate]:
    """All templates of one device (the phone's, or the desktop's from its own folder): the built-in
    ones, then those in ``extra_dirs``.

    Raises:
        TaskError: a file is invalid, two templates share an id, or a template is for another device.
    """
    found: dict[str, TaskTemplate] = {}
    for folder in (builtin, *map(Path, extra_dirs)):
        if not folder.is_dir():
            raise TaskError(f"task folder {folder} does not exist")
        for path in sorted(folder.glob("*.y*ml")):
            for template in _load_file(path):
                if template.id in found:
                    raise TaskError(f"template id {template.id!r} is defined twice "
                                    f"({found[template.id].source}, {path})")
                if template.device != device:
                    raise TaskError(f"{path}: template {template.id} is a {template.device} task; this suite "
                                    f"runs {device} tasks")
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
        if split == "test":
            if template.split == "test":
                out.extend(template.instance(seed) for seed in range(per_template))
        elif template.split == "train":
            out.extend(_pick(template, per_template, held_out=split == "test-instances"))
    return out


def after_first(todo: list, skip: int, template_of: Callable[[Any], str]) -> list:
    """``todo`` without the first ``skip`` instances of each template (the order kept): what a benchmark run
    with ``--from-instance skip+1`` measures, instances no fix made after an earlier run was fitted to."""
    if skip <= 0:
        return list(todo)
    seen: dict[str, int] = {}
    out = []
    for item in todo:
        key = template_of(item)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > skip:
            out.append(item)
    return out


def is_held_out(goal: str) -> bool:
    """Whether a train template's goal sentence belongs to ``test-instances``."""
    digest = hashlib.sha256(goal.strip().casefold().encode("utf-8")).digest()
    return digest[0] % HELD_OUT_BUCKETS == 0


def _pick(template: TaskTemplate, n: int, *, held_out: bool) -> list[TaskInstance]:
    """The first ``n`` instances (by seed) on one side of the held-out line, distinct in goal."""
    out: list[TaskInstance] = []
    goals: set[str] = set()
    for seed in range(MAX_SEED_SCAN):
        if len(out) == n:
            break
        inst = template.instance(seed)
        if is_held_out(inst.goal) == held_out and inst.goal not in goals:
            goals.add(inst.goal)
            out.append(inst)
    return out


def task_instance(spec: str) -> TaskInstance:
    """A suite task by ``TEMPLATE`` or ``TEMPLATE#SEED``."""
    template_id, _, seed = spec.partition("#")
    templates = load_templates()
    if template_id not in templates:
        raise TaskError(f"unknown task template {template_id!r}; `edgepilot tasks list` shows them")
    if seed and not seed.isdigit():
        raise TaskError(f"bad task {spec!r}: write TEMPLATE or TEMPLATE#SEED (a number)")
    return templates[template_id].instance(int(seed or 0))
