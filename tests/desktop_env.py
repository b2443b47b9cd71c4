"""The desktop test environment: a private X session for the tests, and helpers to run real apps in it.

:func:`start_session` starts Xvfb on a display number Xvfb picks itself
(``-displayfd``), a D-Bus session bus and the AT-SPI bus
(:class:`edgepilot.sim.desktop.session.DesktopSession`). Nothing is skipped:
when a program is missing the test fails and says to run
``scripts/system-deps.sh``, so CI cannot pass without a real X server.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from edgepilot.sim.desktop.session import DesktopSession, missing_tools

APPS = ("mousepad", "galculator", "thunar", "lxterminal", "gnumeric", "ssconvert", "ristretto", "xclip")


def start_session() -> DesktopSession:
    """A running private desktop session, or a test failure that says what to install."""
    missing = missing_tools() + [app for app in APPS if shutil.which(app) is None]
    if missing:
        pytest.fail(f"the desktop tests need {', '.join(missing)}: run scripts/system-deps.sh (Debian packages "
                    "xvfb xauth dbus-x11 at-spi2-core and the desktop suite's applications)", pytrace=False)
    return DesktopSession().start()


# ---------------------------------------------------------------- a misbehaving AT-SPI application


@contextmanager
def fake_atspi_app(a11y_bus: str, *, hang: bool = False) -> Iterator[str]:
    """An application on the real AT-SPI bus that answers nonsense (and, with ``hang``, never answers some calls).

    It embeds itself in the registry like a toolkit does, then serves: one
    showing window whose child reports its state as a string, a role as a
    number, no extents; with ``hang``, a second window that never answers.
    Yields its bus name.
    """
    from jeepney import DBusAddress, HeaderFields, MessageType, new_error, new_method_call, new_method_return
    from jeepney.io.blocking import open_dbus_connection

    conn = open_dbus_connection(bus=a11y_bus)
    name = conn.unique_name
    stop = threading.Event()
    embedded = threading.Event()
    root = "/org/a11y/atspi/accessible/root"

    def answer(msg: Any) -> Any:
        path, member = msg.header.fields[HeaderFields.path], msg.header.fields[HeaderFields.member]
        if path == "/hang":
            return None
        if member == "GetChildren":
            kids = [(name, "/w")] + ([(name, "/hang")] if hang else []) if path == root else [(name, "/w/x")]
            return new_method_return(msg, "a(so)", (kids,))
        if member == "GetState":
            if path == "/w/x":
                return new_method_return(msg, "s", ("garbage",))
            return new_method_return(msg, "au", ([1 << 25 | 1 << 30, 0],))  # showing, visible
        if member == "GetRoleName":
            return new_method_return(msg, "u", (7,))
        if member == "GetExtents":
            return new_method_return(msg, "(iiii)", ((10, 10, -5, 99999999),))
        if member in ("Get", "GetAll"):
            return new_method_return(msg, "v", (("s", "fake app"),))
        return new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod")

    def serve() -> None:
        registry = DBusAddress(root, bus_name="org.a11y.atspi.Registry", interface="org.a11y.atspi.Socket")
        serial = next(conn.outgoing_serial)
        conn.send(new_method_call(registry, "Embed", "(so)", ((name, root),)), serial=serial)
        while not stop.is_set():
            try:
                msg = conn.receive(timeout=0.05)
            except TimeoutError:
                continue
            if msg.header.fields.get(HeaderFields.reply_serial) == serial:
                embedded.set()
            elif msg.header.message_type == MessageType.method_call:
                reply = answer(msg)
                if reply is not None:
                    conn.send(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert embedded.wait(5), "the AT-SPI registry did not take the fake application"
        yield name
    finally:
        stop.set()
        thread.join(2)
        conn.close()
