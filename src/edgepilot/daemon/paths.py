"""Where the daemon keeps its socket, token, pid file and log.

    socket   $EDGEPILOT_RUNTIME_DIR/daemon.sock, else the user runtime dir (/run/user/UID/edgepilot)
    token    $EDGEPILOT_HOME/daemon.token, else the user config dir (~/.config/edgepilot)
    pid, log $EDGEPILOT_HOME/daemon.{pid,log}, else the user state dir (~/.local/state/edgepilot)

Folders are created with mode 0700, the token and the socket with 0600:
only the user who started the daemon can talk to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgepilot import paths
from edgepilot.errors import ConfigError

SOCKET_NAME = "daemon.sock"
TOKEN_NAME = "daemon.token"
MAX_SOCKET_PATH = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL


@dataclass(frozen=True)
class DaemonPaths:
    """The daemon's files for this user (or for the folders the environment points at)."""

    socket: Path
    token: Path
    pid: Path
    log: Path

    @classmethod
    def default(cls) -> DaemonPaths:
        """The paths from ``$EDGEPILOT_RUNTIME_DIR``, ``$EDGEPILOT_HOME`` and the platform's user dirs."""
        state = paths.state_dir()
        return cls(socket=paths.runtime_dir() / SOCKET_NAME, token=paths.secrets_dir() / TOKEN_NAME,
                   pid=state / "daemon.pid", log=state / "daemon.log")

    def check_socket_path(self) -> None:
        """Raises ConfigError when the socket path is too long for a Unix socket."""
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise ConfigError(f"the socket path {self.socket} is longer than {MAX_SOCKET_PATH} bytes, the limit of a "
                              "Unix socket; point $EDGEPILOT_RUNTIME_DIR at a shorter folder")


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed; refuse a folder that other users can write to.

    Raises:
        ConfigError: it cannot be created, or it is not ours / is writable by others.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc}") from exc
    if info.st_uid != os.getuid():
        raise ConfigError(f"{path} belongs to another user; point $EDGEPILOT_RUNTIME_DIR / $EDGEPILOT_HOME elsewhere")
    if info.st_mode & 0o022:
        raise ConfigError(f"{path} can be written by other users (mode {info.st_mode & 0o777:o}); "
                          f"`chmod go-w {path}` or point $EDGEPILOT_RUNTIME_DIR elsewhere")
    return path


def read_token(path: Path) -> str:
    """The token a client sends.

    Raises:
        ConfigError: there is no token file (the daemon has never started for this user) or it cannot be read.
    """
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError as exc:
        raise ConfigError(f"no daemon token at {path}: start the daemon first (`edgepilot daemon start`)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the daemon token {path}: {exc}") from exc
    if not token:
        raise ConfigError(f"the daemon token {path} is empty; delete it and restart the daemon")
    return token


def ensure_token(path: Path) -> str:
    """The daemon's token, created (32 random bytes, hex, mode 0600) when there is none yet.

    A token file readable by others is replaced by a fresh one.

    Raises:
        ConfigError: the file cannot be written.
    """
    if not path.parent.exists():
        private_dir(path.parent)
    return paths.private_token(path, "the daemon token")
