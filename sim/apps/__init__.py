"""The virtual phone's apps. Each is one module; ``APP_CLASSES`` is the install order."""

from edgepilot.sim.apps.launcher import Launcher
from edgepilot.sim.apps.settings import Settings

APP_CLASSES = [Launcher, Settings]

__all__ = ["APP_CLASSES"]
