"""edgepilot: an on-device GUI agent runtime.

The distribution's subpackages are ``edgepilot.runtime``, ``edgepilot.perception``,
``edgepilot.controllers``, ``edgepilot.sim``, ``edgepilot.sop``, ``edgepilot.distill``
and ``edgepilot.tui``. Importing ``edgepilot`` imports none of the heavy
backends (llama_cpp, adbutils, pyautogui, onnxruntime).
"""

from edgepilot.errors import EdgepilotError

__version__ = "0.1.0"

__all__ = ["EdgepilotError", "__version__"]
