"""edgepilot: an on-device GUI agent runtime.

Small local models read a screen and operate an Android phone or a desktop, under a least-privilege policy.
The packages, each one concept (docs/architecture.md): ``perception``, ``controllers``, ``models``, ``sop``,
``policy``, ``sim``, ``devices``, ``agent``, ``bench``, ``distill``, ``daemon``, ``tui``, ``cli``; the root
modules ``errors``, ``actions``, ``config``, ``paths``. Importing ``edgepilot`` imports none of the heavy
backends (llama_cpp, adbutils, pyautogui, onnxruntime).
"""

from edgepilot.errors import EdgepilotError

__version__ = "0.1.0"

__all__ = ["EdgepilotError", "__version__"]
