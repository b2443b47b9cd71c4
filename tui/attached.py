"""``edgepilot tui --attach``: runs in the background daemon, through its client."""

from __future__ import annotations

from pathlib import Path

from edgepilot.errors import ConfigError
from edgepilot.runtime.config import Config
from edgepilot.tui.runner import Runner


def attached_runner(config: Config, *, model: str | None = None, policy_file: Path | None = None) -> Runner:
    """A runner whose runs execute in the daemon.

    Raises:
        ConfigError: this edgepilot has no daemon client yet.
    """
    try:
        from edgepilot.runtime.daemon import client  # noqa: F401
    except ImportError:
        raise ConfigError("--attach needs the daemon's client (edgepilot.runtime.daemon.client), which this "
                          "edgepilot does not have yet; run `edgepilot tui` without --attach") from None
    raise ConfigError("--attach is not wired to the daemon's client yet; run `edgepilot tui` without --attach")
