"""A private desktop session: Xvfb, a D-Bus session bus and the AT-SPI bus, and the apps started in it.

::

    DesktopSession.start()
      Xvfb -displayfd            a free display number, chosen by Xvfb itself
      dbus-daemon --session      the session bus (activates org.a11y.Bus)
      at-spi-bus-launcher        the accessibility bus; it also names itself on the root window (AT_SPI_BUS)
    session.launch(["mousepad"]) GTK_MODULES=gail:atk-bridge, its own XDG folders: nothing of the user's is read
    session.stop()               every process group it started, in reverse order

Nothing here touches the caller's environment: :attr:`DesktopSession.env`
holds DISPLAY and DBUS_SESSION_BUS_ADDRESS for whoever needs them, and
:meth:`DesktopSession.device` opens a :class:`~edgepilot.controllers.desktop.DesktopDevice`
on it. The Debian packages it needs are installed by ``scripts/system-deps.sh``
(xvfb, dbus-x11, at-spi2-core).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from edgepilot.controllers.desktop import GTK_A11Y_ENV, DesktopDevice
from edgepilot.errors import PerceptionError, SimError
from edgepilot.perception.atspi import a11y_bus_from_session

AT_SPI_LAUNCHERS = ("/usr/libexec/at-spi-bus-launcher", "/usr/lib/at-spi2-core/at-spi-bus-launcher",
                    "/usr/lib/at-spi-bus-launcher", "/usr/lib/x86_64-linux-gnu/at-spi-bus-launcher")
INSTALL_HINT = "install the desktop test packages with scripts/system-deps.sh (Debian: xvfb dbus-x11 at-spi2-core)"


def at_spi_launcher() -> str | None:
    """Where at-spi-bus-launcher is installed (it is not on PATH), or None."""
    return next((p for p in AT_SPI_LAUNCHERS if os.access(p, os.X_OK)), None)


def missing_tools() -> list[str]:
    """The programs a desktop session needs that this machine lacks."""
    missing = [tool for tool in ("Xvfb", "dbus-daemon") if shutil.which(tool) is None]
    if at_spi_launcher() is None:
        missing.append("at-spi-bus-launcher")
    return missing


class DesktopSession:
    """Xvfb with a session bus and the accessibility bus, torn down as a whole.

    Args:
        size: the screen, in pixels.
        workdir: where the session's sockets, HOME and XDG folders go (default: a fresh temporary folder,
            removed by :meth:`stop`).
        timeout: seconds each piece has to come up.

    Raises:
        SimError: (from :meth:`start`) a program is missing or does not start; the message says which and how
            to install it.
    """

    def __init__(self, size: tuple[int, int] = (1280, 800), *, workdir: Path | None = None,
                 timeout: float = 15.0) -> None:
        self.size = size
        self.timeout = timeout
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="edgepilot-desktop-"))
        self.display = ""
        self.session_bus = ""
        self.a11y_bus = ""
        self.procs: list[subprocess.Popen] = []
        self.env: dict[str, str] = {}

    # ------------------------------------------------------------ lifetime

    def start(self) -> DesktopSession:
        missing = missing_tools()
        if missing:
            raise SimError(f"cannot start a desktop session: {', '.join(missing)} not found; {INSTALL_HINT}")
        try:
            self._prepare_env()
            self._start_xvfb()
            self._start_session_bus()
            self._start_a11y_bus()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process this session started (apps first), and remove its folder if it made it."""
        for proc in reversed(self.procs):
            _terminate(proc)
        self.procs.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DesktopSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ use

    def launch(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
               log: str | None = None) -> subprocess.Popen:
        """Start a program on this display with accessibility on; it is stopped with the session.

        Raises:
            SimError: the program cannot be started.
        """

        out = open(self.workdir / (log or f"{Path(argv[0]).name}.log"), "ab")  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(argv, env={**self.env, **GTK_A11Y_ENV, **(env or {})}, cwd=cwd,  # noqa: S603
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as exc:
            raise SimError(f"cannot start {argv[0]}: {exc}; {INSTALL_HINT}") from exc
        finally:
            out.close()
        self.procs.append(proc)
        return proc

    def stop_process(self, proc: subprocess.Popen) -> None:
        """Stop one program this session launched (its whole process group)."""
        _terminate(proc)
        if proc in self.procs:
            self.procs.remove(proc)

    def device(self, **kwargs: Any) -> Any:
        """A :class:`~edgepilot.controllers.desktop.DesktopDevice` on this session's display and buses."""

        kwargs.setdefault("a11y_bus", self.a11y_bus)
        kwargs.setdefault("env", self.env)
        return DesktopDevice(self.display, session_bus=self.session_bus, **kwargs)

    # ------------------------------------------------------------ pieces

    def _prepare_env(self) -> None:
        home = self.workdir / "home"
        runtime = self.workdir / "run"
        for folder in (home, runtime, home / ".config", home / ".local" / "share", home / ".cache"):
            folder.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        keep = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "SHELL")
        self.env = {k: os.environ[k] for k in keep if k in os.environ}
        self.env.setdefault("LANG", "C.UTF-8")
        self.env.update(HOME=str(home), XDG_RUNTIME_DIR=str(runtime), XDG_CONFIG_HOME=str(home / ".config"),
                        XDG_DATA_HOME=str(home / ".local" / "share"), XDG_CACHE_HOME=str(home / ".cache"),
                        GSETTINGS_BACKEND="memory", NO_AT_BRIDGE="0")

    def _spawn(self, argv: list[str], log: str, **kwargs: Any) -> subprocess.Popen:
        out = open(self.workdir / log, "ab")  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=kwargs.pop("stdout", out),  # noqa: S603
                                    stderr=out, start_new_session=True, **kwargs)
        except OSError as exc:
            raise SimError(f"cannot start {argv[0]}: {exc}; {INSTALL_HINT}") from exc
        finally:
            out.close()
        self.procs.append(proc)
        return proc

    def _read_line(self, fd: int, proc: subprocess.Popen, what: str) -> str:
        """The first line a child writes on ``fd``, within the timeout."""
        deadline = time.monotonic() + self.timeout
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise SimError(f"{what} did not start (exit {proc.poll()}); see {self.workdir}/*.log. {INSTALL_HINT}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise SimError(f"{what} exited before it was ready; see {self.workdir}/*.log")
                data += chunk
        return data.decode().strip()

    def _start_xvfb(self) -> None:
        read, write = os.pipe()
        try:
            w, h = self.size
            proc = self._spawn(["Xvfb", "-displayfd", str(write), "-screen", "0", f"{w}x{h}x24", "-nolisten", "tcp",
                                "-noreset"], "xvfb.log", pass_fds=(write,))
            os.close(write)
            write = -1
            self.display = ":" + self._read_line(read, proc, "Xvfb")
        finally:
            os.close(read)
            if write >= 0:
                os.close(write)
        self.env["DISPLAY"] = self.display

    def _start_session_bus(self) -> None:
        read, write = os.pipe()
        try:
            proc = self._spawn(["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--print-address={write}"],
                               "dbus.log", pass_fds=(write,))
            os.close(write)
            write = -1
            self.session_bus = self._read_line(read, proc, "the D-Bus session bus (dbus-daemon)")
        finally:
            os.close(read)
            if write >= 0:
                os.close(write)
        self.env["DBUS_SESSION_BUS_ADDRESS"] = self.session_bus

    def _start_a11y_bus(self) -> None:
        launcher = at_spi_launcher()
        assert launcher is not None
        proc = self._spawn([launcher, "--launch-immediately"], "at-spi.log")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.a11y_bus = a11y_bus_from_session(self.session_bus)
                break
            except (PerceptionError, OSError, TimeoutError) as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SimError(f"the AT-SPI bus did not come up ({exc}); see {self.workdir}/at-spi.log. "
                                   f"{INSTALL_HINT}") from exc
                time.sleep(0.1)


def _terminate(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a child and its process group (it was started in a new session): TERM, then KILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait(grace)
    else:
        try:  # the leader is gone; what it left in its group (an activated bus, a helper) goes too
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
