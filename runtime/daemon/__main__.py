"""``python -m edgepilot.runtime.daemon ...``: the same commands as ``edgepilot daemon ...``."""

from edgepilot.runtime.cli_daemon import daemon

daemon(prog_name="edgepilot daemon")
