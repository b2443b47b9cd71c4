"""``DaemonClient``: talk to a running ``edgepilot daemon`` over its Unix socket (the CLI and ``tui --attach`` use it).

    from edgepilot.daemon.client import DaemonClient

    with DaemonClient.connect() as daemon:            # socket and token from the user's dirs
        run = daemon.submit("turn on airplane mode", device="virtual")
        for event in daemon.events(run=run):          # a second connection, streaming
            if event["event"] == "confirm":
                daemon.answer(event["id"], "yes")     # safe from another thread while events() streams
            if event["event"] == "finished":
                break

Requests go over one connection, one at a time (a lock makes the client safe
to share between threads); each :meth:`events` call opens its own connection,
so a UI can read events on one thread and send answers, pauses and stops from
another. Every method raises :class:`DaemonError` when the daemon refuses
(``code`` says why: ``not_found``, ``no_model``, ``answered``...),
:class:`DaemonBusy` when it runs but has no room for another client (try
again), and :class:`DaemonNotRunning` when there is no daemon to talk to.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path
from typing import Any, Literal

from edgepilot.daemon.paths import DaemonPaths, read_token
from edgepilot.errors import EdgepilotError

CLIENT_MAX_LINE = 64 << 20  # events with screenshots are large; the daemon's own limit is on requests


class DaemonError(EdgepilotError):
    """The daemon refused a request; ``code`` is the machine-readable reason."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


class DaemonNotRunning(DaemonError):
    """No daemon answers on the socket."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "not_running")


class DaemonBusy(DaemonError):
    """The daemon runs but takes no more clients just now (its queue of new connections stayed full, or every
    place is taken); trying again later works."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "busy")


class _Lines:
    """A socket read line by line (JSON objects), with a cap on a line's length."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def read(self) -> dict[str, Any] | None:
        """The next JSON line (None when the daemon closed the connection).

        Raises:
            TimeoutError: nothing arrived within the socket's timeout.
            DaemonError: the daemon sent something that is not a JSON object.
        """
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > CLIENT_MAX_LINE:
                raise DaemonError(f"the daemon sent a line over {CLIENT_MAX_LINE} bytes", "protocol")
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line = bytes(self.buffer[:end])
        del self.buffer[:end + 1]
        try:
            message = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DaemonError(f"the daemon sent something that is not JSON: {line[:80]!r}", "protocol") from exc
        if not isinstance(message, dict):
            raise DaemonError(f"the daemon sent {type(message).__name__}, not an object", "protocol")
        return message


class EventStream:
    """Events of a subscription, one dict per event; iteration ends when the daemon closes the stream (it shut
    down, or dropped this client for falling too far behind) or after the awaited run's ``finished``.

    :meth:`close` may be called from any thread (a UI's stop button while another thread iterates): the
    iterating thread then ends its loop.
    """

    def __init__(self, sock: socket.socket, lines: _Lines, until_run: str | None, timeout: float | None) -> None:
        self._sock = sock
        self._lines = lines
        self._until_run = until_run
        self._timeout = timeout
        self._closed = threading.Event()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> dict[str, Any]:
        while not self._closed.is_set():
            try:
                message = self._lines.read()
            except TimeoutError as exc:
                self.close()
                raise DaemonError(f"no event within {self._timeout:g} s", "timeout") from exc
            except (OSError, DaemonError):
                message = None
            if message is None:
                break
            if "event" not in message:
                continue
            if self._until_run is not None and message["event"] == "finished" and message.get("run") == self._until_run:
                self.close()
            return message
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Unsubscribe (safe from any thread; a blocked ``next()`` returns)."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaemonClient:
    """A connection to the daemon.

    Args:
        socket_path: the daemon's socket (default: :class:`DaemonPaths` from the environment).
        token: the token (default: read from the token file).
        timeout: seconds to wait for a reply.

    Use :meth:`connect` (which also authenticates), or call :meth:`hello` yourself.
    """

    def __init__(self, socket_path: str | Path | None = None, token: str | None = None,
                 timeout: float = 10.0) -> None:
        paths = DaemonPaths.default()
        self.socket_path = Path(socket_path) if socket_path else paths.socket
        self._token_file = paths.token
        self._token = token
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._lines: _Lines | None = None
        self._next_id = 0
        self.info: dict[str, Any] = {}

    @classmethod
    def connect(cls, socket_path: str | Path | None = None, token: str | None = None,
                timeout: float = 10.0) -> DaemonClient:
        """A client that has said hello: connected and authenticated.

        Raises:
            DaemonNotRunning: nothing listens on the socket.
            DaemonBusy: the daemon has no room for another client now; try again.
            DaemonError: the token was refused.
            ConfigError: there is no token file (the daemon never started).
        """
        client = cls(socket_path, token, timeout)
        try:
            with client._lock:
                client._connected()  # no daemon: DaemonNotRunning, before the token file is looked at
            client.hello()
        except BaseException:
            client.close()
            raise
        return client

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = read_token(self._token_file)
        return self._token

    # ------------------------------------------------------------ requests

    def hello(self) -> dict[str, Any]:
        """Authenticate this connection; the daemon's version, pid and protocol."""
        self.info = self.request("hello", token=self.token)
        return self.info

    def status(self) -> dict[str, Any]:
        """What the daemon is doing: ``model`` (state, error), ``current`` run, ``queue``, ``recent`` runs,
        open ``confirmations``, ``hotkeys`` (enabled, reason), ``notifications``, ``uptime_s``, paths."""
        return self.request("status")["status"]

    def submit(self, task: str, *, device: str | None = None, max_steps: int | None = None,
               sop: str = "auto") -> str:
        """Queue ``task``; its run id. ``device`` defaults to the daemon's (``[daemon] device``)."""
        fields: dict[str, Any] = {"task": task, "sop": sop}
        if device is not None:
            fields["device"] = device
        if max_steps is not None:
            fields["max_steps"] = max_steps
        return self.request("run", **fields)["run"]

    def pause(self, run: str | None = None) -> dict[str, Any]:
        """Pause ``run`` (default: the current one) before its next step."""
        return self.request("pause", **_run(run))

    def resume(self, run: str | None = None) -> dict[str, Any]:
        return self.request("resume", **_run(run))

    def stop(self, run: str | None = None, *, all: bool = False) -> dict[str, Any]:  # noqa: A002 - the op's field
        """Stop ``run`` (default: the current one; a queued run never starts); ``all`` also empties the queue."""
        return self.request("stop", all=all, **_run(run))

    def answer(self, confirm: str, answer: Literal["yes", "no", "always"]) -> dict[str, Any]:
        """Answer confirmation ``confirm`` (the ``id`` of a ``confirm`` event). The first answer wins:
        a later one raises DaemonError with code ``answered``; an unknown or expired id, ``not_found``."""
        return self.request("answer", confirm=confirm, answer=answer)

    def shutdown(self) -> dict[str, Any]:
        """Ask the daemon to stop its run and exit."""
        return self.request("shutdown")

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return the reply (``ok`` true).

        Raises:
            DaemonError: the daemon answered ``ok: false`` (``code`` and message from it), or hung up.
            DaemonBusy: the daemon has no room for this client now (it says so, or its backlog stayed full).
            DaemonNotRunning: the daemon cannot be reached.
        """
        with self._lock:
            sock, lines = self._connected()
            self._next_id += 1
            message = {"op": op, "id": self._next_id, **fields}
            try:
                sock.sendall(json.dumps(message).encode("utf-8") + b"\n")
                while True:
                    reply = lines.read()
                    if reply is None:
                        self._drop()
                        raise DaemonError(f"the daemon closed the connection during {op!r}", "closed")
                    if "event" not in reply:
                        break
            except TimeoutError as exc:
                self._drop()
                raise DaemonError(f"no reply to {op!r} within {self.timeout:g} s", "timeout") from exc
            except OSError as exc:
                said = _last_words(lines)  # e.g. "busy", written just before it hung up on us
                self._drop()
                if said is not None:
                    raise _refusal(said, op) from exc
                raise DaemonError(f"lost the connection to the daemon during {op!r}: {exc}", "closed") from exc
        if not reply.get("ok"):
            raise _refusal(reply, op)
        return reply

    # ------------------------------------------------------------ events

    def events(self, run: str | None = None, *, replay: bool = True, screenshots: bool = False,
               until_finished: bool | None = None, timeout: float | None = None) -> EventStream:
        """Subscribe to events (agent/events.py shapes, plus ``queued``) on a connection of their own.

        Args:
            run: only this run's events (default: every run's).
            replay: first the events already sent for ``run`` (or for the current run when ``run`` is None).
            screenshots: step and confirm events carry ``screenshot_png`` (base64 PNG).
            until_finished: end after ``run``'s ``finished`` event (default: True when ``run`` is given).
            timeout: seconds without any event after which iterating raises DaemonError(code ``timeout``)
                (default: wait as long as it takes).

        Returns:
            An :class:`EventStream`: iterate it for event dicts; ``close()`` it from any thread to unsubscribe.

        Raises:
            DaemonNotRunning / DaemonError: the subscription cannot be made (raised here, not while iterating).
        """
        until = (run is not None) if until_finished is None else until_finished
        sock = self._open()
        lines = _Lines(sock)
        fields: dict[str, Any] = {"op": "subscribe", "replay": replay, "screenshots": screenshots}
        if run is not None:
            fields["run"] = run
        try:
            self._send(sock, {"op": "hello", "token": self.token})
            _expect_ok(lines.read(), "hello")
            self._send(sock, fields)
            _expect_ok(lines.read(), "subscribe")
        except OSError as exc:
            said = _last_words(lines)
            sock.close()
            if said is not None:
                raise _refusal(said, "subscribe") from exc
            raise DaemonError(f"cannot subscribe to the daemon's events: {exc}", "closed") from exc
        except BaseException:
            sock.close()
            raise
        sock.settimeout(timeout)
        return EventStream(sock, lines, run if until else None, timeout)

    def wait(self, run: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until ``run`` finishes; its ``finished`` event.

        Raises:
            DaemonError: the daemon went away first, or ``timeout`` seconds passed without an event.
        """
        for event in self.events(run, timeout=timeout):
            if event["event"] == "finished":
                return event
        raise DaemonError(f"the daemon closed the stream before run {run} finished", "closed")

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connected(self) -> tuple[socket.socket, _Lines]:
        if self._sock is None or self._lines is None:
            self._sock = self._open()
            self._sock.settimeout(self.timeout)
            self._lines = _Lines(self._sock)
        return self._sock, self._lines

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _connect(sock, str(self.socket_path), self.timeout)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise DaemonNotRunning(f"no daemon is running (nothing answers on {self.socket_path}); "
                                   "start one with `edgepilot daemon start`") from exc
        except (BlockingIOError, TimeoutError) as exc:  # EAGAIN: the listen backlog stayed full
            sock.close()
            raise DaemonBusy(f"the daemon on {self.socket_path} is busy: it did not take the connection within "
                             f"{self.timeout:g} s (too many clients at once); try again in a moment") from exc
        except OSError as exc:
            sock.close()
            raise DaemonNotRunning(f"cannot reach the daemon on {self.socket_path}: {exc}") from exc
        sock.settimeout(self.timeout)  # only now: a socket with a timeout connects without waiting in the backlog
        return sock

    @staticmethod
    def _send(sock: socket.socket, message: dict[str, Any]) -> None:
        sock.sendall(json.dumps(message).encode("utf-8") + b"\n")

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._lines = None, None


def _connect(sock: socket.socket, path: str, timeout: float) -> None:
    """Connect, waiting at most ``timeout`` seconds in the listen backlog when it is full.

    A socket with a Python timeout is non-blocking, and a non-blocking connect to a Unix socket whose backlog
    is full fails at once with EAGAIN; so connect blocking, bounded by SO_SNDTIMEO (which Linux applies to that
    wait), and let the caller set the timeout of reads and writes afterwards.

    Raises:
        BlockingIOError / TimeoutError: the backlog stayed full for ``timeout`` seconds.
        OSError: the connect failed otherwise (FileNotFoundError, ConnectionRefusedError: no daemon).
    """
    sock.settimeout(None)
    bounded = _send_timeout(sock, timeout)
    sock.connect(path)
    if bounded:
        _send_timeout(sock, 0.0)  # 0: no limit, as before; the I/O timeout is the caller's settimeout


def _send_timeout(sock: socket.socket, seconds: float) -> bool:
    """Set SO_SNDTIMEO (0: none); False where the platform refuses it."""
    whole = int(seconds)
    micro = int((seconds - whole) * 1_000_000) or (1 if seconds > 0 and not whole else 0)  # 0 would mean forever
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("@ll", whole, micro))
    except (OSError, struct.error):
        return False  # the connect then waits in the backlog unbounded, as a blocking connect does
    return True


def _last_words(lines: _Lines | None) -> dict[str, Any] | None:
    """A reply the daemon wrote before it hung up, if one is waiting unread (a send fails with EPIPE while the
    daemon's "busy" sits in our receive buffer)."""
    if lines is None:
        return None
    try:
        lines.sock.settimeout(0.0)  # it is there already, or never will be
        said = lines.read()
    except (OSError, DaemonError):
        return None
    return said if said is not None and not said.get("ok", True) else None


def _refusal(reply: dict[str, Any], op: str) -> DaemonError:
    """The error for an ``ok: false`` reply (:class:`DaemonBusy` for ``busy``)."""
    message, code = str(reply.get("error", f"the daemon refused {op!r}")), str(reply.get("code", "error"))
    return DaemonBusy(message) if code == "busy" else DaemonError(message, code)


def _run(run: str | None) -> dict[str, Any]:
    return {"run": run} if run is not None else {}


def _expect_ok(reply: dict[str, Any] | None, op: str) -> None:
    if reply is None:
        raise DaemonError(f"the daemon closed the connection during {op!r}", "closed")
    if not reply.get("ok"):
        raise _refusal(reply, op)
