"""Where the device shell's output goes: results, per-command I/O and redirections.

:class:`ShellResult` is what a whole command line printed; :class:`CommandIO`
is what one command reads and writes; :class:`Redirector` applies ``> F``,
``>> F``, ``< F``, ``2>&1`` and friends to a command's output after it ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgepilot.sim.adb.shell_syntax import REDIRECT_RE, STATUS_MARK
from edgepilot.sim.adb.sync import VirtualFs

STDOUT = 1
STDERR = 2

_TERMINAL = {STDOUT: ("fd", STDOUT), STDERR: ("fd", STDERR)}


@dataclass
class ShellResult:
    """What a command line printed, in order, and its exit status.

    Attributes:
        chunks: ``(stream, data)`` pairs in the order written; stream 1 is
            stdout, 2 is stderr.
        status: Exit status of the last command that ran.
    """

    chunks: list[tuple[int, bytes]] = field(default_factory=list)
    status: int = 0

    def _join(self, streams: tuple[int, ...]) -> bytes:
        return b"".join(data for stream, data in self.chunks if stream in streams)

    @property
    def output(self) -> bytes:
        """Stdout and stderr interleaved, as a legacy ``shell:`` client sees them."""
        return self._join((STDOUT, STDERR))

    @property
    def stdout(self) -> bytes:
        """Only what went to stdout."""
        return self._join((STDOUT,))

    @property
    def stderr(self) -> bytes:
        """Only what went to stderr."""
        return self._join((STDERR,))


@dataclass
class RunState:
    """What one command line carries from command to command.

    Attributes:
        cwd: Working directory (``cd`` changes it).
        status: Exit status of the previous command (``$?``).
        exiting: ``exit`` ran; the rest of the line is skipped.
    """

    cwd: str = "/"
    status: int = 0
    exiting: bool = False


class CommandIO:
    """Stdin and output of one running command.

    Args:
        stdin: Bytes the command may read.
        state: The running command line (cwd, last status).
    """

    def __init__(self, stdin: bytes, state: RunState) -> None:
        self.stdin = stdin
        self.state = state
        self.chunks: list[tuple[int, bytes]] = []

    def out(self, data: str | bytes) -> None:
        """Write to stdout."""
        self.chunks.append((STDOUT, data.encode("utf-8") if isinstance(data, str) else data))

    def err(self, data: str) -> None:
        """Write to stderr."""
        self.chunks.append((STDERR, data.encode("utf-8")))

    def fail(self, message: str, status: int = 1) -> int:
        """Write ``message`` and a newline to stderr; return ``status``."""
        self.err(message.rstrip("\n") + "\n")
        return status


class Redirector:
    """Applies a command's redirections on the phone's file system.

    A route is ``("fd", N)`` (a stream of the command line), ``("file", PATH)``
    or ``("null",)``.

    Args:
        fs: The phone's file system, for ``> F`` / ``< F`` targets.
    """

    def __init__(self, fs: VirtualFs) -> None:
        self.fs = fs

    def open(self, redirects: list[tuple[str, str]], state: RunState, cio: CommandIO) -> dict | None:
        """Resolve where fd 1 and 2 go; truncate ``>`` targets; read ``<`` into stdin.

        Returns:
            The routes by fd, or None after writing the error to ``cio``.
        """
        routes: dict[int, tuple] = dict(_TERMINAL)
        for op, raw_target in redirects:
            target = raw_target.replace(STATUS_MARK, str(state.status))
            fd_text, kind = REDIRECT_RE.match(op).groups()
            fd = int(fd_text) if fd_text else (0 if kind == "<" else STDOUT)
            try:
                self._apply(routes, fd, kind, target, state, cio)
            except OSError as exc:
                cio.fail(f"/system/bin/sh: can't create {target}: {exc.strerror}")
                return None
        return routes

    def _apply(self, routes: dict, fd: int, kind: str, target: str, state: RunState, cio: CommandIO) -> None:
        if kind == "<":
            cio.stdin = b"" if target == "/dev/null" else self.fs.read(self.fs.normalize(target, state.cwd))
            return
        if kind == ">&":
            if target.isdigit():
                routes[fd] = routes.get(int(target), ("fd", int(target)))
                return
            kind = "&>"  # ">& FILE" is bash for "&> FILE"
        dest = self._file_route(target, append=kind == ">>", state=state)
        for each in (STDOUT, STDERR) if kind == "&>" else (fd,):
            routes[each] = dest

    def _file_route(self, target: str, append: bool, state: RunState) -> tuple:
        if target in ("/dev/null", "/dev/zero"):
            return ("null",)
        if target in ("/dev/stdout", "/dev/tty", "/proc/self/fd/1"):
            return ("fd", STDOUT)
        if target in ("/dev/stderr", "/proc/self/fd/2"):
            return ("fd", STDERR)
        path = self.fs.normalize(target, state.cwd)
        self.fs.write(path, b"", append=append)
        return ("file", path)

    def route(self, cio: CommandIO, routes: dict, state: RunState) -> CommandIO:
        """Send what the command wrote where ``routes`` say; return what stays on the command line's streams."""
        if routes == _TERMINAL:
            return cio
        routed = CommandIO(b"", state)
        for stream, data in cio.chunks:
            dest = routes.get(stream, ("fd", stream))
            if dest[0] == "fd":
                routed.chunks.append((dest[1], data))
            elif dest[0] == "file":
                self.fs.write(dest[1], data, append=True)
        return routed
