"""Small file and text tools of the device shell, as toybox on a phone has them.

``cat ls rm mkdir touch cd pwd`` act on the phone's
:class:`~edgepilot.sim.adb.sync.VirtualFs`; ``echo grep head tail wc`` filter
text; ``sleep id whoami`` are there because scripts call them.
"""

from __future__ import annotations

import posixpath
import re
import time

from edgepilot.sim.adb.shell_io import CommandIO
from edgepilot.sim.adb.sync import VirtualFs

MAX_SLEEP_S = 30.0


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


class FileTools:
    """``cat ls rm mkdir touch cd pwd`` on the phone's file system.

    Args:
        fs: The file system; relative paths resolve against the command line's cwd.
    """

    def __init__(self, fs: VirtualFs) -> None:
        self.fs = fs

    def path(self, cio: CommandIO, path: str) -> str:
        """``path`` made absolute against the running command line's cwd."""
        return self.fs.normalize(path, cio.state.cwd)

    def cat(self, args: list[str], cio: CommandIO) -> int:
        """``cat [FILE|-]...``."""
        status = 0
        for arg in args or ["-"]:
            if arg == "-":
                cio.out(cio.stdin)
                continue
            try:
                cio.out(self.fs.read(self.path(cio, arg)))
            except OSError as exc:
                status = cio.fail(f"cat: {arg}: {exc.strerror}")
        return status

    def rm(self, args: list[str], cio: CommandIO) -> int:
        """``rm [-rf] PATH...``."""
        flags = "".join(a[1:] for a in args if a.startswith("-") and len(a) > 1)
        force, recursive = "f" in flags, "r" in flags.lower()
        status = 0
        for arg in (a for a in args if not a.startswith("-") or a == "-"):
            try:
                self.fs.remove(self.path(cio, arg), recursive=recursive)
            except FileNotFoundError as exc:
                if not force:
                    status = cio.fail(f"rm: {arg}: {exc.strerror}")
            except OSError:
                status = cio.fail(f"rm: {arg}: is a directory")
        return status

    def ls(self, args: list[str], cio: CommandIO) -> int:
        """``ls [-ld] [PATH...]``."""
        flags = "".join(a[1:] for a in args if a.startswith("-"))
        paths = [a for a in args if not a.startswith("-")] or ["."]
        status = 0
        for arg in paths:
            path = self.path(cio, arg)
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

    def mkdir(self, args: list[str], cio: CommandIO) -> int:
        """``mkdir [-p] DIR...``."""
        # Directories are implicit in the virtual file system: any path can hold files.
        for arg in (a for a in args if not a.startswith("-")):
            if self.fs.is_file(self.path(cio, arg)):
                return cio.fail(f"mkdir: '{arg}': File exists")
        return 0

    def touch(self, args: list[str], cio: CommandIO) -> int:
        """``touch FILE...``: creates missing files, leaves existing ones alone."""
        for arg in (a for a in args if not a.startswith("-")):
            path = self.path(cio, arg)
            if self.fs.stat(path) is None:
                try:
                    self.fs.write(path, b"")
                except OSError as exc:
                    return cio.fail(f"touch: '{arg}': {exc.strerror}")
        return 0

    def cd(self, args: list[str], cio: CommandIO) -> int:
        """``cd [DIR]``: changes the cwd for the rest of the command line."""
        path = self.path(cio, args[0] if args else "/")
        if not self.fs.is_dir(path):
            return cio.fail(f"/system/bin/sh: cd: {args[0]}: No such file or directory", 2)
        cio.state.cwd = path
        return 0

    def pwd(self, args: list[str], cio: CommandIO) -> int:
        """``pwd``."""
        cio.out(cio.state.cwd + "\n")
        return 0


class TextTools:
    """``echo grep head tail wc`` plus ``sleep id whoami``.

    Args:
        fs: The file system the filters read FILE arguments from.
    """

    def __init__(self, fs: VirtualFs) -> None:
        self.fs = fs

    def echo(self, args: list[str], cio: CommandIO) -> int:
        """``echo [-n] WORD...``."""
        newline = "\n"
        if args[:1] == ["-n"]:
            args, newline = args[1:], ""
        cio.out(" ".join(args) + newline)
        return 0

    def _lines_of(self, files: list[str], cio: CommandIO) -> list[bytes] | None:
        data = cio.stdin
        if files:
            try:
                data = b"".join(self.fs.read(self.fs.normalize(f, cio.state.cwd)) for f in files)
            except OSError as exc:
                cio.fail(f"{exc.filename}: {exc.strerror}")
                return None
        return data.splitlines(keepends=True)

    def grep(self, args: list[str], cio: CommandIO) -> int:
        """``grep [-icvoqEF] PATTERN [FILE...]``."""
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

    def head(self, args: list[str], cio: CommandIO) -> int:
        """``head [-n N|-N] [FILE...]``."""
        count, files = _parse_count(args)
        lines = self._lines_of(files, cio)
        if lines is None:
            return 1
        cio.out(b"".join(lines[:count]))
        return 0

    def tail(self, args: list[str], cio: CommandIO) -> int:
        """``tail [-n N|-N] [FILE...]``."""
        count, files = _parse_count(args)
        lines = self._lines_of(files, cio)
        if lines is None:
            return 1
        cio.out(b"".join(lines[-count:] if count else []))
        return 0

    def wc(self, args: list[str], cio: CommandIO) -> int:
        """``wc [-lwc] [FILE...]``."""
        files = [a for a in args if not a.startswith("-")]
        lines = self._lines_of(files, cio)
        if lines is None:
            return 1
        data = b"".join(lines)
        counts = {"l": data.count(b"\n"), "w": len(data.split()), "c": len(data)}
        chosen = [c for c in "lwc" if any(c in a for a in args if a.startswith("-"))] or list("lwc")
        cio.out(" ".join(str(counts[c]) for c in chosen) + "\n")
        return 0

    def sleep(self, args: list[str], cio: CommandIO) -> int:
        """``sleep SECONDS``, capped so a script cannot hold a connection for long."""
        time.sleep(min(max(float(args[0]) if args else 0.0, 0.0), MAX_SLEEP_S))
        return 0

    def id(self, args: list[str], cio: CommandIO) -> int:
        """``id``: the adb shell user."""
        cio.out("uid=2000(shell) gid=2000(shell) groups=2000(shell),1004(input),1007(log),1015(sdcard_rw)")
        cio.out(" context=u:r:shell:s0\n")
        return 0

    def whoami(self, args: list[str], cio: CommandIO) -> int:
        """``whoami``."""
        cio.out("shell\n")
        return 0
