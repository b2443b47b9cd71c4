"""The adb sync protocol (``sync:`` service) over the virtual phone's files.

After ``sync:`` is acknowledged with ``OKAY`` the connection switches to a
binary mode. Each request is a 4-byte ASCII id, a 4-byte little-endian length
and that many bytes of path. Supported requests (AOSP ``SYNC.TXT`` and
``file_sync_protocol.h``):

* ``STAT`` (v1 lstat), ``STA2`` / ``LST2`` (v2 stat, 72-byte answer),
* ``LIST`` (``DENT`` entries) and ``LIS2`` (``DNT2`` entries), both closed by
  a zero-filled ``DONE`` entry,
* ``RECV`` (``DATA`` chunks of at most 64 KiB, then ``DONE``; ``FAIL`` if
  the file cannot be read),
* ``SEND`` (path ``,`` mode; the client sends ``DATA`` chunks and a ``DONE``
  carrying the mtime; we answer ``OKAY`` or ``FAIL``),
* ``QUIT``.

The phone's file system is the flat ``files`` dict (path to bytes);
:class:`VirtualFs` derives directories from it, plus a few that always exist.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import stat
import struct
import time
from collections.abc import Callable

from edgepilot.sim.adb.protocol import PhoneBackend, ProtocolError, SocketReader

log = logging.getLogger(__name__)

SYNC_DATA_MAX = 64 * 1024
MAX_PATH = 1024
FILE_MODE = stat.S_IFREG | 0o660
DIR_MODE = stat.S_IFDIR | 0o771

#: Directories that exist even when no file lies in them.
BASE_DIRS = frozenset(
    {
        "/",
        "/data",
        "/data/local",
        "/data/local/tmp",
        "/dev",
        "/sdcard",
        "/sdcard/DCIM",
        "/sdcard/Documents",
        "/sdcard/Download",
        "/sdcard/Movies",
        "/sdcard/Music",
        "/sdcard/Pictures",
        "/storage",
        "/storage/emulated",
        "/system",
    }
)

#: Paths that are the same place as ``/sdcard`` on Android.
SDCARD_ALIASES = ("/storage/emulated/0", "/storage/self/primary", "/mnt/sdcard")


def _oserror(cls: type[OSError], code: int, path: str) -> OSError:
    return cls(code, os.strerror(code), path)


class VirtualFs:
    """A path-level view of ``phone.files`` with implicit directories.

    Every method takes ``phone.lock`` for the duration of the access.

    Args:
        phone: The phone whose ``files`` dict is the file system.
    """

    def __init__(self, phone: PhoneBackend) -> None:
        self.phone = phone

    @staticmethod
    def normalize(path: str, cwd: str = "/") -> str:
        """Absolute, normalized path with ``/sdcard`` aliases folded in."""
        full = posixpath.normpath(posixpath.join(cwd, path))
        if full.startswith("//"):
            full = "/" + full.lstrip("/")
        for alias in SDCARD_ALIASES:
            if full == alias or full.startswith(alias + "/"):
                return "/sdcard" + full[len(alias) :]
        return full

    def is_file(self, path: str) -> bool:
        """True if ``path`` is a regular file."""
        with self.phone.lock:
            return self.normalize(path) in self.phone.files

    def is_dir(self, path: str) -> bool:
        """True if ``path`` is a base directory or a prefix of some file."""
        path = self.normalize(path)
        if path in BASE_DIRS or any(d.startswith(path + "/") for d in BASE_DIRS):
            return True
        prefix = path.rstrip("/") + "/"
        with self.phone.lock:
            return any(key.startswith(prefix) for key in self.phone.files)

    def stat(self, path: str) -> tuple[int, int] | None:
        """``(mode, size)`` of ``path``, or None if it does not exist."""
        path = self.normalize(path)
        with self.phone.lock:
            data = self.phone.files.get(path)
        if data is not None:
            return FILE_MODE, len(data)
        return (DIR_MODE, 4096) if self.is_dir(path) else None

    def read(self, path: str) -> bytes:
        """Contents of a file.

        Raises:
            FileNotFoundError, IsADirectoryError
        """
        path = self.normalize(path)
        with self.phone.lock:
            data = self.phone.files.get(path)
        if data is not None:
            return bytes(data)
        if self.is_dir(path):
            raise _oserror(IsADirectoryError, errno.EISDIR, path)
        raise _oserror(FileNotFoundError, errno.ENOENT, path)

    def write(self, path: str, data: bytes, append: bool = False) -> None:
        """Create or replace (or append to) a file; parent directories are implicit.

        Raises:
            IsADirectoryError: ``path`` is a directory.
            NotADirectoryError: A parent of ``path`` is a file.
        """
        path = self.normalize(path)
        if self.is_dir(path):
            raise _oserror(IsADirectoryError, errno.EISDIR, path)
        with self.phone.lock:
            parent = posixpath.dirname(path)
            while parent != "/":
                if parent in self.phone.files:
                    raise _oserror(NotADirectoryError, errno.ENOTDIR, path)
                parent = posixpath.dirname(parent)
            old = self.phone.files.get(path, b"") if append else b""
            self.phone.files[path] = bytes(old) + bytes(data)

    def remove(self, path: str, recursive: bool = False) -> None:
        """Delete a file, or a directory's files when ``recursive``.

        Raises:
            FileNotFoundError, IsADirectoryError
        """
        path = self.normalize(path)
        with self.phone.lock:
            if path in self.phone.files:
                del self.phone.files[path]
                return
            if not self.is_dir(path):
                raise _oserror(FileNotFoundError, errno.ENOENT, path)
            if not recursive:
                raise _oserror(IsADirectoryError, errno.EISDIR, path)
            prefix = path.rstrip("/") + "/"
            for key in [k for k in self.phone.files if k.startswith(prefix)]:
                del self.phone.files[key]

    def listdir(self, path: str) -> list[str]:
        """Sorted names directly inside a directory.

        Raises:
            FileNotFoundError, NotADirectoryError
        """
        path = self.normalize(path)
        if self.is_file(path):
            raise _oserror(NotADirectoryError, errno.ENOTDIR, path)
        if not self.is_dir(path):
            raise _oserror(FileNotFoundError, errno.ENOENT, path)
        prefix = path.rstrip("/") + "/"
        with self.phone.lock:
            keys = list(self.phone.files)
        names = {k[len(prefix) :].split("/", 1)[0] for k in [*keys, *BASE_DIRS] if k.startswith(prefix)}
        names.discard("")
        return sorted(names)


class SyncSession:
    """Serves sync requests on one connection until ``QUIT``, EOF or an error.

    Args:
        fs: The file system to serve.
        reader: Buffered reader of the connection.
        send: Writes one complete answer to the connection.
    """

    def __init__(self, fs: VirtualFs, reader: SocketReader, send: Callable[[bytes], None]) -> None:
        self.fs = fs
        self.reader = reader
        self.send = send
        self._handlers: dict[bytes, Callable[[str], bool]] = {
            b"STAT": self._stat_v1,
            b"LST2": self._stat_v2,
            b"STA2": self._stat_v2,
            b"LIST": self._list_v1,
            b"LIS2": self._list_v2,
            b"RECV": self._recv,
            b"SEND": self._send_file,
        }

    def run(self) -> None:
        """Handle requests until the client quits or the connection breaks."""
        try:
            while self._handle_one():
                pass
        except ProtocolError as exc:
            log.debug("sync session ended: %s", exc)

    def _handle_one(self) -> bool:
        header = self.reader.read_exact(8)
        cmd, length = header[:4], struct.unpack("<I", header[4:])[0]
        if cmd == b"QUIT":
            return False
        if length > MAX_PATH:
            self._fail("path too long")
            return False
        path = self.reader.read_exact(length).decode("utf-8", errors="replace")
        handler = self._handlers.get(cmd)
        if handler is None:
            self._fail(f"unknown command {cmd.hex()}")
            return False
        log.debug("sync %s %s", cmd.decode("ascii", "replace"), path)
        return handler(path)

    def _fail(self, message: str) -> None:
        data = message.encode("utf-8")
        self.send(b"FAIL" + struct.pack("<I", len(data)) + data)

    def _stat_v1(self, path: str) -> bool:
        info = self.fs.stat(path)
        mode, size = info if info else (0, 0)
        mtime = int(time.time()) if info else 0
        self.send(b"STAT" + struct.pack("<III", mode, size & 0xFFFFFFFF, mtime))
        return True

    @staticmethod
    def _stat_v2_body(info: tuple[int, int] | None, missing_errno: int = errno.ENOENT) -> bytes:
        if info is None:
            return struct.pack("<IQQIIIIQqqq", missing_errno, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        mode, size = info
        now = int(time.time())
        nlink = 2 if stat.S_ISDIR(mode) else 1
        return struct.pack("<IQQIIIIQqqq", 0, 1, 1, mode, nlink, 0, 0, size, now, now, now)

    def _stat_v2(self, path: str) -> bool:
        self.send(b"STA2" + self._stat_v2_body(self.fs.stat(path)))
        return True

    def _entries(self, path: str) -> list[tuple[str, tuple[int, int]]]:
        try:
            names = self.fs.listdir(path)
        except OSError:
            return []
        base = self.fs.normalize(path)
        entries = []
        for name in names:
            info = self.fs.stat(posixpath.join(base, name))
            if info is not None:
                entries.append((name, info))
        return entries

    def _list_v1(self, path: str) -> bool:
        now = int(time.time())
        parts = []
        for name, (mode, size) in self._entries(path):
            raw = name.encode("utf-8")
            parts.append(b"DENT" + struct.pack("<IIII", mode, size, now, len(raw)) + raw)
        parts.append(b"DONE" + bytes(16))
        self.send(b"".join(parts))
        return True

    def _list_v2(self, path: str) -> bool:
        parts = []
        for name, info in self._entries(path):
            raw = name.encode("utf-8")
            parts.append(b"DNT2" + self._stat_v2_body(info) + struct.pack("<I", len(raw)) + raw)
        parts.append(b"DONE" + bytes(72))
        self.send(b"".join(parts))
        return True

    def _recv(self, path: str) -> bool:
        try:
            data = self.fs.read(path)
        except IsADirectoryError as exc:
            self._fail(f"read failed: {exc.strerror}")
            return False
        except OSError as exc:
            self._fail(f"open failed: {exc.strerror}")
            return False
        parts = []
        for start in range(0, len(data), SYNC_DATA_MAX):
            chunk = data[start : start + SYNC_DATA_MAX]
            parts.append(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        parts.append(b"DONE" + bytes(4))
        self.send(b"".join(parts))
        return True

    def _read_upload(self) -> bytes | None:
        """Collect DATA chunks until DONE; None (after a FAIL) on a bad message."""
        chunks = []
        while True:
            header = self.reader.read_exact(8)
            cmd, size = header[:4], struct.unpack("<I", header[4:])[0]
            if cmd == b"DONE":
                return b"".join(chunks)
            if cmd != b"DATA":
                self._fail("invalid data message")
                return None
            if size > SYNC_DATA_MAX:
                self._fail("oversize data message")
                return None
            chunks.append(self.reader.read_exact(size))

    def _send_file(self, spec: str) -> bool:
        path, comma, _mode = spec.rpartition(",")
        if not comma:
            self._fail("missing , in ID_SEND_V1")
            return False
        data = self._read_upload()
        if data is None:
            return False
        try:
            self.fs.write(path, data)
        except OSError as exc:
            self._fail(f"couldn't create file: {exc.strerror}")
            return False
        self.send(b"OKAY" + bytes(4))
        return True
