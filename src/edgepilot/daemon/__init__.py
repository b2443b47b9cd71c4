"""The background daemon: a warm model, a run queue, a control socket, global hotkeys (docs/daemon.md).

- :mod:`.daemon`: the process (:class:`~.daemon.Daemon`) that ties the parts together.
- :mod:`.runs`: the queue and the worker (every run through agent/session.py).
- :mod:`.server`, :mod:`.protocol`: the Unix socket and its JSON-lines requests.
- :mod:`.bus`: events fanned out to subscribed clients.
- :mod:`.confirm`: confirmations answered by clients or desktop notifications.
- :mod:`.hotkeys`: pynput hotkeys and the tkinter task prompt.
- :mod:`.client`: :class:`DaemonClient`, for the CLI and ``edgepilot tui --attach``.
- :mod:`.bench`: the safety stop's latency, measured on Xvfb.

Importing this package imports no model, pynput or tkinter.
"""

from edgepilot.daemon.client import DaemonClient, DaemonError, DaemonNotRunning
from edgepilot.daemon.paths import DaemonPaths

__all__ = ["DaemonClient", "DaemonError", "DaemonNotRunning", "DaemonPaths"]
