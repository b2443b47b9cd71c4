"""The virtual phone's apps. Each is one module; ``APP_CLASSES`` is the install (and launcher) order."""

from edgepilot.sim.apps.bank import Bank
from edgepilot.sim.apps.browser import Browser
from edgepilot.sim.apps.clock import Clock
from edgepilot.sim.apps.contacts import Contacts
from edgepilot.sim.apps.launcher import Launcher
from edgepilot.sim.apps.messages import Messages
from edgepilot.sim.apps.notes import Notes
from edgepilot.sim.apps.settings import Settings

APP_CLASSES = [Launcher, Settings, Contacts, Messages, Clock, Notes, Browser, Bank]

__all__ = ["APP_CLASSES"]
