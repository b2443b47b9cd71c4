"""Starting the daemon in the background, finding it, and stopping it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgepilot.daemon.client import DaemonClient, DaemonError, DaemonNotRunning
from edgepilot.daemon.paths import DaemonPaths, private_dir
from edgepilot.errors import ConfigError

START_TIMEOUT = 60.0


def read_pid(paths: DaemonPaths) -> int | None:
    """The pid in the pid file when that process is alive and is an edgepilot daemon (else None)."""
    try:
        pid = int(paths.pid.read_text(encoding="ascii").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no /proc: trust the pid file
    return pid if b"edgepilot" in cmdline else None


def running_pid(paths: DaemonPaths) -> int | None:
    """The pid of the daemon answering on the socket (0 when something answers but refuses us), else None."""
    try:
        with DaemonClient.connect(paths.socket, timeout=2) as client:
            return int(client.info.get("pid") or 0)
    except DaemonNotRunning:
        return None
    except (DaemonError, ConfigError):
        return read_pid(paths) or 0


def start_background(args: list[str], paths: DaemonPaths | None = None, timeout: float = START_TIMEOUT) -> int:
    """Start ``python -m edgepilot daemon start --foreground ARGS`` detached, logging to the log file;
    return its pid once it answers on the socket.

    Raises:
        ConfigError: a daemon is already running, or the new one exited or did not answer in time (with the
            end of its log).
    """
    paths = paths or DaemonPaths.default()
    running = running_pid(paths)
    if running is not None:
        raise ConfigError(f"a daemon is already running (pid {running or '?'}, socket {paths.socket}); "
                          "`edgepilot daemon stop` first")
    private_dir(paths.log.parent)
    fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # tasks are in it: the user's only
    with os.fdopen(fd, "ab") as log:
        log.write(f"\n--- edgepilot daemon start {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "edgepilot", "daemon", "start", "--foreground", *args],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"the daemon exited at once (code {proc.returncode}); its log {paths.log} ends:\n"
                              + log_tail(paths))
        try:
            with DaemonClient.connect(paths.socket, timeout=2):
                return proc.pid
        except (DaemonNotRunning, DaemonError, ConfigError):
            time.sleep(0.1)
    raise ConfigError(f"the daemon (pid {proc.pid}) did not answer within {timeout:g} s; see {paths.log}:\n"
                      + log_tail(paths))


def stop_daemon(paths: DaemonPaths | None = None, timeout: float = 15.0) -> int | None:
    """Ask the daemon to shut down (SIGTERM when the socket does not answer); the pid that stopped, or None.

    Raises:
        ConfigError: it is still running after ``timeout`` seconds.
    """
    paths = paths or DaemonPaths.default()
    pid = read_pid(paths)
    try:
        client = DaemonClient.connect(paths.socket, timeout=5)
    except (DaemonError, ConfigError):
        if pid is None:
            return None
        os.kill(pid, signal.SIGTERM)  # the socket does not answer: the pid file names it
    else:
        with client:
            pid = int(client.info.get("pid") or 0) or pid
            try:
                client.shutdown()
            except DaemonError:
                pass  # it hung up while shutting down
    if pid is None:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return pid
        time.sleep(0.1)
    raise ConfigError(f"the daemon (pid {pid}) is still running after {timeout:g} s; `kill {pid}`")


def log_tail(paths: DaemonPaths, lines: int = 20) -> str:
    try:
        return "\n".join(paths.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
