"""The ``phrasings`` set: the suite's instances worded the way people type them (docs/sops.md, "The phrasings
set"), read by ``sop eval --split phrasings`` and ``bench --split phrasings``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepilot import yamltext
from edgepilot.errors import SopError

PHRASINGS = Path(__file__).with_name("phrasings.yaml")


def load_phrasings(path: Path = PHRASINGS) -> dict[str, Any]:
    """The ``phrasings`` set: goals in people's wordings with the procedure and parameters they ask for
    (``goals``), and goals no procedure serves (``none``).

    Raises:
        SopError: the file is missing or malformed.
    """
    data = yamltext.load_file(path, "phrasings set", SopError)
    if not isinstance(data, dict) or not isinstance(data.get("goals"), list) or not isinstance(data.get("none"), list):
        raise SopError(f"{path}: expected lists `goals` (task, goal, sop, params) and `none` (goal, why)")
    return data
