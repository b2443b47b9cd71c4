"""A tiny device shell: what ``adb shell CMD`` runs on the virtual phone.

No real shell is involved. A command line is split into words with POSIX
quoting rules (single quotes, double quotes, backslashes; the same rules as
:mod:`shlex` in POSIX mode), but operators are recognised only when unquoted,
so ``echo ';'`` prints a semicolon. Supported syntax:

* lists: ``a; b``, ``a && b``, ``a || b`` (and ``&`` / newlines as ``;``),
* pipelines ``a | b`` (stdout of ``a`` is stdin of ``b``),
* redirections ``> F``, ``>> F``, ``< F``, ``2> F``, ``2>&1``, ``>&2``, ``&> F``
  (``/dev/null`` discards),
* ``$?`` (status of the previous command), ``*``/``?`` globs on unquoted words.

The commands are an emulation of the Android tools that GUI agents use:
``input``, ``uiautomator dump``, ``screencap``, ``am``, ``monkey``, ``pm``,
``dumpsys``, ``getprop``, ``wm``, ``cmd`` plus small file and text tools
(``cat ls rm mkdir touch echo grep head tail wc sleep cd pwd sh -c``...).
Unknown commands print ``/system/bin/sh: NAME: inaccessible or not found``
with status 127. Errors raised by the phone (``SimError`` and others) become
error text on stderr with status 1; they never escape :meth:`DeviceShell.run`.

This module holds the interpreter, :class:`DeviceShell`: it expands words,
runs lists and pipelines and hands each command to the module that emulates it:

* :mod:`~edgepilot.sim.adb.shell_syntax`: lexer and parser (:func:`tokenize`, :func:`parse`),
* :mod:`~edgepilot.sim.adb.shell_io`: :class:`ShellResult`, per-command I/O, redirections,
* :mod:`~edgepilot.sim.adb.input`: ``input`` and the key code table,
* :mod:`~edgepilot.sim.adb.ui`: ``uiautomator``, ``screencap``, ``wm``,
* :mod:`~edgepilot.sim.adb.activity`: ``am``, ``monkey``, ``pm`` and intent parsing,
* :mod:`~edgepilot.sim.adb.dumpsys`: ``dumpsys`` and ``getprop``,
* :mod:`~edgepilot.sim.adb.coreutils`: the file and text tools.

Their public names (:class:`ShellResult`, :class:`CommandIO`, :func:`parse`,
:func:`tokenize`, :func:`parse_intent`, :data:`KEYCODES`...) are re-exported
here, so callers can keep importing everything from this module.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import posixpath
from collections.abc import Callable

from edgepilot.errors import EdgepilotError
from edgepilot.sim.adb.activity import THIRD_PARTY_EXCLUDED, ActivityService, Intent, parse_intent
from edgepilot.sim.adb.coreutils import MAX_SLEEP_S, FileTools, TextTools
from edgepilot.sim.adb.dumpsys import DumpsysService
from edgepilot.sim.adb.input import DEFAULT_SWIPE_MS, INPUT_SOURCES, KEYCODES, LONG_PRESS_MS, InputService, keycode
from edgepilot.sim.adb.protocol import PhoneBackend
from edgepilot.sim.adb.shell_io import STDERR, STDOUT, CommandIO, Redirector, RunState, ShellResult
from edgepilot.sim.adb.shell_syntax import (
    STATUS_MARK,
    Command,
    ShellSyntaxError,
    Token,
    parse,
    tokenize,
)
from edgepilot.sim.adb.sync import VirtualFs
from edgepilot.sim.adb.ui import DEFAULT_DUMP_PATH, ScreenService

__all__ = [
    "DEFAULT_DUMP_PATH",
    "DEFAULT_SWIPE_MS",
    "INPUT_SOURCES",
    "KEYCODES",
    "LONG_PRESS_MS",
    "MAX_SLEEP_S",
    "NOT_FOUND",
    "STATUS_MARK",
    "STDERR",
    "STDOUT",
    "THIRD_PARTY_EXCLUDED",
    "Command",
    "CommandIO",
    "DeviceShell",
    "Intent",
    "ShellResult",
    "ShellSyntaxError",
    "Token",
    "parse",
    "parse_intent",
    "tokenize",
]

log = logging.getLogger(__name__)

NOT_FOUND = 127

Handler = Callable[[list[str], CommandIO], int]


class DeviceShell:
    """Runs shell command lines against a phone.

    Args:
        phone: The phone every command acts on.

    Example:
        >>> DeviceShell(phone).run("input tap 100 200 && echo ok").output
        b'ok\\n'
    """

    def __init__(self, phone: PhoneBackend) -> None:
        self.phone = phone
        self.fs = VirtualFs(phone)
        self._redirector = Redirector(self.fs)
        self._input = InputService(phone)
        self._screen = ScreenService(phone, self.fs)
        self._activity = ActivityService(phone)
        self._dumpsys = DumpsysService(phone)
        self._files = FileTools(self.fs)
        self._text = TextTools(self.fs)
        self._commands = self._command_table()

    def _command_table(self) -> dict[str, Handler]:
        files, text, activity, screen = self._files, self._text, self._activity, self._screen
        return {
            "am": activity.am, "cat": files.cat, "cd": files.cd, "cmd": self._cmd,
            "dumpsys": self._dumpsys.dumpsys, "echo": text.echo, "exit": self._exit,
            "false": lambda a, o: 1, "getprop": self._dumpsys.getprop, "grep": text.grep,
            "head": text.head, "id": text.id, "input": self._input.input, "ls": files.ls,
            "mkdir": files.mkdir, "monkey": activity.monkey, "pm": activity.pm,
            "pwd": files.pwd, "rm": files.rm, "screencap": screen.screencap,
            "settings": screen.settings, "sh": self._sh, "sleep": text.sleep, "tail": text.tail, "touch": files.touch,
            "true": lambda a, o: 0, ":": lambda a, o: 0, "uiautomator": screen.uiautomator,
            "wc": text.wc, "whoami": text.whoami, "wm": screen.wm,
        }  # fmt: skip

    @staticmethod
    def keycode(name: str) -> int | None:
        """Android key code for a number, ``KEYCODE_X`` or ``X``; None if unknown."""
        return keycode(name)

    # ---- running command lines

    def run(self, command: str, stdin: bytes = b"") -> ShellResult:
        """Run one command line.

        Args:
            command: The text after ``shell:`` / ``exec:``.
            stdin: Input for the first command that reads stdin.

        Returns:
            Everything printed and the last exit status. Never raises for
            command failures or phone errors; those become stderr text.
        """
        state = RunState()
        result = ShellResult()
        try:
            self._run_line(command, stdin, state, result)
        except Exception as exc:  # the interpreter itself must never take a connection down
            log.exception("shell failed on %r", command)
            result.chunks.append((STDERR, f"/system/bin/sh: internal error: {exc}\n".encode()))
            state.status = 1
        result.status = state.status
        return result

    def _run_line(self, line: str, stdin: bytes, state: RunState, result: ShellResult) -> None:
        try:
            items = parse(tokenize(line))
        except ShellSyntaxError as exc:
            result.chunks.append((STDERR, f"/system/bin/sh: syntax error: {exc}\n".encode()))
            state.status = 2
            return
        for connector, pipeline in items:
            if state.exiting:
                break
            if (connector == "&&" and state.status != 0) or (connector == "||" and state.status == 0):
                continue
            self._run_pipeline(pipeline, stdin, state, result)
            stdin = b""

    def _run_pipeline(self, pipeline: list[Command], stdin: bytes, state: RunState, result: ShellResult) -> None:
        data = stdin
        for index, command in enumerate(pipeline):
            last = index == len(pipeline) - 1
            cio = self._run_command(command, data, state)
            data = b"".join(d for s, d in cio.chunks if s == STDOUT)
            for stream, chunk in cio.chunks:
                if last or stream == STDERR:
                    result.chunks.append((stream, chunk))

    def _expand(self, tokens: list[Token], state: RunState) -> list[str]:
        words = []
        for tok in tokens:
            text = tok.text.replace(STATUS_MARK, str(state.status))
            if not tok.quoted and any(c in text for c in "*?["):
                words.extend(self._glob(text, state.cwd) or [text])
            else:
                words.append(text)
        return words

    def _glob(self, pattern: str, cwd: str) -> list[str]:
        directory, name = posixpath.split(pattern)
        if any(c in directory for c in "*?["):
            return []
        try:
            names = self.fs.listdir(self.fs.normalize(directory or ".", cwd))
        except OSError:
            return []
        hits = [n for n in names if fnmatch.fnmatchcase(n, name) and (name.startswith(".") or not n.startswith("."))]
        return [posixpath.join(directory, n) if directory else n for n in hits]

    def _run_command(self, command: Command, stdin: bytes, state: RunState) -> CommandIO:
        argv = self._expand(command.words, state)
        cio = CommandIO(stdin, state)
        routes = self._redirector.open(command.redirects, state, cio)
        if routes is None:
            state.status = 1
            return cio
        state.status = self._dispatch(argv, cio) if argv else 0
        return self._redirector.route(cio, routes, state)

    # ---- dispatch

    def _dispatch(self, argv: list[str], cio: CommandIO) -> int:
        name = posixpath.basename(argv[0]) if argv[0].startswith("/") else argv[0]
        handler = self._commands.get(name)
        if handler is None:
            return cio.fail(f"/system/bin/sh: {argv[0]}: inaccessible or not found", NOT_FOUND)
        # sleep must not stall the phone for others; sh takes the lock per inner command.
        lock = contextlib.nullcontext() if name in ("sleep", "sh") else self.phone.lock
        try:
            with lock:
                return handler(argv[1:], cio)
        except EdgepilotError as exc:
            log.debug("%s failed: %s", name, exc)
            return cio.fail(f"Error: {exc}")
        except (ValueError, IndexError) as exc:
            return cio.fail(f"{name}: bad arguments: {exc}")
        except Exception as exc:  # a broken phone must not kill the connection thread
            log.exception("shell command %r crashed", argv)
            return cio.fail(f"{name}: internal error: {type(exc).__name__}: {exc}")

    def _cmd(self, args: list[str], cio: CommandIO) -> int:
        service: dict[str, Handler] = {
            "package": self._activity.pm, "activity": self._activity.am,
            "window": self._screen.wm, "input": self._input.input,
        }  # fmt: skip
        if not args or args[0] not in service:
            return cio.fail(f"cmd: Can't find service: {args[0] if args else ''}")
        return service[args[0]](args[1:], cio)

    # ---- builtins that reach into the interpreter

    def _exit(self, args: list[str], cio: CommandIO) -> int:
        cio.state.exiting = True
        return int(args[0]) & 0xFF if args else cio.state.status

    def _sh(self, args: list[str], cio: CommandIO) -> int:
        if len(args) < 2 or args[0] != "-c":
            return cio.fail("/system/bin/sh: only 'sh -c COMMAND' is supported by the virtual phone")
        inner = ShellResult()
        state = RunState(cwd=cio.state.cwd, status=cio.state.status)
        self._run_line(args[1], cio.stdin, state, inner)
        cio.chunks.extend(inner.chunks)
        return state.status
