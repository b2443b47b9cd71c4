"""The control socket: a Unix socket (mode 0600) speaking JSON lines, one thread per client.

Only the user who runs the daemon can connect (the socket's mode, its
folder's mode, and the peer's uid checked with SO_PEERCRED), and a
connection must present the token before anything but ``hello`` is answered.
Nothing a client sends can crash or block the daemon: every line is parsed
and checked (:mod:`.protocol`), a line over 1 MiB closes the connection, and
each connection has its own thread, so a slow one holds up only itself.
Silent or hostile clients cannot lock others out: a connection must say hello
within :data:`HELLO_SECONDS` (and in :data:`MAX_HELLO_LINE` bytes), anything
but a request before the hello closes it, and when all :data:`MAX_CLIENTS`
places are taken the oldest connection that has not said hello makes room for
the newcomer. Only when every place holds an authenticated client is a new
connection told ``busy`` and closed, at once.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from edgepilot.daemon.paths import DaemonPaths, private_dir
from edgepilot.daemon.protocol import MAX_LINE, ProtocolError, Request, encode, error, parse_request
from edgepilot.errors import ConfigError

log = logging.getLogger("edgepilot.daemon")

MAX_CLIENTS = 128  # connections at once, each with its own thread
LISTEN_BACKLOG = 128  # connections the kernel holds until accepted; a client waits there, not refused
HELLO_SECONDS = 5.0  # a connection must authenticate within this time; a silent one is closed then
MAX_HELLO_LINE = 4096  # bytes before the first newline of a connection that has not said hello
SEND_TIMEOUT = 5.0  # a client that does not take a line within this time is dropped
MAX_FAILED_AUTH = 3


class Connection:
    """One client: its socket, whether it authenticated, and a lock so replies and events do not interleave."""

    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock = sock
        self.number = number
        self.authed = False
        self.failed_auth = 0
        self.opened = time.monotonic()
        self.subscriber: Any = None
        self._send_lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def send(self, data: bytes) -> None:
        """Send one line (raises OSError when the client is gone or does not read for SEND_TIMEOUT seconds)."""
        with self._send_lock:
            if self.closed:
                raise OSError("connection closed")
            self.sock.sendall(data)

    def reply(self, message: dict[str, Any]) -> bool:
        try:
            self.send(encode(message))
            return True
        except OSError:
            self.close()
            return False

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


Handler = Callable[[Connection, Request], dict[str, Any] | None]


class ControlServer:
    """Accepts clients on the daemon's socket and passes their checked, authenticated requests to ``handler``.

    ``handler`` returns the reply (None: it already answered, e.g. a subscription).
    """

    def __init__(self, paths: DaemonPaths, token: str, handler: Handler) -> None:
        self.paths = paths
        self._token = token.encode("ascii")
        self._handler = handler
        self._sock: socket.socket | None = None
        self._clients: set[Connection] = set()
        self._lock = threading.Lock()
        self._count = 0
        self._closing = False

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def bind(self) -> None:
        """Take the socket path (replacing a stale socket); clients are refused until :meth:`start`.

        Raises:
            ConfigError: another daemon answers on the socket, or it cannot be bound.
        """
        path = self.paths.socket
        self.paths.check_socket_path()
        private_dir(path.parent)
        if path.exists() or path.is_symlink():
            if _answers(path):
                raise ConfigError(f"a daemon is already running on {path} (`edgepilot daemon status`)")
            path.unlink()  # left behind by a daemon that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600: no window where others could connect
        try:
            sock.bind(str(path))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot bind the control socket {path}: {exc}") from exc
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._sock = sock

    def start(self) -> None:
        """Start accepting clients (binding first if :meth:`bind` was not called)."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        self._sock.listen(LISTEN_BACKLOG)
        threading.Thread(target=self._accept, name="daemon-accept", daemon=True).start()
        log.info("listening on %s", self.paths.socket)

    def close(self) -> None:
        self._closing = True
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        with self._lock:
            clients = list(self._clients)
        for conn in clients:
            conn.close()
        try:
            if self.paths.socket.exists():
                self.paths.socket.unlink()
        except OSError:
            pass

    # ------------------------------------------------------------ per client

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._closing:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                if self._closing:
                    return
                time.sleep(0.05)  # EMFILE and the like: do not spin
                continue
            conn = self._admit(sock)
            if conn is None:
                continue
            try:
                threading.Thread(target=self._serve, args=(conn,), name=f"daemon-client-{conn.number}",
                                 daemon=True).start()
            except RuntimeError:  # no thread to be had
                with self._lock:
                    self._clients.discard(conn)
                _turn_away(conn, "it cannot start another thread for a client")
                conn.close()

    def _admit(self, sock: socket.socket) -> Connection | None:
        """A place for a new connection; when all are taken, the oldest connection that has not said hello
        gives up its place (its thread ends). None, and the newcomer told ``busy``, when every place holds an
        authenticated client."""
        with self._lock:
            self._count += 1
            conn = Connection(sock, self._count)
            waiting = [c for c in self._clients if not c.authed] if len(self._clients) >= MAX_CLIENTS else []
            evicted = min(waiting, key=lambda c: c.number) if waiting else None
            if evicted is not None:
                self._clients.discard(evicted)
            full = len(self._clients) >= MAX_CLIENTS
            if not full:
                self._clients.add(conn)
        if evicted is not None:
            _turn_away(evicted, "it needed this connection's place for a new client, and no hello came on it")
        if full:
            _turn_away(conn, f"{MAX_CLIENTS} clients are connected")
            conn.close()
            return None
        return conn

    def _serve(self, conn: Connection) -> None:
        try:
            if not self._same_user(conn):
                conn.reply(error("unauthorized", "the daemon answers only the user who started it"))
                return
            self._read(conn)
        except Exception:  # noqa: BLE001 - one client's trouble must never reach the daemon
            log.exception("client %d", conn.number)
        finally:
            if conn.subscriber is not None:
                conn.subscriber.end()
            conn.close()
            with self._lock:
                self._clients.discard(conn)

    def _read(self, conn: Connection) -> None:
        buffer = bytearray()
        while not conn.closed:
            if not conn.authed:
                left = HELLO_SECONDS - (time.monotonic() - conn.opened)
                if left <= 0:
                    conn.reply(error("unauthorized", f"no hello with the token within {HELLO_SECONDS:g} s; "
                                     "connection closed"))
                    return
                conn.sock.settimeout(left)  # the hello deadline, not SEND_TIMEOUT: a silent client goes then
            elif conn.sock.gettimeout() != SEND_TIMEOUT:
                conn.sock.settimeout(SEND_TIMEOUT)
            try:
                chunk = conn.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return  # the client left (a half line, if any, is dropped)
            buffer += chunk
            if not conn.authed and buffer.find(b"\n", 0, MAX_HELLO_LINE) < 0 and len(buffer) > MAX_HELLO_LINE:
                conn.reply(error("too_long", f"the first line (the hello) is at most {MAX_HELLO_LINE} bytes; "
                                 "connection closed"))
                return
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end]).rstrip(b"\r")
                del buffer[:end + 1]
                if len(line) > MAX_LINE:
                    conn.reply(error("too_long", f"a request line is at most {MAX_LINE} bytes; connection closed"))
                    return
                if line.strip() and not self._line(conn, line):
                    return
            if len(buffer) > MAX_LINE:
                conn.reply(error("too_long", f"a request line is at most {MAX_LINE} bytes; connection closed"))
                return

    def _line(self, conn: Connection, line: bytes) -> bool:
        """Handle one request line; False when the connection must close."""
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            if not conn.authed:  # not a client of ours: say why, and hang up
                conn.reply(error(exc.code, f"{exc}; connection closed (the first line must be a hello)",
                                 exc.request_id))
                return False
            return conn.reply(error(exc.code, str(exc), exc.request_id))
        if request.token is not None:
            if hmac.compare_digest(request.token.encode("utf-8", "replace"), self._token):
                conn.authed = True
            else:
                conn.failed_auth += 1
                conn.reply(error("unauthorized", "wrong token; clients read it from the daemon's token file "
                                 "(`edgepilot daemon status` says where)", request.id))
                return conn.failed_auth < MAX_FAILED_AUTH
        if not conn.authed:
            conn.reply(error("unauthorized", 'send {"op": "hello", "token": ...} first, with the token from the '
                             "daemon's token file", request.id))
            conn.failed_auth += 1
            return conn.failed_auth < MAX_FAILED_AUTH
        try:
            reply = self._handler(conn, request)
        except Exception as exc:  # noqa: BLE001 - a bug in one op answers that request with an error
            log.exception("request %s", request.op)
            reply = error("internal", f"internal error handling {request.op!r}: {type(exc).__name__}: {exc}",
                          request.id)
        return True if reply is None else conn.reply(reply)

    def _same_user(self, conn: Connection) -> bool:
        try:
            creds = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except (OSError, AttributeError):
            return True  # no SO_PEERCRED on this platform: the socket's mode 0600 is the guard
        _pid, uid, _gid = struct.unpack("3i", creds)
        return uid == os.getuid()


def _turn_away(conn: Connection, why: str) -> None:
    """Tell ``conn`` the daemon is busy and hang up, without ever waiting on it (the line fits in the socket's
    buffer unless the client stopped reading, and then it is not listening anyway). Its thread, if it has one,
    sees the hang-up and closes the socket."""
    try:
        conn.sock.setblocking(False)
        conn.sock.send(encode(error("busy", f"the daemon is busy: {why}; try again in a moment")))
    except OSError:
        pass
    try:
        conn.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _answers(path: os.PathLike[str] | str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()
