"""Chat examples for training, read from trajectories: exactly the conversations the runtime has with its model.

One step of a trajectory gives up to two examples:

- ``planner``: the planner's messages, then its answer;
- ``decider``: the decider's messages and answer, followed (when the
  reflector was asked) by the reflector's question and answer: the reflector
  is a follow-up turn to the decider's conversation in the runtime too, so
  one sequence trains both.

Each assistant message carries ``train``: whether the loss covers its tokens
(false for a teacher answer outside the screen's grammar, and for the wrong
steps of self-reflection examples, :mod:`edgepilot.distill.reflection`).

The dataset file is JSON lines, one example a line::

    {"id": "contacts_add#3/2/decider", "instance": "contacts_add#3", "template": "contacts_add",
     "kind": "decider", "sop": false,
     "messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "{\\"type\\": \\"tap\\", \\"target\\": 3}", "train": true}]}
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from edgepilot.agent.records import CallRecord, StepRecord
from edgepilot.agent.trajectory import Trajectory, read_trajectory
from edgepilot.errors import ConfigError

Example = dict[str, Any]


def _assistant(text: str, train: bool) -> dict[str, Any]:
    return {"role": "assistant", "content": text.strip(), "train": train}


def _trainable(call: CallRecord) -> bool:
    return call.error is None and bool((call.output or "").strip())


def step_examples(step: StepRecord, *, instance: str, template: str, sop: bool) -> list[Example]:
    """The training examples of one trajectory step (see the module's docstring)."""
    calls = {c.role: c for c in step.calls}
    base = {"instance": instance, "template": template, "sop": sop}
    out: list[Example] = []
    planner = calls.get("planner")
    if planner is not None and _trainable(planner):
        out.append({"id": f"{instance}/{step.index}/planner", "kind": "planner", **base,
                    "messages": [*planner.messages, _assistant(planner.output or "", True)]})
    decider = calls.get("decider")
    if decider is None:
        return out
    messages = [*decider.messages, _assistant(decider.output or "", _trainable(decider))]
    reflector = calls.get("reflector")
    if reflector is not None:
        asked = reflector.messages
        if asked[: len(decider.messages)] != decider.messages:
            raise ConfigError(f"{instance} step {step.index}: the reflector's conversation does not follow "
                              "the decider's; the trajectory was not written by this edgepilot")
        messages = [*messages, asked[-1], _assistant(reflector.output or "", _trainable(reflector))]
    if any(m.get("train") for m in messages):
        out.append({"id": f"{instance}/{step.index}/decider", "kind": "decider", **base, "messages": messages})
    return out


def trajectory_examples(trajectory: Trajectory) -> list[Example]:
    """Every example of one trajectory (kept or not: the caller decides which trajectories count)."""
    meta = trajectory.meta.model_dump()
    task = str(meta.get("task", trajectory.folder.name))
    template = str(meta.get("template", task.split("#")[0]))
    instance = task + (f"+{meta['variant']}" if meta.get("variant") else "")
    sop = bool(meta.get("sop"))
    return [ex for step in trajectory.steps
            for ex in step_examples(step, instance=instance, template=template, sop=sop)]


def examples_from_folders(folders: Iterable[Path]) -> Iterator[Example]:
    for folder in folders:
        yield from trajectory_examples(read_trajectory(folder))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSON lines (atomically); returns how many."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file.

    Raises:
        ConfigError: the file is missing or a line is not JSON.
    """
    if not Path(path).is_file():
        raise ConfigError(f"no dataset at {path}; run `edgepilot distill collect` first")
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{n}: not JSON ({exc.msg})") from exc
    return rows


def file_sha256(path: Path) -> str:
    """sha256 of a file, hex; remembered while the file's size and modification time stay the same (a
    training run names the 514 MB base model by it twice: the recipe and the cache of its weights)."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
