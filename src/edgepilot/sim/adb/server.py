"""An adb server with one virtual phone attached, on a loopback TCP port.

Real adb clients (the ``adb`` binary, ``adbutils``, ...) talk to an adb
*server* over TCP with the smart-socket protocol (AOSP ``OVERVIEW.TXT``):
each connection sends one request framed as four hex digits + payload and
gets ``OKAY``/``FAIL`` back. Host services (``SERVICES.TXT``) such as
``host:version`` or ``host:devices`` are answered here and the connection is
closed. A transport request (``host:transport:SERIAL``, ``host:tport:any``...)
selects the device; the *next* request on the same connection is then a
device service, which a real server would relay to ``adbd`` on the phone:

* ``shell:CMD`` / ``exec:CMD``: raw output of :class:`~edgepilot.sim.adb.shell.DeviceShell`,
  then the connection closes;
* ``shell,v2,...:CMD``: the same output framed as shell-protocol-v2 packets
  (stdout, stderr, exit status);
* ``sync:``: the binary file protocol of :mod:`edgepilot.sim.adb.sync`.

A device service sent without selecting a transport goes to the only device,
as with a real server. Bad framing closes that connection only; a phone
error becomes error text; the server keeps serving.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import socketserver
import struct
import threading
from typing import Any

from edgepilot.errors import ConfigError
from edgepilot.sim.adb.protocol import (
    SHELL_EXIT,
    PhoneBackend,
    ProtocolError,
    SocketReader,
    fail,
    okay,
    read_request,
    shell_v2_packet,
)
from edgepilot.sim.adb.shell import DeviceShell, ShellResult
from edgepilot.sim.adb.sync import SyncSession, VirtualFs

log = logging.getLogger(__name__)

#: adb 1.0.41 clients kill any server that reports another version.
ADB_SERVER_VERSION = 41
#: Features of the virtual device; only what this package implements.
FEATURES = ("shell_v2", "stat_v2", "ls_v2", "fixed_push_mkdir")
TRANSPORT_ID = 1
#: A connection that sends no request for this long is dropped.
REQUEST_TIMEOUT_S = 120.0
#: How long to wait for the client to hang up after we are done.
DRAIN_TIMEOUT_S = 1.0
SHELL_V2_CHUNK = 32 * 1024
#: How often the accept loop checks for stop().
POLL_S = 0.05

_WAIT_FOR_RE = re.compile(r"^wait-for-(any|usb|local)-(\w+)$")
_TRANSPORT_SERVICES = ("transport-any", "transport-usb", "transport-local")


class _Selected(Exception):
    """Internal: the request selected the device; a device service follows."""


def _check_loopback(host: str) -> None:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve adb server host {host!r}: {exc}; use 127.0.0.1") from exc
    for info in infos:
        address = info[4][0].split("%", 1)[0]
        if not ipaddress.ip_address(address).is_loopback:
            raise ConfigError(
                f"the virtual adb server only binds loopback addresses, not {host!r} ({address}); use 127.0.0.1"
            )


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    request_queue_size = 128
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], adb: AdbServer, family: int) -> None:
        self.address_family = family
        self.adb = adb
        super().__init__(address, _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.adb._serve_connection(self.request)


class AdbServer:
    """Serves the adb host protocol for one phone on a loopback port.

    Args:
        phone: The attached device (see :class:`PhoneBackend`).
        host: Loopback address to bind (``127.0.0.1``, ``localhost`` or ``::1``).
        port: TCP port; 0 picks a free one (read it back from :attr:`port`).

    Raises:
        ConfigError: ``host`` is not a loopback address.
        OSError: The port cannot be bound.

    Example:
        >>> with AdbServer(phone) as server:
        ...     AdbClient(port=server.port).device(phone.serial).shell("echo hi")
        'hi'
    """

    def __init__(self, phone: PhoneBackend, host: str = "127.0.0.1", port: int = 0) -> None:
        _check_loopback(host)
        self.phone = phone
        self.shell = DeviceShell(phone)
        self.fs = VirtualFs(phone)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._tcp = _TcpServer((host, port), self, family)
        self._thread: threading.Thread | None = None
        self._serving = False
        self._stopped = False
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    @property
    def host(self) -> str:
        """The bound address."""
        return self._tcp.server_address[0]

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self._tcp.server_address[1]

    def start(self) -> AdbServer:
        """Serve in a daemon thread; returns ``self``. Calling it twice is harmless."""
        if self._thread is None and not self._stopped:
            self._serving = True
            self._thread = threading.Thread(
                target=self._tcp.serve_forever, kwargs={"poll_interval": POLL_S},
                name=f"adb-server:{self.port}", daemon=True,
            )  # fmt: skip
            self._thread.start()
            log.info("virtual adb server for %s on %s:%d", self.phone.serial, self.host, self.port)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` is called from another thread."""
        self._serving = True
        log.info("virtual adb server for %s on %s:%d", self.phone.serial, self.host, self.port)
        self._tcp.serve_forever(poll_interval=POLL_S)

    def stop(self) -> None:
        """Stop accepting, close the port and hang up open connections. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._serving:
            self._tcp.shutdown()
        self._tcp.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def __enter__(self) -> AdbServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ connections

    def _serve_connection(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(REQUEST_TIMEOUT_S)
        with self._conns_lock:
            self._conns.add(sock)
        try:
            _Connection(self, sock).serve()
        finally:
            with self._conns_lock:
                self._conns.discard(sock)

    def device_line(self, long: bool = False) -> str:
        """This device's line in ``adb devices`` (``-l`` style when ``long``)."""
        if not long:
            return f"{self.phone.serial}\tdevice\n"
        with self.phone.lock:
            props = self.phone.props()
        product = props.get("ro.product.name", "edgepilot")
        model = props.get("ro.product.model", "Virtual_Phone").replace(" ", "_")
        device = props.get("ro.product.device", "virtual")
        return (
            f"{self.phone.serial}\tdevice product:{product} model:{model} "
            f"device:{device} transport_id:{TRANSPORT_ID}\n"
        )


class _Connection:
    """One client connection: one host request, maybe followed by a device service."""

    def __init__(self, server: AdbServer, sock: socket.socket) -> None:
        self.server = server
        self.phone = server.phone
        self.sock = sock
        self.reader = SocketReader(sock)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def serve(self) -> None:
        try:
            service = read_request(self.reader)
            log.debug("adb request %r", service)
            try:
                self.host_request(service)
            except _Selected:
                service = read_request(self.reader)
                log.debug("adb device service %r", service)
                self.device_service(service)
        except (ProtocolError, OSError) as exc:
            log.debug("adb connection dropped: %s", exc)
        except Exception:  # never let one connection take the server down
            log.exception("adb connection crashed")
        finally:
            self._close()

    def _close(self) -> None:
        """Orderly close: send FIN, wait briefly for the client's, then close.

        Closing with unread bytes pending would send a TCP reset, which can
        destroy data the client has not read yet.
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(DRAIN_TIMEOUT_S)
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        finally:
            self.sock.close()

    # ------------------------------------------------------------------ host services

    def host_request(self, service: str) -> None:
        """Answer a host service; raises :class:`_Selected` when a device service follows."""
        prefix, _, rest = service.partition(":")
        if prefix == "host" or prefix in ("host-usb", "host-local"):
            return self.host_command(rest)
        if prefix == "host-serial":
            serial, command = self._split_serial(rest)
            if serial != self.phone.serial:
                return self.send(fail(f"device '{serial}' not found"))
            return self.host_command(command)
        if prefix == "host-transport-id":
            tid, _, command = rest.partition(":")
            if tid != str(TRANSPORT_ID):
                return self.send(fail(f"no device with transport id '{tid}'"))
            return self.host_command(command)
        # A device service without a transport goes to the only device.
        self.device_service(service)

    @staticmethod
    def _split_serial(rest: str) -> tuple[str, str]:
        """Split ``SERIAL:COMMAND``; serials may be ``host:port``."""
        parts = rest.split(":")
        if len(parts) >= 3 and parts[1].isdigit():
            return f"{parts[0]}:{parts[1]}", ":".join(parts[2:])
        return parts[0], ":".join(parts[1:])

    def host_command(self, command: str) -> None:
        """Answer one host command (the part after ``host:`` / ``host-serial:S:``)."""
        simple = self._simple_answers()
        if command in simple:
            return self.send(okay(simple[command]()))
        if command.startswith(("transport", "tport:")):
            return self._select_transport(command)
        handler = {
            "kill": self._kill, "track-devices": self._track_devices,
            "track-devices-l": self._track_devices, "killforward-all": self._double_okay,
        }.get(command)  # fmt: skip
        if handler is not None:
            return handler(command)
        match = _WAIT_FOR_RE.match(command)
        if match:
            return self._wait_for(match.group(2))
        if command.startswith("connect:"):
            return self._connect(command[len("connect:") :])
        if command.startswith(("forward:", "killforward:", "disconnect", "reconnect")):
            return self.send(fail(f"'{command}' is not supported by the virtual adb server"))
        self.send(fail(f"unknown host service '{command}'"))

    def _simple_answers(self) -> dict[str, Any]:
        features = ",".join(FEATURES)
        return {
            "version": lambda: f"{ADB_SERVER_VERSION:04x}",
            "devices": lambda: self.server.device_line(long=False),
            "devices-l": lambda: self.server.device_line(long=True),
            "features": lambda: features,
            "host-features": lambda: features,
            "get-state": lambda: "device",
            "get-serialno": lambda: self.phone.serial,
            "get-devpath": lambda: "unknown",
            "list-forward": lambda: "",
        }

    def _select_transport(self, command: str) -> None:
        tport = command.startswith("tport:")
        spec = command[len("tport:") :] if tport else command
        error = self._transport_error(spec, tport)
        if error:
            return self.send(fail(error))
        self.send(okay() + (struct.pack("<Q", TRANSPORT_ID) if tport else b""))
        raise _Selected()

    def _transport_error(self, spec: str, tport: bool) -> str | None:
        if spec in (("any", "usb", "local") if tport else _TRANSPORT_SERVICES):
            return None
        for key in (("serial:", "transport-id:") if tport else ("transport:", "transport-id:")):
            if spec.startswith(key):
                value = spec[len(key) :]
                if key == "transport-id:":
                    return None if value == str(TRANSPORT_ID) else f"no device with transport id '{value}'"
                return None if value == self.phone.serial else f"device '{value}' not found"
        return f"unknown host service '{'tport:' if tport else ''}{spec}'"

    def _kill(self, _command: str) -> None:
        log.info("adb client asked the virtual adb server to exit (host:kill); ignoring, it serves on")
        self.send(okay())

    def _double_okay(self, _command: str) -> None:
        self.send(okay() + okay())

    def _track_devices(self, command: str) -> None:
        self.send(okay(self.server.device_line(long=command.endswith("-l"))))
        self.sock.settimeout(None)
        while self.reader.read_some():
            pass

    def _wait_for(self, state: str) -> None:
        if state in ("device", "any"):
            return self.send(okay() + okay())
        self.send(fail(f"the virtual phone is always in state 'device', never '{state}'"))

    def _connect(self, address: str) -> None:
        if address == self.phone.serial:
            return self.send(okay(f"already connected to {address}"))
        self.send(okay(f"failed to connect to '{address}': the virtual adb server has one device only"))

    # ------------------------------------------------------------------ device services

    def device_service(self, service: str) -> None:
        """Run a device service (``shell:``, ``exec:``, ``shell,v2,...:``, ``sync:``)."""
        name, sep, arg = service.partition(":")
        if not sep:
            return self.send(fail(f"unknown service '{service}'"))
        if name == "sync":
            self.send(okay())
            return SyncSession(self.server.fs, self.reader, self.send).run()
        if name in ("shell", "exec") or name.startswith("shell,"):
            return self._shell(name, arg)
        self.send(fail(f"device service '{name}:' is not supported by the virtual phone"))

    def _shell(self, name: str, command: str) -> None:
        if not command.strip():
            message = "interactive shells are not supported by the virtual phone; run 'adb shell COMMAND'"
            return self.send(fail(message))
        v2 = "v2" in name.split(",")[1:]
        result = self.server.shell.run(command)
        self.send(okay() + (self._v2_stream(result) if v2 else result.output))

    @staticmethod
    def _v2_stream(result: ShellResult) -> bytes:
        merged: list[tuple[int, bytearray]] = []
        for stream, data in result.chunks:
            if merged and merged[-1][0] == stream:
                merged[-1][1].extend(data)
            elif data:
                merged.append((stream, bytearray(data)))
        packets = [
            shell_v2_packet(stream, bytes(data[i : i + SHELL_V2_CHUNK]))
            for stream, data in merged
            for i in range(0, len(data), SHELL_V2_CHUNK)
        ]
        packets.append(shell_v2_packet(SHELL_EXIT, bytes([result.status & 0xFF])))
        return b"".join(packets)
