"""The D-Bus side of reading AT-SPI: finding the accessibility bus and pipelining calls on it (jeepney).

::

    session bus ── org.a11y.Bus.GetAddress ──▶ accessibility bus (at-spi-bus-launcher)

:func:`bus_address` finds the accessibility bus the way libatspi does;
:class:`Bus` sends every call of a batch before it reads the first answer, so
a batch costs about one round trip. jeepney is imported only when a bus is
opened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from edgepilot.errors import PerceptionError

Ref = tuple[str, str]  # (bus name, object path) of one accessible object

ACCESSIBLE = "org.a11y.atspi.Accessible"
COMPONENT = "org.a11y.atspi.Component"
TEXT = "org.a11y.atspi.Text"
VALUE = "org.a11y.atspi.Value"
ACTION = "org.a11y.atspi.Action"
EDITABLE_TEXT = "org.a11y.atspi.EditableText"
PROPERTIES = "org.freedesktop.DBus.Properties"
REGISTRY: Ref = ("org.a11y.atspi.Registry", "/org/a11y/atspi/accessible/root")
SCREEN_COORDS = 0  # ATSPI_COORD_TYPE_SCREEN


class Failed(NamedTuple):
    """The answer to a call that got none: an error reply, no answer in time, or not asked."""

    reason: str


class Call(NamedTuple):
    """One method call on one accessible object."""

    ref: Ref
    interface: str
    method: str
    signature: str | None = None
    body: tuple = ()


class Bus:
    """A connection to the accessibility bus that pipelines method calls.

    Args:
        address: the accessibility bus's D-Bus address.
        call_timeout: seconds an application has to answer before it is skipped for the rest of a read.

    Raises:
        PerceptionError: the bus cannot be reached.
    """

    CHUNK = 256  # calls in flight at once

    def __init__(self, address: str, call_timeout: float) -> None:
        from jeepney.io.blocking import open_dbus_connection

        try:
            self.conn = open_dbus_connection(bus=address)
        except (OSError, ValueError, KeyError) as exc:
            raise PerceptionError(f"cannot connect to the accessibility bus at {address} ({exc}); "
                                  "is at-spi-bus-launcher still running?") from exc
        self.call_timeout = call_timeout
        self.silent: set[str] = set()  # applications that did not answer in time, skipped from then on

    def close(self) -> None:
        self.conn.close()

    def many(self, calls: Sequence[Call], deadline: float) -> list[Any]:
        """Answer every call: its reply body, or :class:`Failed` (error reply, no answer, past the deadline)."""
        out: list[Any] = [Failed("not asked")] * len(calls)
        for start in range(0, len(calls), self.CHUNK):
            self._chunk(calls, range(start, min(start + self.CHUNK, len(calls))), out, deadline)
        return out

    def _chunk(self, calls: Sequence[Call], indices: range, out: list[Any], deadline: float) -> None:
        from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call

        pending: dict[int, int] = {}
        data = bytearray()
        for i in indices:
            call = calls[i]
            if call.ref[0] in self.silent:
                out[i] = Failed(f"{call.ref[0]} did not answer")
                continue
            address = DBusAddress(call.ref[1], bus_name=call.ref[0], interface=call.interface)
            serial = next(self.conn.outgoing_serial)
            data += new_method_call(address, call.method, call.signature, call.body).serialise(serial=serial)
            pending[serial] = i
        try:
            self.conn.sock.sendall(data)  # one write per chunk: a syscall per message costs more than the rest
        except OSError as exc:
            raise PerceptionError(f"the accessibility bus went away ({exc}); is at-spi-bus-launcher running?") from exc
        while pending:
            wait = min(self.call_timeout, deadline - time.perf_counter())
            try:
                msg = self.conn.receive(timeout=max(wait, 0.0))
            except TimeoutError:
                for i in pending.values():  # whoever still owes an answer is skipped for the rest of the read
                    self.silent.add(calls[i].ref[0])
                    out[i] = Failed("no answer in time")
                return
            except OSError as exc:
                raise PerceptionError(f"the accessibility bus went away ({exc}); is at-spi-bus-launcher running?") \
                    from exc
            i = pending.pop(msg.header.fields.get(HeaderFields.reply_serial, -1), -1)
            if i < 0:
                continue  # a signal, or a late answer to an earlier read
            if msg.header.message_type == MessageType.error:
                out[i] = Failed(str(msg.body[0])[:200] if msg.body else "error")
            else:
                out[i] = msg.body


def bus_address(*, session_bus: str | None = None, display: str | None = None, timeout: float = 2.0) -> str:
    """Find the accessibility bus, the way libatspi does.

    In order: ``$AT_SPI_BUS_ADDRESS``; ``org.a11y.Bus.GetAddress`` on the session
    bus (``session_bus``, else ``$DBUS_SESSION_BUS_ADDRESS``; D-Bus starts
    at-spi-bus-launcher when it is installed); the ``AT_SPI_BUS`` property of
    the X display's root window.

    Raises:
        PerceptionError: none of them gives an address; the message says what to start.
    """
    if os.environ.get("AT_SPI_BUS_ADDRESS"):
        return os.environ["AT_SPI_BUS_ADDRESS"]
    problems = []
    session = session_bus or os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if session:
        try:
            return a11y_bus_from_session(session, timeout)
        except (OSError, ValueError, TimeoutError, PerceptionError) as exc:
            problems.append(f"session bus: {exc}")
    else:
        problems.append("no session bus (DBUS_SESSION_BUS_ADDRESS is not set)")
    try:
        found = _root_window_property(display)
    except Exception as exc:  # noqa: BLE001 - python-xlib raises many unrelated types for a missing display
        found, problems = None, [*problems, f"X display: {exc}"]
    if found:
        return found
    raise PerceptionError(
        "no accessibility bus (" + "; ".join(problems) + "). Start a session bus and the AT-SPI bus: "
        "`eval $(dbus-launch --sh-syntax)` and `/usr/libexec/at-spi-bus-launcher --launch-immediately &` "
        "(Debian package at-spi2-core), then start applications with GTK_MODULES=gail:atk-bridge")


def a11y_bus_from_session(address: str, timeout: float = 2.0) -> str:
    """Ask a session bus for the accessibility bus (``org.a11y.Bus.GetAddress``).

    Raises:
        PerceptionError: org.a11y.Bus is not there.
        OSError, TimeoutError: the session bus cannot be reached.
    """
    from jeepney import DBusAddress, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    conn = open_dbus_connection(bus=address, auth_timeout=timeout)
    try:
        bus = DBusAddress("/org/a11y/bus", bus_name="org.a11y.Bus", interface="org.a11y.Bus")
        reply = conn.send_and_get_reply(new_method_call(bus, "GetAddress"), timeout=timeout)
    finally:
        conn.close()
    if reply.header.message_type == MessageType.error or not reply.body or not reply.body[0]:
        raise PerceptionError(f"org.a11y.Bus is not on the session bus ({reply.body[0] if reply.body else '?'}); "
                              "install at-spi2-core")
    return str(reply.body[0])


def _root_window_property(display: str | None) -> str | None:
    from Xlib import X
    from Xlib.display import Display

    if not (display or os.environ.get("DISPLAY")):
        raise PerceptionError("DISPLAY is not set")
    conn = Display(display)
    try:
        atom = conn.intern_atom("AT_SPI_BUS", only_if_exists=True)
        if not atom:
            return None
        prop = conn.screen().root.get_full_property(atom, X.AnyPropertyType)
        return bytes(prop.value).decode("utf-8", "replace").strip("\0") if prop and prop.value else None
    finally:
        conn.close()

