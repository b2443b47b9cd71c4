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
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import posixpath
import re
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from edgepilot.errors import EdgepilotError
from edgepilot.sim.adb.protocol import PhoneBackend
from edgepilot.sim.adb.sync import VirtualFs

log = logging.getLogger(__name__)

STDOUT = 1
STDERR = 2
NOT_FOUND = 127
STATUS_MARK = "\ue000"  # stands for "$?" until the command runs
DEFAULT_DUMP_PATH = "/sdcard/window_dump.xml"
LONG_PRESS_MS = 500
DEFAULT_SWIPE_MS = 300
MAX_SLEEP_S = 30.0

KEYCODES: dict[str, int] = {
    "SOFT_LEFT": 1, "SOFT_RIGHT": 2, "HOME": 3, "BACK": 4, "CALL": 5, "ENDCALL": 6,
    "STAR": 17, "POUND": 18, "DPAD_UP": 19, "DPAD_DOWN": 20, "DPAD_LEFT": 21,
    "DPAD_RIGHT": 22, "DPAD_CENTER": 23, "VOLUME_UP": 24, "VOLUME_DOWN": 25, "POWER": 26,
    "CAMERA": 27, "CLEAR": 28, "COMMA": 55, "PERIOD": 56, "ALT_LEFT": 57, "ALT_RIGHT": 58,
    "SHIFT_LEFT": 59, "SHIFT_RIGHT": 60, "TAB": 61, "SPACE": 62, "SYM": 63, "EXPLORER": 64,
    "ENVELOPE": 65, "ENTER": 66, "DEL": 67, "GRAVE": 68, "MINUS": 69, "EQUALS": 70,
    "LEFT_BRACKET": 71, "RIGHT_BRACKET": 72, "BACKSLASH": 73, "SEMICOLON": 74,
    "APOSTROPHE": 75, "SLASH": 76, "AT": 77, "NUM": 78, "HEADSETHOOK": 79, "FOCUS": 80,
    "PLUS": 81, "MENU": 82, "NOTIFICATION": 83, "SEARCH": 84, "MEDIA_PLAY_PAUSE": 85,
    "MEDIA_STOP": 86, "MEDIA_NEXT": 87, "MEDIA_PREVIOUS": 88, "MUTE": 91, "PAGE_UP": 92,
    "PAGE_DOWN": 93, "ESCAPE": 111, "FORWARD_DEL": 112, "CTRL_LEFT": 113,
    "CTRL_RIGHT": 114, "MOVE_HOME": 122, "MOVE_END": 123, "INSERT": 124,
    "VOLUME_MUTE": 164, "SETTINGS": 176, "APP_SWITCH": 187, "BRIGHTNESS_DOWN": 220,
    "BRIGHTNESS_UP": 221, "SLEEP": 223, "WAKEUP": 224, "CUT": 277, "COPY": 278,
    "PASTE": 279, "ALL_APPS": 284,
}  # fmt: skip
KEYCODES.update({str(d): 7 + d for d in range(10)})
KEYCODES.update({chr(c): 29 + c - ord("A") for c in range(ord("A"), ord("Z") + 1)})

INPUT_SOURCES = frozenset(
    {"keyboard", "mouse", "joystick", "touchnavigation", "touchpad", "trackball",
     "stylus", "dpad", "gamepad", "touchscreen", "rotaryencoder"}
)  # fmt: skip

THIRD_PARTY_EXCLUDED = ("android", "com.android.", "com.google.android.")


# --------------------------------------------------------------------------- results


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


class CommandIO:
    """Stdin and output of one running command.

    Args:
        stdin: Bytes the command may read.
        state: The running command line (cwd, last status).
    """

    def __init__(self, stdin: bytes, state: _RunState) -> None:
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


@dataclass
class _RunState:
    cwd: str = "/"
    status: int = 0
    exiting: bool = False


# --------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class Token:
    """One word or operator of a command line.

    Attributes:
        kind: ``"word"`` or ``"op"``.
        text: The word after quote removal, or the operator text.
        quoted: The word had quotes or backslashes (no glob expansion).
    """

    kind: str
    text: str
    quoted: bool = False


class ShellSyntaxError(ValueError):
    """The command line cannot be parsed (unterminated quote, stray operator)."""


_OPERATORS = ("&&", "||", ">>", ">&", "&>", ";", "&", "|", ">", "<")


class _Lexer:
    def __init__(self, line: str) -> None:
        self.line = line
        self.pos = 0
        self.tokens: list[Token] = []
        self.word: list[str] = []
        self.in_word = False
        self.quoted = False

    def run(self) -> list[Token]:
        while self.pos < len(self.line):
            self._step(self.line[self.pos])
        self._end_word()
        return self.tokens

    def _end_word(self) -> None:
        if self.in_word:
            self.tokens.append(Token("word", "".join(self.word), self.quoted))
        self.word, self.in_word, self.quoted = [], False, False

    def _add(self, text: str, quoted: bool = False) -> None:
        self.word.append(text)
        self.in_word = True
        self.quoted = self.quoted or quoted

    def _step(self, ch: str) -> None:
        if ch in " \t\r":
            self._end_word()
            self.pos += 1
        elif ch == "\n":
            self._end_word()
            self.tokens.append(Token("op", ";"))
            self.pos += 1
        elif ch == "#" and not self.in_word:
            end = self.line.find("\n", self.pos)
            self.pos = len(self.line) if end < 0 else end
        elif ch == "'":
            self._single_quote()
        elif ch == '"':
            self._double_quote()
        elif ch == "\\":
            self._backslash()
        elif ch == "$" and self.line.startswith("$?", self.pos):
            self._add(STATUS_MARK)
            self.pos += 2
        elif ch in ";&|<>":
            self._operator()
        else:
            self._add(ch)
            self.pos += 1

    def _single_quote(self) -> None:
        end = self.line.find("'", self.pos + 1)
        if end < 0:
            raise ShellSyntaxError("unterminated quoted string")
        self._add(self.line[self.pos + 1 : end], quoted=True)
        self.pos = end + 1

    def _double_quote(self) -> None:
        self.pos += 1
        parts = []
        while self.pos < len(self.line) and self.line[self.pos] != '"':
            ch = self.line[self.pos]
            nxt = self.line[self.pos + 1 : self.pos + 2]
            if ch == "\\" and nxt in ('"', "\\", "$", "`", "\n"):
                parts.append("" if nxt == "\n" else nxt)
                self.pos += 2
            elif ch == "$" and nxt == "?":
                parts.append(STATUS_MARK)
                self.pos += 2
            else:
                parts.append(ch)
                self.pos += 1
        if self.pos >= len(self.line):
            raise ShellSyntaxError("unterminated quoted string")
        self._add("".join(parts), quoted=True)
        self.pos += 1

    def _backslash(self) -> None:
        nxt = self.line[self.pos + 1 : self.pos + 2]
        if nxt != "\n":
            self._add(nxt, quoted=True)
        self.pos += 2

    def _operator(self) -> None:
        fd = ""
        word = "".join(self.word)
        if self.line[self.pos] in "<>" and self.in_word and not self.quoted and word.isdigit():
            fd, self.word, self.in_word = word, [], False
        self._end_word()
        op = next(o for o in _OPERATORS if self.line.startswith(o, self.pos))
        self.pos += len(op)
        self.tokens.append(Token("op", fd + op))


def tokenize(line: str) -> list[Token]:
    """Split a command line into words and operators (POSIX quoting, no expansion).

    Raises:
        ShellSyntaxError: Unterminated quote.
    """
    return _Lexer(line).run()


# --------------------------------------------------------------------------- parser


@dataclass
class Command:
    """One simple command: its words and its redirections ``(op, target)``."""

    words: list[Token] = field(default_factory=list)
    redirects: list[tuple[str, str]] = field(default_factory=list)


_REDIRECT_RE = re.compile(r"^(\d*)(>>|>&|>|<|&>)$")
_LIST_OPS = {";": ";", "&": ";", "&&": "&&", "||": "||"}


def parse(tokens: list[Token]) -> list[tuple[str, list[Command]]]:
    """Group tokens into ``(connector, pipeline)`` pairs.

    The connector says when the pipeline runs: ``";"`` always, ``"&&"`` after
    success, ``"||"`` after failure.

    Raises:
        ShellSyntaxError: An operator without a command, or a redirection
            without a target.
    """
    items: list[tuple[str, list[Command]]] = []
    connector, pipeline, cmd = ";", [], Command()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "word":
            cmd.words.append(tok)
        elif _REDIRECT_RE.match(tok.text):
            if i + 1 >= len(tokens) or tokens[i + 1].kind != "word":
                raise ShellSyntaxError(f"unexpected {tokens[i + 1].text if i + 1 < len(tokens) else 'newline'}")
            cmd.redirects.append((tok.text, tokens[i + 1].text))
            i += 1
        elif tok.text == "|":
            if not cmd.words and not cmd.redirects:
                raise ShellSyntaxError("unexpected '|'")
            pipeline.append(cmd)
            cmd = Command()
        else:
            if cmd.words or cmd.redirects:
                pipeline.append(cmd)
            elif pipeline or tok.text in ("&&", "||"):
                raise ShellSyntaxError(f"unexpected '{tok.text}'")
            if pipeline:
                items.append((connector, pipeline))
            connector, pipeline, cmd = _LIST_OPS[tok.text], [], Command()
        i += 1
    if cmd.words or cmd.redirects:
        pipeline.append(cmd)
    elif pipeline or connector != ";":
        raise ShellSyntaxError("unexpected end of line")
    if pipeline:
        items.append((connector, pipeline))
    return items


# --------------------------------------------------------------------------- helpers


def _to_int(text: str) -> int:
    return int(float(text))


def _short_activity(package: str, activity: str) -> str:
    if activity.startswith(package + "."):
        return activity[len(package) :]
    return activity


def _full_activity(package: str, activity: str) -> str:
    return package + activity if activity.startswith(".") else activity


def _fake_hash(text: str, salt: str = "") -> str:
    return format(zlib.crc32((salt + text).encode("utf-8")) & 0xFFFFFFF, "x")


def _bre_to_python(pattern: str) -> str:
    """Translate a grep basic regular expression into Python syntax."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(nxt if nxt in "(){}|+?" else ch + nxt)
            i += 2
            continue
        out.append("\\" + ch if ch in "(){}|+?" else ch)
        i += 1
    return "".join(out)


def _parse_count(args: list[str], default: int = 10) -> tuple[int, list[str]]:
    """Parse ``-n N`` / ``-N`` / ``-nN`` for head and tail."""
    count, rest, i = default, [], 0
    while i < len(args):
        arg = args[i]
        if arg == "-n" and i + 1 < len(args):
            count, i = int(args[i + 1]), i + 2
            continue
        if arg.startswith("-n") and arg[2:].lstrip("+-").isdigit():
            count = int(arg[2:])
        elif arg.startswith("-") and arg[1:].isdigit():
            count = int(arg[1:])
        else:
            rest.append(arg)
        i += 1
    return count, rest


def _png_to_raw(png: bytes) -> bytes:
    """``screencap`` without ``-p``: 16-byte header (w, h, format, dataspace) + RGBA."""
    from PIL import Image  # Pillow is a core dependency; imported lazily (rarely used)

    image = Image.open(io.BytesIO(png)).convert("RGBA")
    width, height = image.size
    return struct.pack("<IIII", width, height, 1, 0) + image.tobytes()


# --------------------------------------------------------------------------- intents


@dataclass
class Intent:
    """The parts of an ``am`` intent the virtual phone cares about."""

    component: str | None = None
    action: str | None = None
    categories: list[str] = field(default_factory=list)
    data: str | None = None
    package: str | None = None
    extras: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)

    def describe(self) -> str:
        """The ``Intent { ... }`` text ``am`` prints."""
        parts = []
        if self.action:
            parts.append(f"act={self.action}")
        if self.categories:
            parts.append(f"cat=[{','.join(self.categories)}]")
        if self.data:
            parts.append(f"dat={self.data}")
        if self.package:
            parts.append(f"pkg={self.package}")
        if self.component:
            parts.append(f"cmp={self.component}")
        if self.extras:
            parts.append("(has extras)")
        return "Intent { " + " ".join(parts) + " }"


_EXTRA_OPTS = frozenset(
    {"--es", "--ez", "--ei", "--el", "--ef", "--ed", "--eu", "--ecn", "--eia", "--eial",
     "--ela", "--elal", "--efa", "--efal", "--esa", "--esal", "--eda"}
)  # fmt: skip
_VALUE_OPTS = frozenset({"-t", "-f", "-e", "--user", "--display", "-R", "-P", "--start-profiler",
                         "--sampling", "--windowingMode", "--activityType", "--task"})
_BARE_OPTS = frozenset({"-W", "-S", "-D", "-N", "--streaming", "--track-allocation",
                        "--receiver-foreground", "--receiver-registered-only", "--async"})


def parse_intent(args: list[str]) -> Intent:
    """Parse ``am start`` / ``am broadcast`` intent arguments.

    Raises:
        ValueError: An option is unknown or misses its value.
    """
    intent, queue = Intent(), list(args)

    def take(opt: str) -> str:
        if not queue:
            raise ValueError(f"Argument expected after \"{opt}\"")
        return queue.pop(0)

    while queue:
        arg = queue.pop(0)
        if arg == "-n":
            intent.component = take(arg)
        elif arg == "-a":
            intent.action = take(arg)
        elif arg == "-c":
            intent.categories.append(take(arg))
        elif arg == "-d":
            intent.data = take(arg)
        elif arg == "-p":
            intent.package = take(arg)
        elif arg == "--esn":
            intent.extras[take(arg)] = ""
        elif arg in _EXTRA_OPTS:
            key = take(arg)
            intent.extras[key] = take(arg)
        elif arg in _VALUE_OPTS:
            take(arg)
        elif arg in _BARE_OPTS or re.match(r"^--(activity|grant|include|exclude)-", arg):
            intent.flags.add(arg)
        elif arg.startswith("-"):
            raise ValueError(f"Unknown option: {arg}")
        elif "/" in arg and "://" not in arg and not intent.component:
            intent.component = arg
        else:
            intent.data = arg
    return intent


# --------------------------------------------------------------------------- the shell


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
        self._commands: dict[str, Callable[[list[str], CommandIO], int]] = {
            "am": self._am, "cat": self._cat, "cd": self._cd, "cmd": self._cmd,
            "dumpsys": self._dumpsys, "echo": self._echo, "exit": self._exit,
            "false": lambda a, o: 1, "getprop": self._getprop, "grep": self._grep,
            "head": self._head, "id": self._id, "input": self._input, "ls": self._ls,
            "mkdir": self._mkdir, "monkey": self._monkey, "pm": self._pm,
            "pwd": self._pwd, "rm": self._rm, "screencap": self._screencap,
            "sh": self._sh, "sleep": self._sleep, "tail": self._tail, "touch": self._touch,
            "true": lambda a, o: 0, ":": lambda a, o: 0, "uiautomator": self._uiautomator,
            "wc": self._wc, "whoami": self._whoami, "wm": self._wm,
        }  # fmt: skip

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
        state = _RunState()
        result = ShellResult()
        try:
            self._run_line(command, stdin, state, result)
        except Exception as exc:  # the interpreter itself must never take a connection down
            log.exception("shell failed on %r", command)
            result.chunks.append((STDERR, f"/system/bin/sh: internal error: {exc}\n".encode()))
            state.status = 1
        result.status = state.status
        return result

    def _run_line(self, line: str, stdin: bytes, state: _RunState, result: ShellResult) -> None:
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

    def _run_pipeline(self, pipeline: list[Command], stdin: bytes, state: _RunState, result: ShellResult) -> None:
        data = stdin
        for index, command in enumerate(pipeline):
            last = index == len(pipeline) - 1
            cio = self._run_command(command, data, state)
            data = b"".join(d for s, d in cio.chunks if s == STDOUT)
            for stream, chunk in cio.chunks:
                if last or stream == STDERR:
                    result.chunks.append((stream, chunk))

    def _expand(self, tokens: list[Token], state: _RunState) -> list[str]:
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

    def _run_command(self, command: Command, stdin: bytes, state: _RunState) -> CommandIO:
        argv = self._expand(command.words, state)
        cio = CommandIO(stdin, state)
        routes = self._open_redirects(command.redirects, state, cio)
        if routes is None:
            state.status = 1
            return cio
        state.status = self._dispatch(argv, cio) if argv else 0
        return self._route(cio, routes, state)

    # ---- redirections

    def _open_redirects(self, redirects: list[tuple[str, str]], state: _RunState, cio: CommandIO) -> dict | None:
        """Resolve where fd 1 and 2 go; truncate ``>`` targets. None on error."""
        routes: dict[int, tuple] = {STDOUT: ("fd", STDOUT), STDERR: ("fd", STDERR)}
        for op, raw_target in redirects:
            target = raw_target.replace(STATUS_MARK, str(state.status))
            fd_text, kind = _REDIRECT_RE.match(op).groups()
            fd = int(fd_text) if fd_text else (0 if kind == "<" else STDOUT)
            try:
                self._apply_redirect(routes, fd, kind, target, state, cio)
            except OSError as exc:
                cio.fail(f"/system/bin/sh: can't create {target}: {exc.strerror}")
                return None
        return routes

    def _apply_redirect(self, routes: dict, fd: int, kind: str, target: str, state: _RunState, cio: CommandIO) -> None:
        if kind == "<":
            cio.stdin = b"" if target == "/dev/null" else self.fs.read(self.fs.normalize(target, state.cwd))
            return
        if kind == ">&":
            if target.isdigit():
                routes[fd] = routes.get(int(target), ("fd", int(target)))
                return
            kind = "&>"
        dest = self._file_route(target, append=kind == ">>", state=state)
        for each in (STDOUT, STDERR) if kind == "&>" else (fd,):
            routes[each] = dest

    def _file_route(self, target: str, append: bool, state: _RunState) -> tuple:
        if target in ("/dev/null", "/dev/zero"):
            return ("null",)
        if target in ("/dev/stdout", "/dev/tty", "/proc/self/fd/1"):
            return ("fd", STDOUT)
        if target in ("/dev/stderr", "/proc/self/fd/2"):
            return ("fd", STDERR)
        path = self.fs.normalize(target, state.cwd)
        self.fs.write(path, b"", append=append)
        return ("file", path)

    def _route(self, cio: CommandIO, routes: dict, state: _RunState) -> CommandIO:
        if routes == {STDOUT: ("fd", STDOUT), STDERR: ("fd", STDERR)}:
            return cio
        routed = CommandIO(b"", state)
        for stream, data in cio.chunks:
            dest = routes.get(stream, ("fd", stream))
            if dest[0] == "fd":
                routed.chunks.append((dest[1], data))
            elif dest[0] == "file":
                self.fs.write(dest[1], data, append=True)
        return routed

    # ---- dispatch

    def _dispatch(self, argv: list[str], cio: CommandIO) -> int:
        name = posixpath.basename(argv[0]) if argv[0].startswith("/") else argv[0]
        handler = self._commands.get(name)
        if handler is None:
            return cio.fail(f"/system/bin/sh: {argv[0]}: inaccessible or not found", NOT_FOUND)
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

    # ---- input

    def _input(self, args: list[str], cio: CommandIO) -> int:
        args = list(args)
        if args and args[0] in INPUT_SOURCES:
            args.pop(0)
        if len(args) >= 2 and args[0] == "-d":
            del args[:2]
        if not args:
            return cio.fail("Usage: input [<source>] [-d DISPLAY_ID] <command> [<arg>...]")
        sub, rest = args[0], args[1:]
        handler = {
            "tap": self._input_tap, "swipe": self._input_swipe, "draganddrop": self._input_swipe,
            "text": self._input_text, "keyevent": self._input_keyevent, "press": self._input_press,
        }.get(sub)  # fmt: skip
        if handler is None:
            return cio.fail(f"Error: Unknown command: {sub}")
        return handler(rest, cio)

    def _input_tap(self, args: list[str], cio: CommandIO) -> int:
        if len(args) != 2:
            return cio.fail("Usage: input tap <x> <y>")
        self.phone.tap(_to_int(args[0]), _to_int(args[1]))
        return 0

    def _input_swipe(self, args: list[str], cio: CommandIO) -> int:
        if len(args) not in (4, 5):
            return cio.fail("Usage: input swipe <x1> <y1> <x2> <y2> [duration(ms)]")
        x1, y1, x2, y2 = (_to_int(a) for a in args[:4])
        duration = _to_int(args[4]) if len(args) == 5 else DEFAULT_SWIPE_MS
        if (x1, y1) == (x2, y2) and duration >= LONG_PRESS_MS:
            self.phone.long_press(x1, y1, duration)
        else:
            self.phone.swipe(x1, y1, x2, y2, duration)
        return 0

    def _input_text(self, args: list[str], cio: CommandIO) -> int:
        if not args:
            return cio.fail("Usage: input text <string>")
        text = args[0].replace("%s", " ")  # like Android, only the first argument is typed
        if text:
            self.phone.input_text(text)
        return 0

    def _input_keyevent(self, args: list[str], cio: CommandIO) -> int:
        names = [a for a in args if a not in ("--longpress", "--doubletap")]
        if not names:
            return cio.fail("Usage: input keyevent [--longpress|--doubletap] <key code number or name> ...")
        codes = []
        for name in names:
            code = self.keycode(name)
            if code is None:
                return cio.fail(f"Error: Unknown keycode: {name}")
            codes.append(code)
        for code in codes:
            self.phone.keyevent(code)
        return 0

    def _input_press(self, args: list[str], cio: CommandIO) -> int:
        self.phone.keyevent(KEYCODES["DPAD_CENTER"])
        return 0

    @staticmethod
    def keycode(name: str) -> int | None:
        """Android key code for a number, ``KEYCODE_X`` or ``X``; None if unknown."""
        if name.isdigit():
            return int(name)
        key = name.upper()
        key = key[len("KEYCODE_") :] if key.startswith("KEYCODE_") else key
        return KEYCODES.get(key)

    # ---- screen

    def _uiautomator(self, args: list[str], cio: CommandIO) -> int:
        if not args or args[0] != "dump":
            return cio.fail("Usage: uiautomator dump [--compressed] [--windows] [FILE]")
        paths = [a for a in args[1:] if not a.startswith("--")]
        path = paths[0] if paths else DEFAULT_DUMP_PATH
        xml = self.phone.dump_xml()
        if path == "/dev/tty":
            cio.out(xml)
        else:
            try:
                self.fs.write(self.fs.normalize(path, cio.state.cwd), xml.encode("utf-8"))
            except OSError as exc:
                return cio.fail(f"ERROR: could not write to {path}: {exc.strerror}")
        cio.out(f"UI hierchary dumped to: {path}\n")
        return 0

    def _screencap(self, args: list[str], cio: CommandIO) -> int:
        png_flag, paths, queue = False, [], list(args)
        while queue:
            arg = queue.pop(0)
            if arg == "-d" and queue:
                queue.pop(0)
            elif arg.startswith("-"):
                png_flag = png_flag or "p" in arg
            else:
                paths.append(arg)
        png = self.phone.screencap_png()
        if not paths:
            cio.out(png if png_flag else _png_to_raw(png))
            return 0
        data = png if png_flag or paths[0].endswith(".png") else _png_to_raw(png)
        try:
            self.fs.write(self.fs.normalize(paths[0], cio.state.cwd), data)
        except OSError as exc:
            return cio.fail(f"Error opening file: {paths[0]} ({exc.strerror})")
        return 0

    def _wm(self, args: list[str], cio: CommandIO) -> int:
        if args == ["size"]:
            width, height = self.phone.screen_size
            cio.out(f"Physical size: {width}x{height}\n")
        elif args == ["density"]:
            cio.out(f"Physical density: {self._density()}\n")
        else:
            return cio.fail(f"Error: wm {' '.join(args)} is not supported by the virtual phone")
        return 0

    def _density(self) -> int:
        value = self.phone.props().get("ro.sf.lcd_density", "")
        return int(value) if value.isdigit() else 420

    # ---- activity manager, package manager, monkey

    def _am(self, args: list[str], cio: CommandIO) -> int:
        if not args:
            return cio.fail("usage: am [start|force-stop|broadcast] ...")
        sub, rest = args[0], args[1:]
        handler = {
            "start": self._am_start, "start-activity": self._am_start,
            "force-stop": self._am_force_stop, "broadcast": self._am_broadcast,
        }.get(sub)  # fmt: skip
        if handler is None:
            return cio.fail(f"Unknown command: {sub}")
        return handler(rest, cio)

    def _am_start(self, args: list[str], cio: CommandIO) -> int:
        intent = parse_intent(args)
        cio.out(f"Starting: {intent.describe()}\n")
        if intent.component:
            return self._start_component(intent, cio)
        if "android.intent.category.HOME" in intent.categories:
            self.phone.keyevent(KEYCODES["HOME"])
            return 0
        return cio.fail(f"Error: Activity not started, unable to resolve {intent.describe()}")

    def _start_component(self, intent: Intent, cio: CommandIO) -> int:
        package, _, activity = intent.component.partition("/")
        try:
            self.phone.start_app(package, activity or None)
        except EdgepilotError as exc:
            log.debug("am start %s failed: %s", intent.component, exc)
            return cio.fail(f"Error type 3\nError: Activity class {{{intent.component}}} does not exist.")
        if "-W" in intent.flags:
            cio.out(f"Status: ok\nLaunchState: COLD\nActivity: {intent.component}\n")
            cio.out("TotalTime: 0\nWaitTime: 0\nComplete\n")
        return 0

    def _am_force_stop(self, args: list[str], cio: CommandIO) -> int:
        packages = [a for a in args if not a.startswith("-") and not a.isdigit()]
        if not packages:
            return cio.fail("Error: no package specified")
        if self.phone.focused_window()[0] == packages[-1]:
            self.phone.keyevent(KEYCODES["HOME"])
        return 0

    def _am_broadcast(self, args: list[str], cio: CommandIO) -> int:
        intent = parse_intent(args)
        if not intent.action:
            return cio.fail("Error: broadcast needs an action (-a ACTION)")
        cio.out(f"Broadcasting: {intent.describe()}\n")
        text = self.phone.broadcast(intent.action, dict(intent.extras))
        cio.out(text if text.endswith("\n") else text + "\n")
        return 0

    def _monkey(self, args: list[str], cio: CommandIO) -> int:
        packages = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-p"]
        known = set(self.phone.packages())
        if not packages or not set(packages) <= known:
            return cio.fail("** No activities found to run, monkey aborted.", 252)
        started = time.perf_counter()
        try:
            self.phone.start_app(packages[0])
        except EdgepilotError as exc:
            log.debug("monkey could not start %s: %s", packages[0], exc)
            return cio.fail("** No activities found to run, monkey aborted.", 252)
        ms = int((time.perf_counter() - started) * 1000)
        cio.out(f"  bash arg: {' '.join(args)}\nEvents injected: 1\n")
        cio.out(f"## Network stats: elapsed time={ms}ms (0ms mobile, 0ms wifi, {ms}ms not connected)\n")
        return 0

    def _pm(self, args: list[str], cio: CommandIO) -> int:
        if args[:2] in (["list", "packages"], ["list", "package"]):
            return self._pm_list(args[2:], cio)
        if len(args) == 2 and args[0] == "path":
            if args[1] not in self.phone.packages():
                return 1
            cio.out(f"package:/data/app/{args[1]}-1/base.apk\n")
            return 0
        return cio.fail(f"Error: pm {' '.join(args[:1])} is not supported by the virtual phone")

    def _pm_list(self, args: list[str], cio: CommandIO) -> int:
        flags = {a for a in args if a.startswith("-")}
        filters = [a for a in args if not a.startswith("-")]
        for name in sorted(self.phone.packages()):
            system = name.startswith(THIRD_PARTY_EXCLUDED)
            if ("-3" in flags and system) or ("-s" in flags and not system):
                continue
            if filters and filters[0] not in name:
                continue
            prefix = f"/data/app/{name}-1/base.apk=" if "-f" in flags else ""
            cio.out(f"package:{prefix}{name}\n")
        return 0

    def _cmd(self, args: list[str], cio: CommandIO) -> int:
        service = {"package": self._pm, "activity": self._am, "window": self._wm, "input": self._input}
        if not args or args[0] not in service:
            return cio.fail(f"cmd: Can't find service: {args[0] if args else ''}")
        return service[args[0]](args[1:], cio)

    # ---- dumpsys and properties

    def _dumpsys(self, args: list[str], cio: CommandIO) -> int:
        if not args:
            return cio.fail("dumpsys: a service name is required (window, activity, display, power)")
        writer = {
            "window": self._dumpsys_window, "activity": self._dumpsys_activity,
            "display": self._dumpsys_display, "power": self._dumpsys_power,
            "SurfaceFlinger": self._dumpsys_surfaceflinger,
        }.get(args[0])  # fmt: skip
        if writer is None:
            return cio.fail(f"Can't find service: {args[0]}")
        cio.out(writer(args[1:]))
        return 0

    def _focus(self) -> tuple[str, str, str]:
        package, activity = self.phone.focused_window()
        return package, _full_activity(package, activity), _short_activity(package, activity)

    def _dumpsys_window(self, args: list[str]) -> str:
        package, full, short = self._focus()
        width, height = self.phone.screen_size
        window = f"Window{{{_fake_hash(package, 'w')} u0 {package}/{full}}}"
        record = f"ActivityRecord{{{_fake_hash(package, 'a')} u0 {package}/{short} t12}}"
        return (
            "WINDOW MANAGER DISPLAY CONTENTS (dumpsys window displays)\n"
            "  Display: mDisplayId=0 rootTasks=1\n"
            f"    init={width}x{height} {self._density()}dpi cur={width}x{height} app={width}x{height}\n"
            "\nWINDOW MANAGER WINDOWS (dumpsys window windows)\n"
            f"  Window #0 {window}:\n"
            f"    mDisplayId=0 rootTaskId=12 package={package} appop=NONE\n"
            "    mHasSurface=true isReadyForDisplay()=true\n"
            "\n"
            f"  mCurrentFocus={window}\n"
            f"  mFocusedApp={record}\n"
            "  mInTouchMode=true\n"
        )

    def _dumpsys_activity(self, args: list[str]) -> str:
        package, _full, short = self._focus()
        record = f"ActivityRecord{{{_fake_hash(package, 'a')} u0 {package}/{short} t12}}"
        activities = (
            "ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)\n"
            "Display #0 (activities from top to bottom):\n"
            "  * Task{12 #12 type=standard A=10100:" + package + " U=0 visible=true}\n"
            f"  mResumedActivity: {record}\n"
            f"  topResumedActivity={record}\n"
        )
        top = (
            "TASK 10100:" + package + " id=12 userId=0\n"
            f"  ACTIVITY {package}/{short} {_fake_hash(package, 'a')} pid=4242\n"
        )
        if args[:1] in (["activities"], ["a"]):
            return activities
        if args[:1] == ["top"]:
            return top
        return activities + "\n" + top

    def _dumpsys_display(self, args: list[str]) -> str:
        width, height = self.phone.screen_size
        return (
            "DISPLAY MANAGER (dumpsys display)\n"
            "  mDefaultViewport=DisplayViewport{type=INTERNAL, valid=true, isActive=true, displayId=0, "
            f"orientation=0, logicalFrame=Rect(0, 0 - {width}, {height}), "
            f"physicalFrame=Rect(0, 0 - {width}, {height}), deviceWidth={width}, deviceHeight={height}}}\n"
            f"  mBaseDisplayInfo=DisplayInfo{{\"Built-in Screen\", displayId 0, real {width} x {height}, "
            f"rotation 0, density {self._density()}, state ON}}\n"
        )

    def _dumpsys_power(self, args: list[str]) -> str:
        return (
            "POWER MANAGER (dumpsys power)\n  mWakefulness=Awake\n"
            "  mHoldingDisplaySuspendBlocker=true\nDisplay Power: state=ON\n"
        )

    def _dumpsys_surfaceflinger(self, args: list[str]) -> str:
        return 'Display 4619827259835644672 (HWC display 0): port=0 pnpId=GGL displayName="Virtual_Phone"\n'

    def _getprop(self, args: list[str], cio: CommandIO) -> int:
        props = self.phone.props()
        if not args:
            cio.out("".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items())))
        else:
            cio.out(props.get(args[0], args[1] if len(args) > 1 else "") + "\n")
        return 0

    # ---- files

    def _path(self, cio: CommandIO, path: str) -> str:
        return self.fs.normalize(path, cio.state.cwd)

    def _cat(self, args: list[str], cio: CommandIO) -> int:
        status = 0
        for arg in args or ["-"]:
            if arg == "-":
                cio.out(cio.stdin)
                continue
            try:
                cio.out(self.fs.read(self._path(cio, arg)))
            except OSError as exc:
                status = cio.fail(f"cat: {arg}: {exc.strerror}")
        return status

    def _rm(self, args: list[str], cio: CommandIO) -> int:
        flags = "".join(a[1:] for a in args if a.startswith("-") and len(a) > 1)
        force, recursive = "f" in flags, "r" in flags.lower()
        status = 0
        for arg in (a for a in args if not a.startswith("-") or a == "-"):
            try:
                self.fs.remove(self._path(cio, arg), recursive=recursive)
            except FileNotFoundError as exc:
                if not force:
                    status = cio.fail(f"rm: {arg}: {exc.strerror}")
            except OSError:
                status = cio.fail(f"rm: {arg}: is a directory")
        return status

    def _ls(self, args: list[str], cio: CommandIO) -> int:
        flags = "".join(a[1:] for a in args if a.startswith("-"))
        paths = [a for a in args if not a.startswith("-")] or ["."]
        status = 0
        for arg in paths:
            path = self._path(cio, arg)
            info = self.fs.stat(path)
            if info is None:
                status = cio.fail(f"ls: {arg}: No such file or directory")
            elif info[0] & 0o040000 and "d" not in flags:
                if len(paths) > 1:
                    cio.out(f"{arg}:\n")
                for name in self.fs.listdir(path):
                    cio.out(self._ls_line(posixpath.join(path, name), name, "l" in flags))
            else:
                cio.out(self._ls_line(path, arg, "l" in flags))
        return status

    def _ls_line(self, path: str, name: str, long: bool) -> str:
        if not long:
            return name + "\n"
        mode, size = self.fs.stat(path) or (0, 0)
        kind = "d" if mode & 0o040000 else "-"
        perms = "rwxrwx--x" if kind == "d" else "rw-rw----"
        stamp = time.strftime("%Y-%m-%d %H:%M")
        return f"{kind}{perms} 1 root sdcard_rw {size:>8} {stamp} {name}\n"

    def _mkdir(self, args: list[str], cio: CommandIO) -> int:
        # Directories are implicit in the virtual file system: any path can hold files.
        for arg in (a for a in args if not a.startswith("-")):
            if self.fs.is_file(self._path(cio, arg)):
                return cio.fail(f"mkdir: '{arg}': File exists")
        return 0

    def _touch(self, args: list[str], cio: CommandIO) -> int:
        for arg in (a for a in args if not a.startswith("-")):
            path = self._path(cio, arg)
            if self.fs.stat(path) is None:
                try:
                    self.fs.write(path, b"")
                except OSError as exc:
                    return cio.fail(f"touch: '{arg}': {exc.strerror}")
        return 0

    def _cd(self, args: list[str], cio: CommandIO) -> int:
        path = self._path(cio, args[0] if args else "/")
        if not self.fs.is_dir(path):
            return cio.fail(f"/system/bin/sh: cd: {args[0]}: No such file or directory", 2)
        cio.state.cwd = path
        return 0

    def _pwd(self, args: list[str], cio: CommandIO) -> int:
        cio.out(cio.state.cwd + "\n")
        return 0

    # ---- text tools

    def _echo(self, args: list[str], cio: CommandIO) -> int:
        newline = "\n"
        if args[:1] == ["-n"]:
            args, newline = args[1:], ""
        cio.out(" ".join(args) + newline)
        return 0

    def _lines_of(self, files: list[str], cio: CommandIO) -> list[bytes] | None:
        data = cio.stdin
        if files:
            try:
                data = b"".join(self.fs.read(self._path(cio, f)) for f in files)
            except OSError as exc:
                cio.fail(f"{exc.filename}: {exc.strerror}")
                return None
        return data.splitlines(keepends=True)

    def _grep(self, args: list[str], cio: CommandIO) -> int:
        flags, rest = set(), []
        for arg in args:
            if arg.startswith("-") and len(arg) > 1 and not rest:
                flags.update(arg[1:])
            else:
                rest.append(arg)
        if not rest:
            return cio.fail("usage: grep [-icvoqEF] PATTERN [FILE...]", 2)
        pattern = rest[0]
        if "F" in flags:
            pattern = re.escape(pattern)
        elif "E" not in flags:
            pattern = _bre_to_python(pattern)
        regex = re.compile(pattern.encode("utf-8"), re.IGNORECASE if "i" in flags else 0)
        lines = self._lines_of(rest[1:], cio)
        if lines is None:
            return 2
        hits = [line for line in lines if bool(regex.search(line)) != ("v" in flags)]
        if "c" in flags:
            cio.out(f"{len(hits)}\n")
        elif "o" in flags and "v" not in flags:
            cio.out(b"".join(m.group(0) + b"\n" for line in hits for m in regex.finditer(line)))
        elif "q" not in flags:
            cio.out(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in hits))
        return 0 if hits else 1

    def _head(self, args: list[str], cio: CommandIO) -> int:
        count, files = _parse_count(args)
        lines = self._lines_of(files, cio)
        if lines is None:
            return 1
        cio.out(b"".join(lines[:count]))
        return 0

    def _tail(self, args: list[str], cio: CommandIO) -> int:
        count, files = _parse_count(args)
        lines = self._lines_of(files, cio)
        if lines is None:
            return 1
        cio.out(b"".join(lines[-count:] if count else []))
        return 0

    def _wc(self, args: list[str], cio: CommandIO) -> int:
        files = [a for a in args if not a.startswith("-")]
        lines = self._lines_of(files, cio)
        if lines is None:
            return 1
        data = b"".join(lines)
        counts = {"l": data.count(b"\n"), "w": len(data.split()), "c": len(data)}
        chosen = [c for c in "lwc" if any(c in a for a in args if a.startswith("-"))] or list("lwc")
        cio.out(" ".join(str(counts[c]) for c in chosen) + "\n")
        return 0

    # ---- misc

    def _sleep(self, args: list[str], cio: CommandIO) -> int:
        time.sleep(min(max(float(args[0]) if args else 0.0, 0.0), MAX_SLEEP_S))
        return 0

    def _exit(self, args: list[str], cio: CommandIO) -> int:
        cio.state.exiting = True
        return int(args[0]) & 0xFF if args else cio.state.status

    def _sh(self, args: list[str], cio: CommandIO) -> int:
        if len(args) < 2 or args[0] != "-c":
            return cio.fail("/system/bin/sh: only 'sh -c COMMAND' is supported by the virtual phone")
        inner = ShellResult()
        state = _RunState(cwd=cio.state.cwd, status=cio.state.status)
        self._run_line(args[1], cio.stdin, state, inner)
        cio.chunks.extend(inner.chunks)
        return state.status

    def _id(self, args: list[str], cio: CommandIO) -> int:
        cio.out("uid=2000(shell) gid=2000(shell) groups=2000(shell),1004(input),1007(log),1015(sdcard_rw)")
        cio.out(" context=u:r:shell:s0\n")
        return 0

    def _whoami(self, args: list[str], cio: CommandIO) -> int:
        cio.out("shell\n")
        return 0
