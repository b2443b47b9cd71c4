"""Past runs, read from the trajectories folder (newest first) without loading their steps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edgepilot import paths
from edgepilot.config import Config


def trajectories_root(config: Config) -> Path:
    """Where runs are written: ``trajectories`` in config.toml, else the default folder."""

    return Path(config.trajectories).expanduser() if config.trajectories else paths.trajectories_dir()


@dataclass(frozen=True)
class RunSummary:
    """One past run as the history list shows it."""

    folder: Path
    goal: str
    started: str  # local time, "YYYY-mm-dd HH:MM", or "" when unknown
    status: str  # the result's status, or "no result" (running, or the process died)
    steps: int | None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _when(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return ""
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone()
    return stamp.strftime("%Y-%m-%d %H:%M")


def list_runs(root: Path, limit: int = 300) -> list[RunSummary]:
    """Trajectory folders under ``root`` (those with a steps.jsonl), newest first, at most ``limit``.

    Folder names start with the run's start time, so their order is the runs' order.
    """
    if not root.is_dir():
        return []
    try:
        folders = sorted((p for p in root.iterdir() if (p / "steps.jsonl").is_file()), key=lambda p: p.name,
                         reverse=True)[:limit]
    except OSError:
        return []
    out = []
    for folder in folders:
        meta = _json(folder / "meta.json")
        result = _json(folder / "result.json") if (folder / "result.json").is_file() else None
        steps = result.get("steps") if result else None
        out.append(RunSummary(
            folder=folder, goal=str(meta.get("goal") or folder.name), started=_when(meta.get("started")),
            status=str(result.get("status", "?")) if result is not None else "no result",
            steps=steps if isinstance(steps, int) and not isinstance(steps, bool) else None))
    return out
