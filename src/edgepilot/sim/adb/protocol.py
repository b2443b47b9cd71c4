"""Framing helpers for the adb host ("smart socket") protocol.

Every request a client sends to an adb server is four ASCII hex digits giving
the payload length, followed by that many bytes of UTF-8 payload, e.g.
``000chost:version``. The server answers ``OKAY`` or ``FAIL`` followed by a
hex-length-prefixed message. Many answers to host queries are themselves
hex-length-prefixed blocks after the ``OKAY``.

This module also defines :class:`PhoneBackend`, the interface the server
needs from a phone, and the shell v2 packet helper.

References (AOSP ``packages/modules/adb``): ``OVERVIEW.TXT`` (the smart-socket
framing), ``SERVICES.TXT`` (the host and device services), ``SYNC.TXT`` (the
binary file protocol, see :mod:`edgepilot.sim.adb.sync`) and
``shell_protocol.h`` (the shell v2 packet framing used by :func:`shell_v2_packet`).
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Protocol, runtime_checkable

OKAY = b"OKAY"
FAIL = b"FAIL"

#: Longest request the smart-socket framing can carry (four hex digits).
MAX_REQUEST = 0xFFFF

# Shell protocol v2 packet ids (shell_protocol.h).
SHELL_STDIN = 0
SHELL_STDOUT = 1
SHELL_STDERR = 2
SHELL_EXIT = 3
SHELL_CLOSE_STDIN = 4
SHELL_WINDOW_SIZE = 5


@runtime_checkable
class PhoneBackend(Protocol):
    """What the adb server needs from a phone (``edgepilot.sim.phone.VirtualPhone`` fits).

    Every call into the phone, and every access to :attr:`files`, happens with
    :attr:`lock` held.
    """

    serial: str
    screen_size: tuple[int, int]
    files: dict[str, bytes]
    lock: threading.RLock

    def tap(self, x: int, y: int) -> None: ...
    def long_press(self, x: int, y: int, duration_ms: int) -> None: ...
    def swipe(self, x1: int, y1: int, x2: int, y2: int, duration_ms: int) -> None: ...
    def input_text(self, text: str) -> None: ...
    def keyevent(self, code: int) -> None: ...
    def dump_xml(self) -> str: ...
    def screencap_png(self) -> bytes: ...
    def start_app(self, package: str, activity: str | None = None) -> None: ...
    def packages(self) -> list[str]: ...
    def focused_window(self) -> tuple[str, str]: ...
    def props(self) -> dict[str, str]: ...
    def broadcast(self, action: str, extras: dict[str, str]) -> str: ...


class ProtocolError(Exception):
    """The peer sent something that is not valid adb framing, or hung up mid-message."""


class SocketReader:
    """Buffered, exact-length reads from a socket.

    All reads on one connection must go through the same reader: a client may
    send its next request (``shell:...`` right after ``host:transport``) before
    it has read our answer, and those bytes may already sit in the buffer.

    Args:
        sock: A connected socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def _fill(self) -> bool:
        chunk = self._sock.recv(65536)
        if not chunk:
            return False
        self._buf += chunk
        return True

    def read_exact(self, n: int) -> bytes:
        """Read exactly ``n`` bytes.

        Raises:
            ProtocolError: The peer closed the connection first.
        """
        while len(self._buf) < n:
            if not self._fill():
                raise ProtocolError(f"peer closed the connection ({len(self._buf)}/{n} bytes read)")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def read_some(self) -> bytes:
        """Return whatever is buffered, or one ``recv`` worth; ``b""`` at EOF."""
        if not self._buf and not self._fill():
            return b""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def read_u32(self) -> int:
        """Read one little-endian unsigned 32-bit integer."""
        return struct.unpack("<I", self.read_exact(4))[0]


def parse_hex_length(raw: bytes) -> int:
    """Decode a four-digit ASCII hex length.

    Raises:
        ProtocolError: ``raw`` is not four hex digits.
    """
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"length prefix is not ASCII: {raw!r}") from exc
    if len(text) != 4 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ProtocolError(f"length prefix is not four hex digits: {raw!r}")
    return int(text, 16)


def read_request(reader: SocketReader) -> str:
    """Read one smart-socket request (``XXXX`` hex length + payload).

    Returns:
        The payload decoded as UTF-8.

    Raises:
        ProtocolError: Bad length prefix, empty or non-UTF-8 payload, or EOF.
    """
    length = parse_hex_length(reader.read_exact(4))
    if length == 0:
        raise ProtocolError("empty request")
    payload = reader.read_exact(length)
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("request is not UTF-8") from exc


def encode_request(service: str) -> bytes:
    """Frame ``service`` as a client request (used by tests and tools)."""
    data = service.encode("utf-8")
    return b"%04x" % len(data) + data


def hex_block(payload: str | bytes) -> bytes:
    """Prefix ``payload`` with its length as four hex digits.

    Raises:
        ValueError: The payload does not fit the four-digit length.
    """
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    if len(data) > MAX_REQUEST:
        raise ValueError(f"block of {len(data)} bytes does not fit a 4-hex-digit length")
    return b"%04x" % len(data) + data


def okay(payload: str | bytes | None = None) -> bytes:
    """``OKAY``, optionally followed by a hex-length-prefixed payload."""
    return OKAY if payload is None else OKAY + hex_block(payload)


def fail(message: str) -> bytes:
    """``FAIL`` followed by the hex-length-prefixed error message."""
    data = message.encode("utf-8")[:MAX_REQUEST]
    return FAIL + hex_block(data)


def shell_v2_packet(packet_id: int, data: bytes) -> bytes:
    """One shell-v2 packet: 1-byte id, 4-byte little-endian length, data."""
    return struct.pack("<BI", packet_id, len(data)) + data
