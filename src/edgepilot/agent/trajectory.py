"""Trajectories on disk: a folder per run, written as the run goes.

    <dir>/meta.json      what ran: goal, agent, model, device, step budget, start time
    <dir>/steps.jsonl    one JSON object per step, appended and flushed after each step
    <dir>/step-000.png   the screenshot the step's decision was made on (when there was one)
    <dir>/result.json    how the run ended (written last; missing if the process died)

The format is plain JSON and PNG so that a trajectory is readable without
edgepilot; the fields of a step are listed in docs/trajectories.md and typed by
:mod:`edgepilot.agent.records`. A crash loses at most the step in flight.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgepilot import __version__, paths
from edgepilot.agent.records import RunMeta, RunRecord, StepRecord
from edgepilot.errors import ConfigError

FORMAT = 1


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "run"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class TrajectoryWriter:
    """Writes one run's trajectory folder step by step.

    Args:
        folder: the folder to write (created; must not already hold a trajectory).
        meta: what ran (goal, agent, model, device...), stored in meta.json.

    Raises:
        ConfigError: the folder cannot be created, or already holds a trajectory.
    """

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the trajectory folder {self.folder}: {exc}") from exc
        if (self.folder / "steps.jsonl").exists():
            raise ConfigError(f"{self.folder} already holds a trajectory; pick another folder")
        _write_json(self.folder / "meta.json", {"format": FORMAT, "started": datetime.now(UTC).isoformat(),
                                                "edgepilot": __version__, **meta})
        self._steps = open(self.folder / "steps.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.count = 0

    @classmethod
    def new(cls, goal: str, meta: dict[str, Any], root: Path | None = None) -> TrajectoryWriter:
        """A fresh folder under ``root`` (default: :func:`edgepilot.paths.trajectories_dir`), named after the time
        and the goal."""
        root = Path(root) if root else paths.trajectories_dir()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = root / f"{stamp}-{_slug(goal)}"
        folder, n = base, 1
        while folder.exists():
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
        return cls(folder, {"goal": goal, **meta})

    def write_step(self, step: StepRecord, screenshot_png: bytes | None = None) -> None:
        """Append one step (and its screenshot) and flush both to disk."""
        if screenshot_png:
            name = f"step-{step.index:03d}.png"
            (self.folder / name).write_bytes(screenshot_png)
            step = step.model_copy(update={"screenshot": name})
        self._steps.write(json.dumps(step.to_json(), ensure_ascii=False) + "\n")
        self._steps.flush()
        os.fsync(self._steps.fileno())
        self.count += 1

    def finish(self, result: RunRecord, final_png: bytes | None = None) -> None:
        """Write result.json (and the last screen) and close the folder."""
        if final_png:
            (self.folder / "final.png").write_bytes(final_png)
            result = result.model_copy(update={"final_screenshot": "final.png"})
        done = result.model_copy(update={"finished_at": datetime.now(UTC).isoformat()})
        _write_json(self.folder / "result.json", done.model_dump(mode="json", exclude_none=True))
        self.close()

    def amend_result(self, extra: dict[str, Any]) -> None:
        """Add fields to result.json after the run (a benchmark's verdict)."""
        path = self.folder / "result.json"
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        _write_json(path, {**data, **extra})

    def close(self) -> None:
        if not self._steps.closed:
            self._steps.close()


@dataclass
class Trajectory:
    """A trajectory read back from its folder: typed records, and what could not be read as written."""

    folder: Path
    meta: RunMeta
    steps: list[StepRecord] = field(default_factory=list)
    result: RunRecord | None = None
    warnings: list[str] = field(default_factory=list)


def _salvage(model: type[Any], data: Any, warnings: list[str], where: str, **defaults: Any) -> Any:
    """``data`` read as ``model``; fields of the wrong shape are dropped (and said), so that a damaged or foreign
    record still shows what it holds."""
    data = dict(data) if isinstance(data, dict) else {}
    for key, value in defaults.items():
        if not isinstance(data.get(key), int) or isinstance(data.get(key), bool):
            data[key] = value
    for _ in range(len(data) + 1):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            if not bad & set(data):
                raise
            warnings.append(f"{where}: {', '.join(sorted(bad & set(data)))} of an unexpected shape; left out")
            data = {k: v for k, v in data.items() if k not in bad}
    return model.model_validate({})


def read_trajectory(folder: str | Path) -> Trajectory:
    """Read a trajectory folder; a torn last line (the process died mid-write) is reported, not fatal.

    Raises:
        ConfigError: the folder is not a trajectory.
    """
    folder = Path(folder)
    steps_file = folder / "steps.jsonl"
    if not steps_file.is_file():
        raise ConfigError(f"{folder} is not a trajectory (no steps.jsonl); runs are written under "
                          f"{paths.trajectories_dir()}")
    warnings: list[str] = []
    try:
        raw_meta = json.loads((folder / "meta.json").read_text(encoding="utf-8", errors="replace"))
        if not isinstance(raw_meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raw_meta = {}
        warnings.append(f"meta.json unreadable ({exc})")
    meta = _salvage(RunMeta, raw_meta, warnings, "meta.json")
    try:
        text = steps_file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read {steps_file}: {exc}") from exc
    steps = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            warnings.append(f"steps.jsonl line {n} is torn or not JSON; skipped")
            continue
        if not isinstance(data, dict):
            warnings.append(f"steps.jsonl line {n} is not a JSON object")
        steps.append(_salvage(StepRecord, data, warnings, f"steps.jsonl line {n}", index=len(steps)))
    result = None
    if (folder / "result.json").is_file():
        try:
            raw = json.loads((folder / "result.json").read_text(encoding="utf-8", errors="replace"))
            result = _salvage(RunRecord, raw if isinstance(raw, dict) else {}, warnings, "result.json")
        except (OSError, ValueError) as exc:
            warnings.append(f"result.json unreadable ({exc})")
    else:
        warnings.append("no result.json: the run was interrupted")
    return Trajectory(folder, meta, steps, result, warnings)
