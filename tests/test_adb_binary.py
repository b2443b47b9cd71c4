"""Debian's unmodified ``adb`` client (1.0.41) against the virtual adb server.

Every call runs with ``ANDROID_ADB_SERVER_PORT`` (or ``-P``) pointing at our
server and a timeout, and checks that the client never tried to start a
server of its own.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest
from test_adb_server import FAKE_PNG, FakePhone

from edgepilot.sim.adb import AdbServer

ADB = "/usr/bin/adb"

pytestmark = [
    pytest.mark.adb_binary,
    pytest.mark.skipif(
        not os.path.exists(ADB), reason=f"{ADB} is missing; install Debian's client: apt-get install adb"
    ),
]


@pytest.fixture
def phone() -> FakePhone:
    return FakePhone()


@pytest.fixture
def server(phone):
    with AdbServer(phone) as srv:
        yield srv


@pytest.fixture
def adb(server, tmp_path):
    """Run the adb binary against ``server``; returns the CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROID_", "ADB_"))}
    env.update(ANDROID_ADB_SERVER_PORT=str(server.port), HOME=str(tmp_path))

    def run(*args: str, use_env: bool = True) -> subprocess.CompletedProcess:
        command = [ADB, *args] if use_env else [ADB, "-P", str(server.port), *args]
        run_env = env if use_env else {k: v for k, v in env.items() if k != "ANDROID_ADB_SERVER_PORT"}
        proc = subprocess.run(command, env=run_env, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        assert b"daemon" not in proc.stdout + proc.stderr, proc.stderr  # it never starts a server of its own
        return proc

    return run


def test_devices(adb):
    proc = adb("devices")
    assert proc.returncode == 0
    assert proc.stdout == b"List of devices attached\nfake-1\tdevice\n\n"
    assert b"model:Fake_Phone" in adb("devices", "-l").stdout


def test_dash_p_port(adb):
    assert b"fake-1\tdevice" in adb("devices", use_env=False).stdout


def test_state_and_serial(adb):
    assert adb("get-state").stdout == b"device\n"
    assert adb("-s", "fake-1", "get-serialno").stdout == b"fake-1\n"


def test_shell_input(adb, phone):
    assert adb("-s", "fake-1", "shell", "input", "tap", "10", "10").returncode == 0
    adb("shell", "input text hello%sworld && input keyevent KEYCODE_ENTER")
    assert phone.events == [("tap", 10, 10), ("text", "hello world"), ("key", 66)]


def test_shell_exit_status_and_streams(adb):
    assert adb("shell", "false").returncode == 1
    proc = adb("shell", "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"out\n", b"err\n")
    assert adb("shell", "getprop", "ro.product.model").stdout == b"Fake Phone\n"


def test_dump_and_pull(adb, phone, tmp_path):
    assert adb("shell", "uiautomator", "dump").stdout == b"UI hierchary dumped to: /sdcard/window_dump.xml\n"
    local = tmp_path / "dump.xml"
    proc = adb("pull", "/sdcard/window_dump.xml", str(local))
    assert proc.returncode == 0, proc.stderr
    assert local.read_bytes() == phone.files["/sdcard/window_dump.xml"]


def test_exec_out_screencap(adb):
    proc = adb("exec-out", "screencap", "-p")
    assert proc.returncode == 0
    assert proc.stdout == FAKE_PNG


def test_push_ls_and_missing_files(adb, phone, tmp_path):
    local = tmp_path / "note.txt"
    local.write_bytes(b"pushed\n")
    assert adb("push", str(local), "/sdcard/Download/").returncode == 0
    assert phone.files["/sdcard/Download/note.txt"] == b"pushed\n"
    assert adb("shell", "cat /sdcard/Download/note.txt").stdout == b"pushed\n"
    assert b"note.txt" in adb("ls", "/sdcard/Download").stdout
    missing = adb("pull", "/sdcard/nope.txt", str(tmp_path / "nope"))
    assert missing.returncode == 1 and b"No such file or directory" in missing.stdout + missing.stderr


def test_errors_are_reported(adb):
    interactive = adb("shell")
    assert interactive.returncode != 0 and b"interactive" in interactive.stderr
    bogus = adb("-s", "bogus", "shell", "echo")
    assert bogus.returncode != 0 and b"device 'bogus' not found" in bogus.stderr


def test_adb_keyboard_broadcast(adb, phone):
    msg = base64.b64encode("你好".encode()).decode()
    proc = adb("shell", "am", "broadcast", "-a", "ADB_INPUT_B64", "--es", "msg", msg)
    assert b"Broadcast completed" in proc.stdout
    assert phone.events[-1] == ("text", "你好")


def test_real_virtual_phone(tmp_path):
    try:
        from edgepilot.sim.phone import VirtualPhone

        real = VirtualPhone()
    except Exception as exc:  # pragma: no cover - only while the phone is being written
        pytest.skip(f"edgepilot.sim.phone.VirtualPhone is not usable yet: {exc}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROID_", "ADB_"))}
    with AdbServer(real) as srv:
        env.update(ANDROID_ADB_SERVER_PORT=str(srv.port), HOME=str(tmp_path))

        def run(*args: str) -> bytes:
            proc = subprocess.run([ADB, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            assert proc.returncode == 0 and b"daemon" not in proc.stderr, proc.stderr
            return proc.stdout

        assert f"{real.serial}\tdevice".encode() in run("devices")
        run("shell", "uiautomator dump")
        run("pull", "/sdcard/window_dump.xml", str(tmp_path / "d.xml"))
        assert (tmp_path / "d.xml").read_bytes() == real.files["/sdcard/window_dump.xml"]
        png = run("exec-out", "screencap", "-p")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert Path(tmp_path / "d.xml").read_text(encoding="utf-8").startswith("<?xml")
