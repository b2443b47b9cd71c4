"""edgepilot: an on-device GUI agent runtime.

Small local models read a screen and operate an Android phone or a desktop, under a least-privilege policy.
The packages, each one concept (docs/architecture.md): ``perception``, ``controllers``, ``models``, ``sop``,
``policy``, ``sim``, ``devices``, ``agent``, ``bench``, ``distill``, ``daemon``, ``tui``, ``api``, ``cli``; the root
modules ``errors``, ``actions``, ``config``, ``paths``. Importing ``edgepilot`` imports none of the heavy
backends (llama_cpp, adbutils, pyautogui, onnxruntime).
"""

import importlib
from typing import Any

from edgepilot.errors import EdgepilotError

__version__ = "0.1.0"

__all__ = ["Agent", "AgentResult", "EdgepilotError", "__version__"]


def __getattr__(name: str) -> Any:
    """``edgepilot.Agent`` and ``edgepilot.AgentResult``, imported on first use (the API is a front end; importing
    ``edgepilot`` stays light)."""
    if name in ("Agent", "AgentResult"):
        return getattr(importlib.import_module("edgepilot.api"), name)
    raise AttributeError(f"module 'edgepilot' has no attribute {name!r}")
