"""The evaluation map (``sop_eval_map.yaml``): which bundled SOP serves each task template, and sentences no SOP
serves. Read by the SOP retrieval benchmark and by ``bench --sop train-only``; a module of its own so that both
read it one way without importing each other."""

from __future__ import annotations

from pathlib import Path

from edgepilot import yamltext
from edgepilot.errors import SopError

EVAL_MAP = Path(__file__).with_name("sop_eval_map.yaml")


def load_eval_map(path: Path = EVAL_MAP) -> tuple[dict[str, str | None], list[str]]:
    """The template → SOP map and the unrelated sentences of an evaluation file.

    Raises:
        SopError: the file is missing or malformed.
    """
    data = yamltext.load_file(path, "evaluation map", SopError)
    templates = data.get("templates") if isinstance(data, dict) else None
    unrelated = data.get("unrelated", []) if isinstance(data, dict) else None
    if not isinstance(templates, dict) or not isinstance(unrelated, list):
        raise SopError(f"{path}: expected a mapping `templates: {{id: sop-name or null}}` and a list `unrelated`")
    return _names(templates), [str(u) for u in unrelated]


def load_desktop_map(path: Path = EVAL_MAP) -> dict[str, str | None]:
    """The desktop template → SOP map of an evaluation file (its ``desktop`` mapping; empty without one).

    Raises:
        SopError: the file is missing or malformed.
    """
    data = yamltext.load_file(path, "evaluation map", SopError)
    desktop = data.get("desktop", {}) if isinstance(data, dict) else None
    if not isinstance(desktop, dict):
        raise SopError(f"{path}: expected a mapping `desktop: {{id: sop-name or null}}`")
    return _names(desktop)


def _names(mapping: dict) -> dict[str, str | None]:
    """A template → SOP mapping as read from YAML, its ids and names as strings (null stays None)."""
    return {str(k): (str(v) if v is not None else None) for k, v in mapping.items()}
