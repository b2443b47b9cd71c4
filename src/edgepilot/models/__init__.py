"""Model backends: the ``ModelBackend`` seam, llama.cpp in-process, built-in model files."""

from edgepilot.models.base import Completion, Message, ModelBackend

__all__ = ["Completion", "Message", "ModelBackend"]
