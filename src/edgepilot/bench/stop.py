"""How fast the safety stop stops: the real daemon, the real model, real key events on an X display.

:func:`measure_stop` starts an Xvfb display, a virtual phone behind its adb
endpoint (in this process, so that every input reaching the phone is
timestamped), and the daemon as a separate process with the bundled model and
hotkeys on. Each trial queues a task on the phone, waits a different time
after the run starts or after its first step (so the key lands in
different phases: the model reading the screen, generating, the phone
acting), sends the stop hotkey
with ``xdotool``, and measures from just before ``xdotool`` runs to:

- ``stop_ms``: the run's ``finished`` event (status ``stopped``) arriving at a client;
- ``hotkey_ms``: the daemon's hotkey callback stopping the run (pynput seeing the key; same monotonic clock);
- ``last_action_ms``: the last input that reached the phone, 0 when none came after the key
  (``actions_after_key`` counts inputs after the key: an action already being sent may land).

``edgepilot bench --suite stop`` prints :func:`format_stop` of it (docs/daemon.md).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgepilot.config import load_config
from edgepilot.daemon.client import DaemonClient, DaemonError
from edgepilot.errors import ConfigError
from edgepilot.sim.adb.server import AdbServer
from edgepilot.sim.phone import VirtualPhone

# when the key is pressed, in turn: seconds after the run's ``started`` event (its first step: the model reads the
# whole screen) or after its first ``step`` event (the next step: planner, decider, the phone acting, the reflector)
POINTS: tuple[tuple[str, float], ...] = (("started", 0.5), ("started", 2.0), ("step", 0.0), ("started", 3.5),
                                         ("step", 1.0))
_XDOTOOL_KEYS = {"ctrl": "ctrl", "alt": "alt", "shift": "shift", "cmd": "super", "esc": "Escape",
                 "space": "space", "enter": "Return", "tab": "Tab", "backspace": "BackSpace", "delete": "Delete",
                 "pause": "Pause", "home": "Home", "end": "End", "insert": "Insert"}


def xdotool_keys(hotkey: str) -> str:
    """A pynput hotkey (``<ctrl>+<alt>+<esc>``) as xdotool's key string (``ctrl+alt+Escape``)."""
    out = []
    for part in hotkey.lower().split("+"):
        name = part.strip("<>")
        if name in _XDOTOOL_KEYS:
            out.append(_XDOTOOL_KEYS[name])
        elif len(name) > 1 and name[0] == "f" and name[1:].isdigit():
            out.append(name.upper())
        else:
            out.append(name)
    return "+".join(out)


@contextmanager
def xvfb_display() -> Iterator[str]:
    """A private Xvfb display for the ``with`` block.

    Raises:
        ConfigError: Xvfb or xdotool is missing, or Xvfb does not start.
    """
    for tool in ("Xvfb", "xdotool"):
        if shutil.which(tool) is None:
            raise ConfigError(f"{tool} is missing; scripts/system-deps.sh installs it (Debian: xvfb, xdotool)")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=[write], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    number = b""
    try:
        while not number.endswith(b"\n"):
            chunk = os.read(read, 16)
            if not chunk:
                raise ConfigError("Xvfb exited before it opened a display")
            number += chunk
    finally:
        os.close(read)
    try:
        yield f":{number.decode().strip()}"
    finally:
        proc.terminate()
        proc.wait(10)


class _InputLog:
    """Timestamps (time.monotonic) of every input that reaches the virtual phone."""

    METHODS = ("tap", "long_press", "swipe", "input_text", "keyevent", "start_app")

    def __init__(self, phone: Any) -> None:
        self.times: list[float] = []
        for name in self.METHODS:
            setattr(phone, name, self._timed(getattr(phone, name)))

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.times.append(time.monotonic())
            return method(*args, **kwargs)

        return timed


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}


def measure_stop(trials: int = 5, *, model: str | None = None, task: str = "turn on airplane mode",
                 points: Sequence[tuple[str, float]] = POINTS, max_steps: int = 40, timeout: float = 180.0,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Start the daemon for real on Xvfb and measure the stop hotkey over ``trials`` runs.

    Args:
        trials: runs to stop (a run that ends by itself before the key is sent is retried once, then skipped).
        model: model spec for the daemon (default: config.toml's, else the bundled smollm2-135m-agent).
        task: the task each run works on (on a fresh virtual phone).
        points: when the key is sent, used in turn: (``started`` or ``step``, seconds after that event).
        max_steps: step budget of each run (large: the stop, not the budget, should end it).
        timeout: seconds to wait for the daemon, a run to start, or a stop to land.
        progress: called with each trial's row as it completes.

    Returns:
        ``{"suite": "stop", "trials", "stopped", "model", "stop_ms": {median, max}, "hotkey_ms": {...},
        "last_action_ms": {...}, "actions_after_key", "within_1s", "rows": [...]}``.

    Raises:
        ConfigError: Xvfb/xdotool missing, or the daemon does not start or its model does not load.
    """

    phone = VirtualPhone(serial="virtual-stop")
    inputs = _InputLog(phone)
    rows: list[dict[str, Any]] = []
    with xvfb_display() as display, tempfile.TemporaryDirectory(prefix="ep-stop-") as tmp, \
            AdbServer(phone, port=0) as server:
        daemon = _BenchDaemon(Path(tmp), display, f"{phone.serial}@127.0.0.1:{server.port}", model, timeout)
        try:
            keys = xdotool_keys(daemon.stop_hotkey)
            attempts = 0
            while len(rows) < trials and attempts < trials * 2:
                anchor, delay = points[len(rows) % len(points)]
                attempts += 1
                phone.reset()
                row = daemon.trial(task, anchor, delay, keys, inputs, max_steps)
                if row is None:
                    continue  # the run ended before the key: not a stop to measure
                rows.append(row)
                if progress is not None:
                    progress(row)
            name = daemon.model_name
        finally:
            daemon.close()
    stopped = [r for r in rows if r["status"] == "stopped"]
    stop_ms = [r["stop_ms"] for r in stopped]
    return {
        "suite": "stop", "trials": len(rows), "stopped": len(stopped), "model": name, "task": task,
        "hotkey": daemon.stop_hotkey, "display": "Xvfb", "device": "virtual phone over adb",
        "stop_ms": _stats(stop_ms),
        "hotkey_ms": _stats([r["hotkey_ms"] for r in stopped if r["hotkey_ms"] is not None]),
        "last_action_ms": _stats([r["last_action_ms"] for r in rows]),
        "actions_after_key": sum(r["actions_after_key"] for r in rows),
        "within_1s": round(sum(ms <= 1000 for ms in stop_ms) / len(stop_ms), 3) if stop_ms else None,
        "rows": rows,
    }


class _BenchDaemon:
    """The daemon process under measurement, with its own folders and a client."""

    def __init__(self, root: Path, display: str, device: str, model: str | None, timeout: float) -> None:
        user = load_config()  # the model and its settings as the user's daemon would have them
        model = model or user.daemon.model or user.model
        settings = "".join(f"{key} = {json.dumps(value)}\n" for key, value in
                           (("threads", user.threads), ("gpu_layers", user.gpu_layers), ("context", user.context))
                           if value is not None)
        (root / "config.toml").write_text(f'{settings}[models]\n' + "".join(
            f"{json.dumps(name)} = {json.dumps(spec)}\n" for name, spec in user.models.items()) +
            f'[daemon]\ndevice = "{device}"\nstop_hotkey = "{user.daemon.stop_hotkey}"\n', encoding="utf-8")
        self.stop_hotkey = user.daemon.stop_hotkey
        self.timeout = timeout
        env = {**os.environ, "DISPLAY": display, "EDGEPILOT_HOME": str(root / "home"),
               "EDGEPILOT_RUNTIME_DIR": str(root / "run"), "EDGEPILOT_CONFIG": str(root / "config.toml"),
               "EDGEPILOT_AUDIT": str(root / "audit.jsonl")}
        self.env = env
        self.log = root / "daemon.log"
        args = ["--no-notify", *(["--model", model] if model else [])]
        self.proc = subprocess.Popen([sys.executable, "-m", "edgepilot", "daemon", "start", "--foreground", *args],
                                     env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        self.socket = root / "run" / "daemon.sock"
        self.token_file = root / "home" / "daemon.token"
        self.client = self._connect()
        self.model_name = self._wait_for_model()

    def _connect(self) -> DaemonClient:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return DaemonClient.connect(self.socket, token=self.token_file.read_text().strip())
            except (DaemonError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise ConfigError("the daemon did not start:\n" + self._log_tail()) from None
                time.sleep(0.1)

    def _wait_for_model(self) -> str:
        deadline = time.monotonic() + self.timeout
        while (status := self.client.status())["model"]["state"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
        if status["model"]["state"] != "ready":
            self.close()
            raise ConfigError(f"the daemon's model did not load: {status['model']['error'] or 'timed out'}")
        if not status["hotkeys"]["enabled"]:
            self.close()
            raise ConfigError(f"the daemon's hotkeys are off: {status['hotkeys']['reason']}")
        return str(status["model"]["name"])

    def trial(self, task: str, anchor: str, delay: float, keys: str, inputs: _InputLog,
              max_steps: int) -> dict[str, Any] | None:
        """One run stopped by the hotkey ``delay`` s after its first ``anchor`` event (None: it ended first)."""
        events: queue.Queue[dict[str, Any]] = queue.Queue()
        run = self.client.submit(task, max_steps=max_steps)
        stream = self.client.events(run)  # replays what was already sent; ends after the run's finished event
        threading.Thread(target=lambda: [events.put(e) for e in stream], daemon=True).start()
        try:
            self._next(events, run, anchor)
        except _EndedEarly:
            return None
        time.sleep(delay)
        if any(e["event"] == "finished" for e in _drain(events)):
            return None
        pressed = time.monotonic()
        subprocess.run(["xdotool", "key", keys], env=self.env, check=True, timeout=10)
        finished = self._next(events, run, "finished")
        arrived = time.monotonic()
        time.sleep(0.3)  # an input already on its way to the phone would land by now
        after = [t for t in inputs.times if t > pressed]
        before = len(inputs.times) - len(after)
        inputs.times.clear()
        requested = (finished.get("stop") or {}).get("requested_at")
        return {"after": f"{anchor} + {delay:g} s", "status": finished["status"], "steps": finished["steps"],
                "stop_ms": round((arrived - pressed) * 1000, 1),
                "hotkey_ms": round((requested - pressed) * 1000, 1) if requested else None,
                "last_action_ms": round((max(after) - pressed) * 1000, 1) if after else 0.0,
                "actions_after_key": len(after), "actions_before_key": before, "reason": finished["reason"]}

    def _next(self, events: queue.Queue[dict[str, Any]], run: str, kind: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                event = events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event.get("run") == run and event["event"] == kind:
                return event
            if event.get("run") == run and event["event"] == "finished":
                if kind == "finished":
                    return event
                raise _EndedEarly(f"run {run} ended before {kind}: {event['status']}")
        return self._fail(f"no {kind} event for run {run} within {self.timeout:g} s")

    def _fail(self, message: str) -> dict[str, Any]:
        raise ConfigError(f"{message}\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.client.shutdown()
                self.proc.wait(30)
            except (DaemonError, AttributeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


class _EndedEarly(Exception):
    """The run ended by itself before the point where the key was to be sent."""


def _drain(events: queue.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            out.append(events.get_nowait())
        except queue.Empty:
            return out


def format_stop(report: dict[str, Any]) -> str:
    """The report of :func:`measure_stop` as text."""

    def ms(stats: dict[str, float | None]) -> str:
        return "n/a" if stats["median"] is None else f"median {stats['median']:.0f} ms, max {stats['max']:.0f} ms"

    lines = [f"safety stop: {report['hotkey']} on {report['display']}, {report['model']} on the "
             f"{report['device']}, task {report['task']!r}",
             f"  trials:               {report['trials']} ({report['stopped']} ended 'stopped')",
             f"  key -> run finished:  {ms(report['stop_ms'])}"
             + (f"; {report['within_1s']:.0%} within 1 s" if report["within_1s"] is not None else ""),
             f"  key -> hotkey seen:   {ms(report['hotkey_ms'])}",
             f"  key -> last input:    {ms(report['last_action_ms'])} (0: none after the key); "
             f"inputs after the key: {report['actions_after_key']}",
             "  per trial (key sent N s after the run's first started / step event):"]
    for row in report["rows"]:
        lines.append(f"    {row['after']:<16} {row['status']:<8} stop {row['stop_ms']:7.1f} ms  "
                     f"hotkey {row['hotkey_ms'] if row['hotkey_ms'] is not None else 'n/a':>6} ms  "
                     f"last input {row['last_action_ms']:6.1f} ms  ({row['steps']} steps, "
                     f"{row['actions_before_key']} inputs before the key)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m edgepilot.bench.stop [-n N] [--model M] [--json]`` (until `bench --suite stop` exists)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edgepilot.bench.stop",
                                     description="How fast the safety-stop hotkey stops a run.")
    parser.add_argument("-n", "--trials", type=int, default=5)
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = measure_stop(args.trials, model=args.model,
                          progress=None if args.json else lambda row: print(json.dumps(row), file=sys.stderr))
    print(json.dumps(report, indent=2) if args.json else format_stop(report))


if __name__ == "__main__":
    main()
