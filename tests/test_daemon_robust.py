"""The daemon's socket under crowds and abuse (issue 35): many clients at once, silent connections, garbage.

One real ``python -m edgepilot daemon start --foreground`` process with a
scripted model (daemon/testing.py) serves these tests; the clients are the
real :class:`DaemonClient`, raw sockets and the ``edgepilot daemon status``
command. No assertion is about time: waits are bounded by generous socket
timeouts only.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon import DaemonProcess

from edgepilot.daemon.client import DaemonBusy, DaemonClient, DaemonError, DaemonNotRunning
from edgepilot.daemon.server import HELLO_SECONDS, MAX_CLIENTS, MAX_HELLO_LINE

PATIENCE = 30.0  # a socket timeout, never an expectation of speed


class Daemon(DaemonProcess):
    """test_daemon's daemon process with a scripted model on the virtual phone, no hotkeys, patient clients."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "script.json").write_text(json.dumps({"answers": {}}))
        super().__init__(root, "--scripted-model", str(root / "script.json"), "--device", "virtual",
                         "--no-hotkeys", "--no-notify")

    def client(self, timeout: float = PATIENCE) -> DaemonClient:
        return super().client(timeout)

    def status_cli(self) -> subprocess.CompletedProcess:
        return self.cli("status", timeout=120)

    def raw(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(PATIENCE)
        sock.connect(str(self.socket))
        return sock

    def answers(self) -> bool:
        """A full hello and status on a fresh connection."""
        with self.client() as client:
            return client.status()["pid"] == self.proc.pid


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    running = Daemon(tmp_path_factory.mktemp("drobust"))
    yield running
    running.stop()


def _lines(sock: socket.socket) -> list[dict]:
    """Every line the daemon sends until it hangs up."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def _closed_after(sock: socket.socket) -> list[dict]:
    try:
        return _lines(sock)
    finally:
        sock.close()


# ---------------------------------------------------------------- many clients


def test_fifty_clients_at_once_are_answered_never_told_not_running(daemon):
    start = threading.Barrier(50)
    outcomes: list[object] = []

    def one() -> None:
        start.wait()
        try:
            outcomes.append(daemon.answers())
        except DaemonError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 50
    assert not [o for o in outcomes if isinstance(o, DaemonNotRunning)]
    assert all(o is True or isinstance(o, DaemonBusy) for o in outcomes), outcomes
    assert outcomes.count(True) >= 1


def test_a_full_backlog_is_busy_and_the_client_waits_in_it(tmp_path):
    """A daemon that does not accept (hung, or flooded): the client waits in the kernel's queue, connects when
    there is room, and says "busy", not "not running", when there never is."""
    path = tmp_path / "hung.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)
    queued = []
    while True:  # fill the backlog
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except BlockingIOError:
            sock.close()
            break
        queued.append(sock)
    with pytest.raises(DaemonBusy, match="busy.*try again") as busy:
        DaemonClient.connect(path, token="t", timeout=0.2)
    assert busy.value.code == "busy" and not isinstance(busy.value, DaemonNotRunning)

    result: list[object] = []
    waiting = threading.Thread(target=lambda: result.append(DaemonClient.connect(path, token="t",
                                                                                   timeout=PATIENCE)))
    waiting.start()
    listener.settimeout(PATIENCE)
    while True:  # make room; the waiting client's hello comes on one of the accepted connections
        conn, _ = listener.accept()
        conn.settimeout(0.2)
        try:
            hello = conn.recv(4096)
        except TimeoutError:
            continue  # one of the fillers
        break
    assert json.loads(hello) == {"op": "hello", "id": 1, "token": "t"}
    conn.sendall(b'{"ok": true, "id": 1, "pid": 7}\n')
    waiting.join(PATIENCE)
    assert isinstance(result[0], DaemonClient) and result[0].info["pid"] == 7
    result[0].close()
    conn.close()
    for sock in queued:
        sock.close()
    listener.close()


def test_every_place_taken_is_a_clear_busy_for_the_client_and_the_cli(daemon):
    with daemon.client() as probe:  # earlier tests' connections are gone (the daemon sees a hang-up at once)
        deadline = time.monotonic() + PATIENCE
        while probe.status()["clients"] > 1:
            assert time.monotonic() < deadline, "clients that left still hold places"
            time.sleep(0.05)
    clients = [daemon.client() for _ in range(MAX_CLIENTS)]
    try:
        with pytest.raises(DaemonBusy, match=f"busy: {MAX_CLIENTS} clients are connected; try again"):
            daemon.client()
        cli = daemon.status_cli()
        assert cli.returncode == 1 and "error: the daemon is busy" in cli.stderr, cli.stderr
        assert "Traceback" not in cli.stderr and "Broken pipe" not in cli.stderr
        assert clients[0].status()["pid"] == daemon.proc.pid  # those inside are served as before
    finally:
        for client in clients:
            client.close()
    deadline = time.monotonic() + PATIENCE
    while True:  # the places free up as the daemon sees the clients leave
        try:
            assert daemon.answers()
            break
        except DaemonBusy:
            assert time.monotonic() < deadline, "the daemon never freed the places of clients that left"
            time.sleep(0.05)


# ---------------------------------------------------------------- silent and hostile connections


def test_silent_connections_do_not_lock_out_a_client(daemon):
    silent = [daemon.raw() for _ in range(64)]
    try:
        assert daemon.answers()
        cli = daemon.status_cli()
        assert cli.returncode == 0 and f"running, pid {daemon.proc.pid}" in cli.stdout, cli
        # more silent connections than there are places: the oldest silent ones make room, never a client
        silent += [daemon.raw() for _ in range(MAX_CLIENTS)]
        assert daemon.answers()
    finally:
        for sock in silent:
            sock.close()


def test_a_silent_connection_is_closed_at_the_hello_deadline(daemon):
    said = _closed_after(daemon.raw())
    assert said == [{"ok": False, "code": "unauthorized",
                     "error": f"no hello with the token within {HELLO_SECONDS:g} s; connection closed"}]


def test_an_evicted_silent_connection_is_told_busy(daemon):
    silent = [daemon.raw() for _ in range(MAX_CLIENTS + 1)]
    try:
        first = _closed_after(silent[0])  # the oldest made room for the last (or met its deadline first)
        assert first[0]["code"] in ("busy", "unauthorized") and "connection" in first[0]["error"]
        assert daemon.answers()
    finally:
        for sock in silent:
            sock.close()


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",  # a TLS hello
    b'{"op": "status"\n',
])
def test_garbage_before_the_hello_gets_an_error_and_the_door(daemon, garbage):
    sock = daemon.raw()
    sock.sendall(garbage)
    said = _closed_after(sock)
    assert said[0]["ok"] is False and said[0]["code"] == "bad_request"
    assert "connection closed (the first line must be a hello)" in said[0]["error"]
    assert daemon.answers() and daemon.proc.poll() is None


def test_an_endless_first_line_is_cut_at_the_hello_cap(daemon):
    sock = daemon.raw()
    try:
        sock.sendall(b"x" * (MAX_HELLO_LINE * 4))
    except BrokenPipeError:
        pass  # it hung up before taking all of it; what it said is still there to read
    said = _closed_after(sock)
    assert said == [{"ok": False, "code": "too_long",
                     "error": f"the first line (the hello) is at most {MAX_HELLO_LINE} bytes; connection closed"}]
    assert daemon.answers()


def test_after_the_hello_a_bad_line_is_answered_and_the_connection_kept(daemon):
    sock = daemon.raw()
    sock.sendall(json.dumps({"op": "hello", "token": daemon.token}).encode() + b"\n" + b"not json\n"
                 + b'{"op": "status", "id": 2}\n')
    replies = []
    data = b""
    while len(replies) < 3:
        data += sock.recv(65536)
        *done, rest = data.split(b"\n")
        replies += [json.loads(line) for line in done]
        data = rest
    sock.close()
    assert replies[0]["ok"] and replies[1]["code"] == "bad_request" and replies[2]["status"]["pid"]
