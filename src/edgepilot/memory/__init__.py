"""App memory from exploration: states, elements, what they do, and routes to them (docs/memory.md)."""

from edgepilot.memory.model import FORMAT, AppMemory, ElementMemo, StateMemo, load, save
from edgepilot.memory.routes import Target, recall, route_procedure
from edgepilot.memory.store import find, forget, memories, stored

__all__ = ["FORMAT", "AppMemory", "ElementMemo", "StateMemo", "Target", "find", "forget", "load", "memories",
           "recall", "route_procedure", "save", "stored"]
